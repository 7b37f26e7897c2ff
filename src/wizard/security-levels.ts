import { ENTROPY_BITS, type SecurityLevel } from "../crypto/keys";

/** What each security level turns on. One table, read by the API, the wizard and the checks that enforce it. */
export const SECURITY_LEVELS: Record<
  SecurityLevel,
  {
    name: string;
    description: string;
    key_entropy_bits: number;
    backup_key: boolean;
    /** Longest rotation period the level allows, in days. */
    max_rotation_days: number;
    requires_2fa: boolean;
    requires_ip_restriction: boolean;
    environment_mismatch: "warn" | "refuse";
    audit_retention_days: number;
    /**
     * Days the daily verification counts are kept (src/monitoring/retention.ts; hourly ones are kept 35 days
     * at every level). Storage limitation (GDPR Art. 5(1)(e)): usage history is kept as long as the level's
     * reviews need it, not forever.
     */
    usage_retention_days: number;
  }
> = {
  basic: {
    name: "Basic",
    description: "128-bit keys, rotation at least yearly, mismatched environments only warned about.",
    key_entropy_bits: ENTROPY_BITS.basic,
    backup_key: false,
    max_rotation_days: 365,
    requires_2fa: false,
    requires_ip_restriction: false,
    environment_mismatch: "warn",
    audit_retention_days: 90,
    usage_retention_days: 90,
  },
  enhanced: {
    name: "Enhanced",
    description: "192-bit keys, rotation at least every 90 days, test/live mix-ups refused.",
    key_entropy_bits: ENTROPY_BITS.enhanced,
    backup_key: false,
    max_rotation_days: 90,
    requires_2fa: false,
    requires_ip_restriction: false,
    environment_mismatch: "refuse",
    audit_retention_days: 365,
    usage_retention_days: 400,
  },
  enterprise: {
    name: "Enterprise",
    description:
      "256-bit keys with a backup key, rotation at least every 90 days, 2FA and an IP allowlist required.",
    key_entropy_bits: ENTROPY_BITS.enterprise,
    backup_key: true,
    max_rotation_days: 90,
    requires_2fa: true,
    requires_ip_restriction: true,
    environment_mismatch: "refuse",
    audit_retention_days: 2555,
    usage_retention_days: 800,
  },
};

export const ENVIRONMENTS = ["development", "staging", "production"] as const;

export const ROTATION_POLICIES = {
  "30_days": 30,
  "60_days": 60,
  "90_days": 90,
  custom: null,
  none: null,
} as const;
export type RotationPolicy = keyof typeof ROTATION_POLICIES;

/** The seed API's spellings of the policy ids ("90-days" for "90_days"), derived from the list above. */
export const SEED_ROTATION_SPELLINGS: Readonly<Record<string, RotationPolicy>> = Object.fromEntries(
  (Object.keys(ROTATION_POLICIES) as RotationPolicy[])
    .filter((id) => id.includes("_"))
    .map((id) => [id.replaceAll("_", "-"), id]),
);

/**
 * A seed spelling of a policy id mapped to the canonical id; anything else passes through unchanged for
 * the enum to judge. ROTATION_POLICIES stays the only source of policies.
 */
export function canonicalRotationPolicy(value: unknown): unknown {
  return typeof value === "string" && Object.hasOwn(SEED_ROTATION_SPELLINGS, value)
    ? SEED_ROTATION_SPELLINGS[value]
    : value;
}

export const COMPLIANCE_STANDARDS = [
  {
    id: "soc2",
    name: "SOC 2",
    description: "Trust Services Criteria: access control, change management, monitoring.",
  },
  {
    id: "gdpr",
    name: "GDPR",
    description: "EU personal data: security of processing (Art. 32), accountability.",
  },
  {
    id: "hipaa",
    name: "HIPAA",
    description: "US health data: Security Rule access, audit and integrity controls.",
  },
  {
    id: "pci_dss",
    name: "PCI DSS",
    description: "Card data: key management (req. 3), access (7-8), logging (10).",
  },
] as const;

/** Days until a key issued under this policy must have been rotated, within the level's ceiling. */
export function rotationDays(
  level: SecurityLevel,
  policy: RotationPolicy,
  customDays?: number,
): number | null {
  const ceiling = SECURITY_LEVELS[level].max_rotation_days;
  const requested = policy === "custom" ? (customDays ?? null) : ROTATION_POLICIES[policy];
  if (requested === null) return policy === "none" && level === "basic" ? null : ceiling;
  return Math.min(requested, ceiling);
}
