import type { z } from "@hono/zod-openapi";
import { assertMayManageKey, ROLES, type Role } from "../auth/scopes";
import { displayParts, generateKey, hashKey, type KeyEnvironment, type SecurityLevel } from "../crypto/keys";
import { newId } from "../crypto/random";
import type { apiKeys } from "../db/schema";
import { ApiError } from "../errors";
import {
  type CreateKeySchema,
  DEFAULT_ROTATION_OVERLAP_SECONDS,
  type RatelimitSchema,
  type UsageLimitSchema,
} from "./key-schemas";
import { ratelimitColumns, ratelimitOf, usageLimitColumns, usageLimitOf } from "./key-view";

type KeyRow = typeof apiKeys.$inferSelect;

export interface KeySettings {
  name: string;
  scopes: string[];
  environment: KeyEnvironment;
  securityLevel: SecurityLevel;
  prefix: string;
  expiresAt: number | null;
  /** Days between scheduled rotations; null rotates by hand only. Never an expiry. */
  rotationDays: number | null;
  /** How long the old key keeps verifying after a rotation promotes its successor. */
  rotationOverlapSeconds: number;
  ipAllowlist: string[] | null;
  countryAllowlist: string[] | null;
  ratelimit: z.infer<typeof RatelimitSchema> | null;
  usageLimit: z.infer<typeof UsageLimitSchema> | null;
  metadata: Record<string, unknown> | null;
  serviceId: string | null;
  createdBy: string | null;
}

/** The ms from a key's birth (or its last rotation) to its next scheduled rotation. */
export function nextRotationAt(rotationDays: number | null, now: number): number | null {
  return rotationDays === null ? null : now + rotationDays * 86_400_000;
}

/** Mints a key and the row that stores it; the plaintext goes back to the caller exactly once. */
export async function mintKey(
  tenantId: string,
  settings: KeySettings,
  extra: { backupOfId?: string; rotatedFromId?: string } = {},
  now = Date.now(),
): Promise<{ key: string; row: KeyRow }> {
  const key = generateKey(settings.prefix, settings.environment, settings.securityLevel);
  const { start, last4 } = displayParts(key);
  const row: KeyRow = {
    id: newId("key"),
    tenantId,
    name: settings.name,
    hash: await hashKey(key),
    start,
    last4,
    environment: settings.environment,
    securityLevel: settings.securityLevel,
    scopes: settings.scopes,
    enabled: true,
    revokedAt: null,
    expiresAt: settings.expiresAt,
    ipAllowlist: settings.ipAllowlist,
    countryAllowlist: settings.countryAllowlist,
    ...ratelimitColumns(settings.ratelimit),
    ...usageLimitColumns(settings.usageLimit),
    limitsVersion: 1,
    metadata: settings.metadata,
    backupOfId: extra.backupOfId ?? null,
    rotatedToId: null,
    rotatedFromId: extra.rotatedFromId ?? null,
    serviceId: settings.serviceId,
    rotationDays: settings.rotationDays,
    rotationOverlapSeconds: settings.rotationOverlapSeconds,
    nextRotationAt: nextRotationAt(settings.rotationDays, now),
    lastRotatedAt: extra.rotatedFromId ? now : null,
    createdBy: settings.createdBy,
    createdAt: now,
    updatedAt: now,
    lastUsedAt: null,
  };
  return { key, row };
}

/** Enterprise keys come with a break-glass twin so losing one never locks the owner out. */
export async function mintKeyWithBackup(tenantId: string, settings: KeySettings) {
  const primary = await mintKey(tenantId, settings);
  const backup =
    settings.securityLevel === "enterprise"
      ? await mintKey(
          tenantId,
          { ...settings, name: `${settings.name} (backup)` },
          { backupOfId: primary.row.id },
        )
      : null;
  return { primary, backup, rows: backup ? [primary.row, backup.row] : [primary.row] };
}

/**
 * The settings a row carries forward into its rotation successor. A key that was given a lifetime gets the
 * same lifetime again from `now` (a fresh period), never its predecessor's end.
 */
export function settingsOf(row: KeyRow, now: number): KeySettings {
  return {
    name: row.name,
    scopes: row.scopes,
    environment: row.environment,
    securityLevel: row.securityLevel,
    prefix: row.start.split("_")[0] ?? "kw",
    expiresAt: row.expiresAt === null ? null : now + Math.max(0, row.expiresAt - row.createdAt),
    rotationDays: row.rotationDays,
    rotationOverlapSeconds: row.rotationOverlapSeconds,
    ipAllowlist: row.ipAllowlist,
    countryAllowlist: row.countryAllowlist,
    ratelimit: ratelimitOf(row),
    usageLimit: usageLimitOf(row),
    metadata: row.metadata,
    serviceId: row.serviceId,
    createdBy: row.createdBy,
  };
}

export function resolveScopes(
  role: Role | undefined,
  scopes: readonly string[] | undefined,
  held: ReadonlySet<string>,
) {
  const resolved = [...new Set([...(role ? ROLES[role] : []), ...(scopes ?? [])])];
  assertMayManageKey({ scopes: held }, resolved);
  return resolved;
}

export function parseFutureTime(iso: string, now = Date.now()): number {
  const ms = Date.parse(iso);
  if (!(ms > now)) throw new ApiError("VALIDATION_FAILED", "expires_at must be in the future.");
  return ms;
}

export function settingsFromRequest(
  body: z.infer<typeof CreateKeySchema>,
  held: ReadonlySet<string>,
  defaults: { prefix: string; createdBy: string; rotationDays: number | null },
): KeySettings {
  return {
    name: body.name,
    scopes: resolveScopes(body.role, body.scopes, held),
    environment: body.environment,
    securityLevel: body.security_level,
    prefix: body.prefix ?? defaults.prefix,
    expiresAt: body.expires_at ? parseFutureTime(body.expires_at) : null,
    rotationDays:
      body.rotation?.policy_days === undefined ? defaults.rotationDays : body.rotation.policy_days,
    rotationOverlapSeconds: body.rotation?.overlap_seconds ?? DEFAULT_ROTATION_OVERLAP_SECONDS,
    ipAllowlist: body.ip_allowlist ?? null,
    countryAllowlist: body.country_allowlist ?? null,
    ratelimit: body.ratelimit ?? null,
    usageLimit: body.usage_limit ?? null,
    metadata: body.metadata ?? null,
    serviceId: body.service_id ?? null,
    createdBy: defaults.createdBy,
  };
}
