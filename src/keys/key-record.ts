import { env, waitUntil } from "cloudflare:workers";
import { and, eq, type SQL } from "drizzle-orm";
import type { Database } from "../db/client";
import { apiKeys, securityPolicies } from "../db/schema";
import type { LimitPolicy } from "../limits/key-limiter";
import { keyCacheMacKey, keyCacheMacKeyIsDerived } from "./key-cache-mac-key";
import { KeyCacheTiers } from "./key-cache-tier";
import { KeyChangeFeed } from "./key-change-feed";

/** Where a key may be used from; null means anywhere. */
export interface OriginFence {
  ipAllowlist: readonly string[] | null;
  countryAllowlist: readonly string[] | null;
}

/** What verify needs of a key: no hash, nothing secret. */
export interface KeyRecord extends OriginFence {
  id: string;
  tenantId: string;
  name: string;
  environment: "live" | "test";
  enabled: boolean;
  revoked: boolean;
  expiresAt: number | null;
  scopes: readonly string[];
  limits: LimitPolicy | null;
  rotatedToId: string | null;
  metadata: Record<string, unknown> | null;
  /**
   * The tenant's security-policy allowlists, which fence admin access on top of the key's own. Only the
   * fresh management lookups fill it; the verify cache never holds it, because POST /keys/verify is the
   * one route the tenant fence does not apply to.
   */
  tenantFence?: OriginFence;
}

/** How verify finds a key by its hash. */
export type KeyLookup = (db: Database, hash: string) => Promise<KeyRecord | null>;

/**
 * The propagation bound (docs/keys.md): how long after a change any isolate may still serve the key as it was.
 * The isolate that revokes or edits a key drops its own entries at once.
 */
export { KEY_PROPAGATION_BOUND_MS } from "./key-change-feed";

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
    ...originFence(row),
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

/** An empty allowlist, as stored, restricts nothing. */
function originFence(lists: {
  ipAllowlist: string[] | null;
  countryAllowlist: string[] | null;
}): OriginFence {
  return {
    ipAllowlist: lists.ipAllowlist?.length ? lists.ipAllowlist : null,
    countryAllowlist: lists.countryAllowlist?.length ? lists.countryAllowlist : null,
  };
}

/** Outside any request (module scope) there is nothing to extend, and the promise runs on regardless. */
function keepAlive(promise: Promise<unknown>): void {
  try {
    waitUntil(promise);
  } catch {}
}

/**
 * The isolate's tiers (src/keys/key-cache-tier.ts) and its view of the key change feed, shared with the
 * location's other isolates (src/keys/feed-view-snapshot.ts). The Cache API entries and snapshots are MACed
 * under the deployment's entry key, from the Worker's own environment (src/keys/key-cache-mac-key.ts).
 */
const tiers = new KeyCacheTiers(
  new KeyChangeFeed(),
  {
    cache: () => caches.default,
    entryKey: (d1) => keyCacheMacKey(env, d1),
    entryKeyAtHand: () => keyCacheMacKeyIsDerived(env),
    shareFeedView: true,
    keepAlive,
  },
  toKeyRecord,
);

/**
 * Lookup by SHA-256 only: the key string itself is never compared or stored. Misses are cached too. Served
 * from the isolate, the location's cache or a read replica, within KEY_PROPAGATION_BOUND_MS of any change:
 * only POST /keys/verify may use this (threat model case 29).
 */
export function findKeyByHash(db: Database, hash: string): Promise<KeyRecord | null> {
  return tiers.lookup(db.$client, hash);
}

/**
 * A key read fresh from D1 together with its tenant's policy allowlists, in one query. Every management
 * call authenticates through this, never through the cache, so a revoked or down-scoped admin key is
 * refused on the very next call in every isolate (threat model case 29).
 */
async function findFenced(db: Database, where: SQL | undefined): Promise<KeyRecord | null> {
  const row = await db
    .select({
      key: apiKeys,
      ipAllowlist: securityPolicies.ipAllowlist,
      countryAllowlist: securityPolicies.countryAllowlist,
    })
    .from(apiKeys)
    .leftJoin(securityPolicies, eq(securityPolicies.tenantId, apiKeys.tenantId))
    .where(where)
    .get();
  return row ? { ...toKeyRecord(row.key), tenantFence: originFence(row) } : null;
}

/** The fresh lookup for a bearer key on a management route or at sign-in. */
export const findKeyForManagement: KeyLookup = (db, hash) => findFenced(db, eq(apiKeys.hash, hash));

/** The fresh lookup for the key behind a browser session. */
export function findSessionKey(db: Database, tenantId: string, keyId: string): Promise<KeyRecord | null> {
  return findFenced(db, and(eq(apiKeys.id, keyId), eq(apiKeys.tenantId, tenantId)));
}

/** After this isolate committed a change to the key: its entries here and in the location's cache go. */
export function forgetCachedKey(hash: string): void {
  tiers.forget(hash);
}

/** After a change to keys this isolate cannot name (a tenant's erasure): nothing cached is served before a poll. */
export function clearKeyCache(): void {
  tiers.clear();
}
