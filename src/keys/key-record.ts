import { eq } from "drizzle-orm";
import { BoundedCache } from "../cache/bounded-cache";
import type { Database } from "../db/client";
import { apiKeys } from "../db/schema";
import type { LimitPolicy } from "../limits/key-limiter";

/** What verify needs of a key: no hash, nothing secret. */
export interface KeyRecord {
  id: string;
  tenantId: string;
  name: string;
  environment: "live" | "test";
  enabled: boolean;
  revoked: boolean;
  expiresAt: number | null;
  scopes: readonly string[];
  ipAllowlist: readonly string[] | null;
  countryAllowlist: readonly string[] | null;
  limits: LimitPolicy | null;
  rotatedToId: string | null;
  metadata: Record<string, unknown> | null;
}

/**
 * Bound on how long another isolate may keep serving a changed key (documented in docs/keys.md).
 * The isolate that revokes or edits a key drops its own entry at once.
 */
export const KEY_CACHE_TTL_MS = 10_000;
const cache = new BoundedCache<KeyRecord | null>(10_000, KEY_CACHE_TTL_MS);

export function toKeyRecord(row: typeof apiKeys.$inferSelect): KeyRecord {
  const hasLimits = row.ratelimitLimit !== null || row.usageLimit !== null;
  return {
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    environment: row.environment,
    enabled: row.enabled,
    revoked: row.revokedAt !== null,
    expiresAt: row.expiresAt,
    scopes: row.scopes,
    ipAllowlist: row.ipAllowlist?.length ? row.ipAllowlist : null,
    countryAllowlist: row.countryAllowlist?.length ? row.countryAllowlist : null,
    limits: hasLimits
      ? {
          limitsVersion: row.limitsVersion,
          ratelimit:
            row.ratelimitLimit !== null && row.ratelimitWindowMs !== null
              ? { limit: row.ratelimitLimit, windowMs: row.ratelimitWindowMs }
              : null,
          usage:
            row.usageLimit !== null
              ? {
                  limit: row.usageLimit,
                  refillAmount: row.refillAmount,
                  refillIntervalMs: row.refillIntervalMs,
                }
              : null,
        }
      : null,
    rotatedToId: row.rotatedToId,
    metadata: row.metadata,
  };
}

/** Lookup by SHA-256 only: the key string itself is never compared or stored. Misses are cached too. */
export async function findKeyByHash(db: Database, hash: string): Promise<KeyRecord | null> {
  const cached = cache.get(hash);
  if (cached !== undefined) return cached;
  const row = await db.select().from(apiKeys).where(eq(apiKeys.hash, hash)).get();
  const record = row ? toKeyRecord(row) : null;
  cache.set(hash, record);
  return record;
}

export function forgetCachedKey(hash: string): void {
  cache.delete(hash);
}

export function clearKeyCache(): void {
  cache.clear();
}
