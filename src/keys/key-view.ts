import type { z } from "@hono/zod-openapi";
import type { Database } from "../db/client";
import type { apiKeys } from "../db/schema";
import { latestRuns, type RotationRun, rotationView } from "../lifecycle/rotation-runs";
import { isoTime } from "../openapi/shared";
import type { KeySchema, RatelimitSchema, UsageLimitSchema } from "./key-schemas";
import { keyStateOf } from "./key-state";

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

/** The row's columns for a ratelimit (`ratelimitOf`'s inverse); null clears them. */
export function ratelimitColumns(ratelimit: z.infer<typeof RatelimitSchema> | null) {
  return { ratelimitLimit: ratelimit?.limit ?? null, ratelimitWindowMs: ratelimit?.window_ms ?? null };
}

/** The row's columns for a usage limit (`usageLimitOf`'s inverse); null clears them. */
export function usageLimitColumns(usageLimit: z.infer<typeof UsageLimitSchema> | null) {
  return {
    usageLimit: usageLimit?.remaining ?? null,
    refillAmount: usageLimit?.refill_amount ?? null,
    refillIntervalMs: usageLimit?.refill_interval_ms ?? null,
  };
}

/**
 * What a key row shows of itself wherever it leaves the service (the API's key view, the tenant export's
 * bundle): no hash, no plaintext. Each caller adds its own fields.
 */
export function keyFields(row: KeyRow) {
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
  };
}

/**
 * The only way a key row leaves the service through the API: no hash, no plaintext. `run` is the key's
 * latest rotation run (`latestRuns`), for its `rotation.state`; a key without one is idle. `state` is judged
 * at `now` (a list passes the time its filter used).
 */
export function keyView(row: KeyRow, run?: RotationRun, now = Date.now()): z.infer<typeof KeySchema> {
  return {
    ...keyFields(row),
    state: keyStateOf(row, now),
    rotation: rotationView(
      { policyDays: row.rotationDays, nextRotationAt: row.nextRotationAt, lastRotatedAt: row.lastRotatedAt },
      run,
    ),
    created_at: isoTime(row.createdAt) as string,
    updated_at: isoTime(row.updatedAt) as string,
    last_used_at: isoTime(row.lastUsedAt),
  };
}

/** Views of a tenant's keys with their rotation state, in one extra query for the whole page. */
export async function keyViews(db: Database, tenantId: string, rows: readonly KeyRow[], now = Date.now()) {
  const runs = await latestRuns(
    db,
    tenantId,
    rows.map((row) => row.id),
  );
  return rows.map((row) => keyView(row, runs.get(row.id), now));
}
