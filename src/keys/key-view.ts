import type { z } from "@hono/zod-openapi";
import type { apiKeys } from "../db/schema";
import { isoTime } from "../openapi/shared";
import type { KeySchema, RatelimitSchema, UsageLimitSchema } from "./key-schemas";

type KeyRow = typeof apiKeys.$inferSelect;

export function ratelimitOf(row: KeyRow): z.infer<typeof RatelimitSchema> | null {
  return row.ratelimitLimit !== null && row.ratelimitWindowMs !== null
    ? { limit: row.ratelimitLimit, window_ms: row.ratelimitWindowMs }
    : null;
}

export function usageLimitOf(row: KeyRow): z.infer<typeof UsageLimitSchema> | null {
  if (row.usageLimit === null) return null;
  return {
    remaining: row.usageLimit,
    ...(row.refillAmount !== null ? { refill_amount: row.refillAmount } : {}),
    ...(row.refillIntervalMs !== null ? { refill_interval_ms: row.refillIntervalMs } : {}),
  };
}

/** The only way a key row leaves the service: no hash, no plaintext. */
export function keyView(row: KeyRow): z.infer<typeof KeySchema> {
  return {
    id: row.id,
    name: row.name,
    start: row.start,
    last4: row.last4,
    environment: row.environment,
    security_level: row.securityLevel,
    scopes: row.scopes,
    enabled: row.enabled,
    revoked_at: isoTime(row.revokedAt),
    expires_at: isoTime(row.expiresAt),
    ip_allowlist: row.ipAllowlist,
    country_allowlist: row.countryAllowlist,
    ratelimit: ratelimitOf(row),
    usage_limit: usageLimitOf(row),
    metadata: row.metadata,
    service_id: row.serviceId,
    backup_of_id: row.backupOfId,
    rotated_to_id: row.rotatedToId,
    created_at: isoTime(row.createdAt) as string,
    updated_at: isoTime(row.updatedAt) as string,
    last_used_at: isoTime(row.lastUsedAt),
  };
}
