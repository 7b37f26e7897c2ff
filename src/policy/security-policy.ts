import { z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import type { AuditEvent } from "../audit/audit-log";
import type { SecurityLevel } from "../crypto/keys";
import type { Database } from "../db/client";
import { securityPolicies, tenants } from "../db/schema";
import { ApiError } from "../errors";
import type { KeySettings } from "../keys/issue-key";
import { CidrSchema, CountrySchema } from "../keys/key-schemas";
import { originAllowed, type RequestOrigin } from "../keys/verify-key";
import { isoTime } from "../openapi/shared";
import {
  COMPLIANCE_STANDARDS,
  ENVIRONMENTS,
  ROTATION_POLICIES,
  type RotationPolicy,
  rotationDays,
  SECURITY_LEVELS,
} from "../wizard/security-levels";

export type SecurityPolicy = typeof securityPolicies.$inferSelect;

const LEVEL_ORDER: readonly SecurityLevel[] = ["basic", "enhanced", "enterprise"];

/** The tenant's committed security policy, or null when no wizard has set one yet. */
export async function tenantSecurityPolicy(db: Database, tenantId: string): Promise<SecurityPolicy | null> {
  return (await tenantSecurityPolicyQuery(db, tenantId).get()) ?? null;
}

/** The tenant's policy row as a query, for a route that reads it in one batch with its other reads. */
export function tenantSecurityPolicyQuery(db: Database, tenantId: string) {
  return db.select().from(securityPolicies).where(eq(securityPolicies.tenantId, tenantId));
}

/** What minting a key needs of its tenant, in one read: the key prefix (`kw` if none) and the policy. */
export async function tenantKeyDefaults(
  db: Database,
  tenantId: string,
): Promise<{ prefix: string; policy: SecurityPolicy | null }> {
  const row = await db
    .select({ prefix: tenants.keyPrefix, policy: securityPolicies })
    .from(tenants)
    .leftJoin(securityPolicies, eq(securityPolicies.tenantId, tenants.id))
    .where(eq(tenants.id, tenantId))
    .get();
  return { prefix: row?.prefix ?? "kw", policy: row?.policy ?? null };
}

/**
 * The tenant's level is a floor, not a default: whatever is created later through the API or the seed
 * routes gets at least the entropy, backup key and environment-mismatch refusal the tenant chose.
 */
export function levelAtLeastPolicy(
  requested: SecurityLevel,
  policy: Pick<SecurityPolicy, "securityLevel"> | null,
) {
  if (!policy) return requested;
  return LEVEL_ORDER.indexOf(requested) >= LEVEL_ORDER.indexOf(policy.securityLevel)
    ? requested
    : policy.securityLevel;
}

/**
 * A key minted under a policy: its level raised to the policy's floor, its rotation period at most the
 * policy's (a key may rotate more often, never less), and the policy's IP and country allowlists inherited
 * when the key brings none of its own (a key's own list is the narrower choice).
 */
export function keySettingsUnderPolicy(settings: KeySettings, policy: SecurityPolicy | null): KeySettings {
  if (!policy) return settings;
  return {
    ...settings,
    securityLevel: levelAtLeastPolicy(settings.securityLevel, policy),
    rotationDays:
      policy.rotationDays === null || settings.rotationDays === null
        ? (settings.rotationDays ?? policy.rotationDays)
        : Math.min(settings.rotationDays, policy.rotationDays),
    ipAllowlist: settings.ipAllowlist ?? (policy.ipAllowlist.length ? policy.ipAllowlist : null),
    countryAllowlist:
      settings.countryAllowlist ?? (policy.countryAllowlist.length ? policy.countryAllowlist : null),
  };
}

/**
 * The security settings a policy is written from: the wizard's security step and the body of
 * `PUT /api/v1/security-policy` are this one schema.
 */
const settingFields = {
  security_level: z.enum(["basic", "enhanced", "enterprise"]),
  environment: z.enum(ENVIRONMENTS),
  rotation_policy: z.enum(Object.keys(ROTATION_POLICIES) as [RotationPolicy, ...RotationPolicy[]]),
  custom_rotation_days: z.number().int().min(1).max(365),
  ip_allowlist: z.array(CidrSchema).max(100),
  country_allowlist: z.array(CountrySchema).max(250),
  require_2fa: z.boolean(),
  compliance: z.array(z.enum(COMPLIANCE_STANDARDS.map((s) => s.id) as [string, ...string[]])).max(4),
};

export const SecuritySettingsSchema = z
  .strictObject({
    ...settingFields,
    custom_rotation_days: settingFields.custom_rotation_days.optional(),
    ip_allowlist: settingFields.ip_allowlist.default([]),
    country_allowlist: settingFields.country_allowlist.default([]),
    require_2fa: settingFields.require_2fa.default(false),
    compliance: settingFields.compliance.default([]),
  })
  .openapi("SecuritySettings");

/** A PATCH names only what changes: no defaults, so an unnamed setting keeps its stored value. */
export const SecuritySettingsPatchSchema = z
  .strictObject({
    security_level: settingFields.security_level.optional(),
    environment: settingFields.environment.optional(),
    rotation_policy: settingFields.rotation_policy.optional(),
    custom_rotation_days: settingFields.custom_rotation_days.optional(),
    ip_allowlist: settingFields.ip_allowlist.optional(),
    country_allowlist: settingFields.country_allowlist.optional(),
    require_2fa: settingFields.require_2fa.optional(),
    compliance: settingFields.compliance.optional(),
  })
  .openapi("SecuritySettingsPatch");
export type SecuritySettings = z.infer<typeof SecuritySettingsSchema>;

/** What the chosen level demands of the other settings (SECURITY_LEVELS), as one 422 naming each field. */
export function assertSettingsMeetLevel(settings: SecuritySettings, path = "") {
  const level = SECURITY_LEVELS[settings.security_level];
  const at = (field: string) => [path, field].filter(Boolean).join(".");
  const errors: { path: string; message: string }[] = [];
  if (level.requires_2fa && !settings.require_2fa)
    errors.push({ path: at("require_2fa"), message: `${settings.security_level} requires 2FA` });
  if (level.requires_ip_restriction && settings.ip_allowlist.length === 0) {
    errors.push({ path: at("ip_allowlist"), message: `${settings.security_level} requires an IP allowlist` });
  }
  if (settings.rotation_policy === "custom" && settings.custom_rotation_days === undefined) {
    errors.push({ path: at("custom_rotation_days"), message: "required for a custom rotation policy" });
  }
  if (errors.length)
    throw new ApiError("VALIDATION_FAILED", "The security settings do not meet the chosen level.", {
      errors,
    });
}

/**
 * The policy's allowlists fence every later management call, so a policy that leaves out the address or
 * country it is written from would lock its own admin out on the next request.
 */
export function assertInsideFence(settings: SecuritySettings, origin: RequestOrigin, path = "") {
  const fence = {
    ipAllowlist: settings.ip_allowlist.length ? settings.ip_allowlist : null,
    countryAllowlist: settings.country_allowlist.length ? settings.country_allowlist : null,
  };
  if (!originAllowed(fence, origin)) {
    throw new ApiError(
      "CONFLICT",
      "This policy's allowlists would lock you out: include where you are now.",
      {
        errors: [
          { path: path || "ip_allowlist", message: "excludes the address or country of this request" },
        ],
      },
    );
  }
}

/** The settings a stored policy was written from (for a PATCH to merge into, and for comparing). */
export function settingsOfPolicy(row: SecurityPolicy): SecuritySettings {
  const custom = row.rotationPolicy === "custom" && row.rotationDays !== null;
  return {
    security_level: row.securityLevel,
    environment: row.environment,
    rotation_policy: row.rotationPolicy as RotationPolicy,
    ...(custom ? { custom_rotation_days: row.rotationDays as number } : {}),
    ip_allowlist: row.ipAllowlist,
    country_allowlist: row.countryAllowlist,
    require_2fa: row.require2fa,
    compliance: row.compliance,
  };
}

/** The policy row of these settings. `wizardId` is the wizard that wrote it, "" when written through the API. */
export function policyValues(
  tenantId: string,
  settings: SecuritySettings,
  origin: { wizardId: string; now: number },
): SecurityPolicy {
  return {
    tenantId,
    securityLevel: settings.security_level,
    environment: settings.environment,
    rotationPolicy: settings.rotation_policy,
    rotationDays: rotationDays(
      settings.security_level,
      settings.rotation_policy,
      settings.custom_rotation_days,
    ),
    ipAllowlist: settings.ip_allowlist,
    countryAllowlist: settings.country_allowlist,
    require2fa: settings.require_2fa,
    compliance: settings.compliance,
    wizardId: origin.wizardId,
    updatedAt: origin.now,
  };
}

const COMPARED: (keyof SecurityPolicy)[] = [
  "securityLevel",
  "environment",
  "rotationPolicy",
  "rotationDays",
  "ipAllowlist",
  "countryAllowlist",
  "require2fa",
  "compliance",
];
const SNAKE: Partial<Record<keyof SecurityPolicy, string>> = {
  securityLevel: "security_level",
  rotationPolicy: "rotation_policy",
  rotationDays: "rotation_days",
  ipAllowlist: "ip_allowlist",
  countryAllowlist: "country_allowlist",
  require2fa: "require_2fa",
};

/** The settings (API names) in which a new policy differs from the stored one. */
export function changedPolicyFields(before: SecurityPolicy | null, after: SecurityPolicy): string[] {
  if (!before) return [];
  return COMPARED.filter((field) => JSON.stringify(before[field]) !== JSON.stringify(after[field])).map(
    (field) => SNAKE[field] ?? field,
  );
}

/** The upsert of a tenant's policy and its audit event. */
export function policyWriteStatement(db: Database, values: SecurityPolicy, changed: readonly string[]) {
  const event: AuditEvent = {
    action: "policy.update",
    targetType: "tenant",
    targetId: values.tenantId,
    detail: { level: values.securityLevel, changed: [...changed], via: values.wizardId ? "wizard" : "api" },
  };
  return {
    statement: db
      .insert(securityPolicies)
      .values(values)
      .onConflictDoUpdate({ target: securityPolicies.tenantId, set: values }),
    event,
  };
}

export const PolicyViewSchema = z
  .object({
    security_level: z.enum(["basic", "enhanced", "enterprise"]),
    environment: z.enum(ENVIRONMENTS),
    rotation_policy: z.string(),
    rotation_days: z.number().int().nullable(),
    ip_allowlist: z.array(z.string()),
    country_allowlist: z.array(z.string()),
    require_2fa: z.boolean(),
    compliance: z.array(z.string()),
    wizard_id: z
      .string()
      .describe("The wizard that last wrote the policy; empty when written through the API."),
    updated_at: z.string(),
  })
  .openapi("SecurityPolicy");

export function policyView(row: SecurityPolicy): z.infer<typeof PolicyViewSchema> {
  return {
    security_level: row.securityLevel,
    environment: row.environment,
    rotation_policy: row.rotationPolicy,
    rotation_days: row.rotationDays,
    ip_allowlist: row.ipAllowlist,
    country_allowlist: row.countryAllowlist,
    require_2fa: row.require2fa,
    compliance: row.compliance,
    wizard_id: row.wizardId,
    updated_at: isoTime(row.updatedAt) as string,
  };
}
