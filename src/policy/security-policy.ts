import { eq } from "drizzle-orm";
import type { SecurityLevel } from "../crypto/keys";
import type { Database } from "../db/client";
import { securityPolicies, tenants } from "../db/schema";
import type { KeySettings } from "../keys/issue-key";

export type SecurityPolicy = typeof securityPolicies.$inferSelect;

const LEVEL_ORDER: readonly SecurityLevel[] = ["basic", "enhanced", "enterprise"];

/** The tenant's committed security policy, or null when no wizard has set one yet. */
export async function tenantSecurityPolicy(db: Database, tenantId: string): Promise<SecurityPolicy | null> {
  return (
    (await db.select().from(securityPolicies).where(eq(securityPolicies.tenantId, tenantId)).get()) ?? null
  );
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
