import type { SecurityStep } from "./steps";

export interface ChecklistItem {
  standard: string;
  control: string;
  met: boolean;
  why: string;
}

/**
 * An honest checklist: for each chosen standard, the relevant controls and whether the chosen settings meet
 * them. It is not a certification; controls Keywarden always provides are marked as such.
 */
export function complianceChecklist(security: SecurityStep, hasMonitoring: boolean): ChecklistItem[] {
  const mfa = security.require_2fa;
  const network = security.ip_allowlist.length > 0;
  const rotation = security.rotation_policy !== "none";
  const items: Record<string, [string, boolean, string][]> = {
    soc2: [
      [
        "CC6.1 Logical access: multi-factor for administrators",
        mfa,
        mfa ? "2FA is required" : "2FA is not required",
      ],
      [
        "CC6.6 Restrict access from outside the boundary",
        network,
        network ? "IP allowlist set" : "no IP allowlist",
      ],
      [
        "CC6.7 Protect data at rest",
        true,
        "Keywarden encrypts every credential (AES-256-GCM, per-tenant keys)",
      ],
      [
        "CC7.2 Monitor for anomalies",
        hasMonitoring,
        hasMonitoring ? "alert channels configured" : "no alert channel yet",
      ],
      ["CC8.1 Change tracking", true, "hash-chained audit log of every change"],
    ],
    gdpr: [
      ["Art. 32(1)(a) Encryption of personal data", true, "credentials encrypted at rest"],
      [
        "Art. 32(1)(b) Ongoing confidentiality: access control",
        mfa,
        mfa ? "2FA is required" : "2FA is not required",
      ],
      [
        "Art. 44 Transfers: restrict where access comes from",
        security.country_allowlist.length > 0,
        security.country_allowlist.length > 0 ? "country allowlist set" : "no country allowlist",
      ],
    ],
    hipaa: [
      ["§164.312(a)(2)(iv) Encryption and decryption", true, "credentials encrypted at rest"],
      ["§164.312(b) Audit controls", true, "hash-chained audit log"],
      ["§164.312(d) Person or entity authentication", mfa, mfa ? "2FA is required" : "2FA is not required"],
      [
        "§164.308(a)(5)(ii)(D) Password/secret management",
        rotation,
        rotation ? "rotation scheduled" : "no rotation policy",
      ],
    ],
    pci_dss: [
      [
        "3.5 / 3.6 Protect stored keys and keep keys secret",
        true,
        "envelope encryption, keys never stored in plaintext",
      ],
      [
        "3.7.4 Cryptoperiod: rotate keys at the end of it",
        rotation,
        rotation ? "rotation scheduled" : "no rotation policy",
      ],
      ["8.4 MFA for administrative access", mfa, mfa ? "2FA is required" : "2FA is not required"],
      ["1.4 Restrict inbound traffic", network, network ? "IP allowlist set" : "no IP allowlist"],
      ["10.2 Audit logs", true, "every change audited"],
      [
        "6.5.5 No test credentials in production",
        security.environment !== "production" || security.security_level !== "basic",
        security.security_level === "basic"
          ? "basic level only warns on test keys"
          : "test/live mix-ups refused",
      ],
    ],
  };
  return security.compliance.flatMap((standard) =>
    (items[standard] ?? []).map(([control, met, why]) => ({ standard, control, met, why })),
  );
}
