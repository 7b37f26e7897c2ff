import type { COMPLIANCE_STANDARDS } from "../wizard/security-levels";
import { type ComplianceFacts, DELIVERY_LOOKBACK_DAYS, ROTATION_LOOKBACK_DAYS, retentionOf } from "./facts";

/**
 * The compliance controls, each computed from facts: the live report (GET /api/v1/compliance/report) and the
 * wizard's checklist (planned facts) run the very same functions, so the checklist cannot claim what the
 * settings do not make happen. A control is a statement about Keywarden's own part; it is not a
 * certification or an audit of the tenant.
 */

export const CONTROL_STATUSES = ["met", "not_met", "partial", "not_applicable"] as const;
export type ControlStatus = (typeof CONTROL_STATUSES)[number];

export interface Evidence {
  /** Where the fact comes from: a table, the policy, the audit chain's verification, the level's table. */
  source: string;
  summary: string;
}

export interface ControlResult {
  id: string;
  title: string;
  status: ControlStatus;
  evidence: Evidence[];
}

type Judgement = { status: ControlStatus; evidence: Evidence[] };
type Check = (facts: ComplianceFacts) => Judgement;

const NO_POLICY: Judgement = {
  status: "not_met",
  evidence: [{ source: "security_policies", summary: "no security policy has been set" }],
};

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? "" : "s"}`;

/** Secrets at rest: sealed per tenant whatever the settings. */
const encryption: Check = (facts) => ({
  status: "met",
  evidence: [
    {
      source: "keywarden",
      summary:
        "credentials and channel secrets are sealed with AES-256-GCM under per-tenant data keys; issued keys are stored as hashes only",
    },
    ...(facts.observed
      ? [
          {
            source: "credentials",
            summary: `${plural(facts.observed.credentials.active, "active credential")} stored sealed`,
          },
        ]
      : []),
  ],
});

/** Art. 17: a tenant can be erased, its data keys destroyed first so no copy of its ciphertext decrypts. */
const erasure: Check = () => ({
  status: "met",
  evidence: [
    {
      source: "keywarden",
      summary:
        "DELETE /api/v1/tenants/{id} disables the tenant's keys at once, destroys its data keys (crypto-shredding), then deletes its rows and Durable Object state, and issues a signed receipt",
    },
  ],
});

/** Art. 20: the tenant's data leaves in a machine-readable form, encrypted to the tenant. */
const portability: Check = () => ({
  status: "met",
  evidence: [
    {
      source: "keywarden",
      summary:
        "POST /api/v1/export returns every credential version, key metadata, channel, rule and the policy as JSON inside a JWE; GET /api/v1/audit/export returns the audit log as signed NDJSON",
    },
  ],
});

/** Multi-factor authentication of the people who administer the tenant. */
const adminMfa: Check = (facts) => {
  if (!facts.policy) return NO_POLICY;
  const required = {
    source: "security_policies",
    summary: facts.policy.require2fa
      ? "the policy requires 2FA for every key that signs in or steps up"
      : "the policy does not require 2FA",
  };
  if (!facts.observed) return { status: facts.policy.require2fa ? "met" : "not_met", evidence: [required] };
  const { active, withTotp } = facts.observed.adminKeys;
  const coverage = {
    source: "admin_totp",
    summary: `${withTotp} of ${plural(active, "active admin key")} enrolled in 2FA`,
  };
  const everyone = active > 0 && withTotp === active;
  const status: ControlStatus = facts.policy.require2fa
    ? everyone
      ? "met"
      : "partial"
    : everyone
      ? "partial"
      : "not_met";
  return { status, evidence: [required, coverage] };
};

/** Management calls fenced by one of the policy's allowlists (`count` entries of `unit`). */
const fence =
  (count: (policy: NonNullable<ComplianceFacts["policy"]>) => number, unit: string, none: string): Check =>
  (facts) => {
    if (!facts.policy) return NO_POLICY;
    const n = count(facts.policy);
    return {
      status: n > 0 ? "met" : "not_met",
      evidence: [
        {
          source: "security_policies",
          summary: n > 0 ? `management calls fenced to ${plural(n, unit)}` : none,
        },
      ],
    };
  };

const ipFence = fence((policy) => policy.ipAllowlist, "IP range", "no IP allowlist");
const countryFence = fence((policy) => policy.countryAllowlist, "country", "no country allowlist");

/** Keys and credentials replaced within the policy's period (a cryptoperiod), and rotations that succeed. */
const rotation: Check = (facts) => {
  if (!facts.policy) return NO_POLICY;
  const days = facts.policy.rotationDays;
  if (days === null) {
    return {
      status: "not_met",
      evidence: [
        { source: "security_policies", summary: "no rotation period: keys are rotated by hand only" },
      ],
    };
  }
  const period = { source: "security_policies", summary: `rotation period ${days} days` };
  if (!facts.observed) {
    // Keys minted by the wizard carry the period and the cron rotates them; credentials get no rotation
    // schedule from the wizard (one is set per credential, POST /credentials/{id}/rotation), only reminders.
    const services = facts.planned?.services ?? 0;
    return services > 0
      ? {
          status: "partial",
          evidence: [
            period,
            { source: "api_keys", summary: `Keywarden keys will rotate every ${days} days` },
            {
              source: "credentials",
              summary: `${plural(services, "provider credential")} will not rotate until a rotation is configured for each: only expiry and age alerts`,
            },
          ],
        }
      : {
          status: "met",
          evidence: [
            period,
            { source: "api_keys", summary: `Keywarden keys will rotate every ${days} days` },
          ],
        };
  }
  const { keys, credentials, rotations } = facts.observed;
  const overdue = keys.overdue + credentials.overdue;
  const evidence = [
    period,
    {
      source: "api_keys",
      summary: `${keys.overdue} of ${plural(keys.active, "active key")} older than ${days} days`,
    },
    {
      source: "credentials",
      summary: `${credentials.overdue} of ${plural(credentials.active, "active credential")} older than ${days} days; ${credentials.scheduled} on a rotation schedule`,
    },
    {
      source: "rotation_runs",
      summary: `last ${ROTATION_LOOKBACK_DAYS} days: ${plural(rotations.completed, "rotation")} completed, ${rotations.failed} failed`,
    },
  ];
  if (keys.active + credentials.active === 0) return { status: "not_applicable", evidence };
  return { status: overdue > 0 ? "not_met" : rotations.failed > 0 ? "partial" : "met", evidence };
};

/** Someone is told: alerts are evaluated on the cron, and delivered to channels that work. */
const monitoring: Check = (facts) => {
  const { channels, failingChannels, delivered, dead } = facts.monitoring;
  const configured = {
    source: "alert_channels",
    summary:
      channels > 0
        ? `${plural(channels, "alert channel")}; expiry, rotation and re-test alerts are on by default`
        : "no alert channel: alerts are only listed by the API, nobody is notified",
  };
  if (channels === 0) return { status: "not_met", evidence: [configured] };
  if (delivered === null) return { status: "met", evidence: [configured] };
  const evidence = [
    configured,
    {
      source: "alert_deliveries",
      summary: `last ${DELIVERY_LOOKBACK_DAYS} days: ${plural(delivered, "notification")} delivered, ${dead ?? 0} given up`,
    },
    { source: "alert_channels", summary: `${failingChannels} of ${plural(channels, "channel")} failing` },
  ];
  return { status: failingChannels > 0 ? "partial" : "met", evidence };
};

/** Every change recorded, and the record verifiably untampered. */
const auditTrail: Check = (facts) => {
  const always = {
    source: "audit_log",
    summary: "every change is written with its audit row in one batch, HMAC-chained",
  };
  if (!facts.observed) return { status: "met", evidence: [always] };
  const verdict = facts.observed.auditChain;
  return verdict.ok
    ? {
        status: "met",
        evidence: [
          always,
          { source: "audit chain verification", summary: `${plural(verdict.rows, "row")} verified` },
        ],
      }
    : {
        status: "not_met",
        evidence: [
          always,
          {
            source: "audit chain verification",
            summary: `broken at seq ${verdict.broken_at_seq}: ${verdict.reason}`,
          },
        ],
      };
};

/** The audit log kept at least `minDays`, and retention enforced, not just stated. */
const retention =
  (minDays: number): Check =>
  (facts) => {
    if (!facts.policy) return NO_POLICY;
    const { auditDays, usageDays } = retentionOf(facts.policy.level);
    const kept = {
      source: "security level",
      summary: `audit log kept ${auditDays} days, usage counts ${usageDays} days, enforced on the cron${minDays ? `; ${minDays} days required` : ""}`,
    };
    const longEnough = auditDays >= minDays;
    if (!facts.observed) return { status: longEnough ? "met" : "not_met", evidence: [kept] };
    const { oldestAgeDays, horizonMovedAt } = facts.observed.audit;
    // One day of slack: the purge runs on the cron, so a row may outlive its day by one tick.
    const enforced = oldestAgeDays === null || oldestAgeDays <= auditDays + 1;
    const evidence = [
      kept,
      {
        source: "audit_log",
        summary: `oldest audit row ${oldestAgeDays ?? 0} days old${horizonMovedAt ? `; pruned up to ${new Date(horizonMovedAt).toISOString()}` : ""}`,
      },
    ];
    return { status: !longEnough ? "not_met" : enforced ? "met" : "partial", evidence };
  };

/** Test credentials kept out of production: the level decides whether a mix-up is refused or only warned. */
const noTestInProduction: Check = (facts) => {
  if (!facts.policy) return NO_POLICY;
  if (facts.policy.environment !== "production") {
    return {
      status: "not_applicable",
      evidence: [{ source: "security_policies", summary: `environment is ${facts.policy.environment}` }],
    };
  }
  const refuses = facts.policy.level !== "basic";
  return {
    status: refuses ? "met" : "partial",
    evidence: [
      {
        source: "security level",
        summary: refuses
          ? "test/live mix-ups are refused"
          : "the basic level only warns about test keys in production",
      },
    ],
  };
};

interface ControlSpec {
  id: string;
  title: string;
  check: Check;
}

const c = (id: string, title: string, check: Check): ControlSpec => ({ id, title, check });

/** HIPAA §164.316(b)(2)(i): six years; PCI DSS 10.5.1: twelve months. */
const SIX_YEARS = 6 * 365;
const ONE_YEAR = 365;

export const CONTROLS: Record<(typeof COMPLIANCE_STANDARDS)[number]["id"], ControlSpec[]> = {
  soc2: [
    c("CC6.1-mfa", "CC6.1 Logical access: multi-factor for administrators", adminMfa),
    c("CC6.1-rotation", "CC6.1 Credential lifecycle: rotation within the policy's period", rotation),
    c("CC6.6", "CC6.6 Restrict access from outside the boundary", ipFence),
    c("CC6.7", "CC6.7 Protect data at rest", encryption),
    c("CC7.2", "CC7.2 Monitor for anomalies and notify", monitoring),
    c("CC8.1", "CC8.1 Change tracking with an intact audit trail", auditTrail),
  ],
  gdpr: [
    c("art32-1a", "Art. 32(1)(a) Encryption of personal data", encryption),
    c("art32-1b", "Art. 32(1)(b) Ongoing confidentiality: access control", adminMfa),
    c("art32-1d", "Art. 32(1)(d) Regularly verifying the measures", auditTrail),
    c("art33", "Art. 33 Detect and report breaches", monitoring),
    c("art5-1e", "Art. 5(1)(e) Storage limitation: retention enforced", retention(0)),
    c("art44", "Art. 44 Transfers: restrict where access comes from", countryFence),
    c("art17", "Art. 17 Right to erasure: the tenant's data destroyed on request", erasure),
    c("art20", "Art. 20 Data portability: the tenant's data exported", portability),
  ],
  hipaa: [
    c("164.312(a)(2)(iv)", "§164.312(a)(2)(iv) Encryption and decryption", encryption),
    c("164.312(b)", "§164.312(b) Audit controls", auditTrail),
    c("164.312(d)", "§164.312(d) Person or entity authentication", adminMfa),
    c("164.308(a)(5)(ii)(D)", "§164.308(a)(5)(ii)(D) Password and secret management", rotation),
    c("164.308(a)(1)(ii)(D)", "§164.308(a)(1)(ii)(D) Information system activity review", monitoring),
    c("164.316(b)(2)(i)", "§164.316(b)(2)(i) Retain documentation six years", retention(SIX_YEARS)),
  ],
  pci_dss: [
    c("3.5-3.6", "3.5 / 3.6 Protect stored keys and keep keys secret", encryption),
    c("3.7.4", "3.7.4 Cryptoperiod: rotate keys at the end of it", rotation),
    c("8.4", "8.4 MFA for administrative access", adminMfa),
    c("1.4", "1.4 Restrict inbound traffic", ipFence),
    c("10.2", "10.2 Audit logs of every change", auditTrail),
    c("10.5.1", "10.5.1 Keep audit log history for at least 12 months", retention(ONE_YEAR)),
    c("10.7", "10.7 Detect and respond to failures of security controls", monitoring),
    c("6.5.5", "6.5.5 No test credentials in production", noTestInProduction),
  ],
};

export type Standard = keyof typeof CONTROLS;
export const STANDARDS = Object.keys(CONTROLS) as [Standard, ...Standard[]];

export function evaluateControls(standard: Standard, facts: ComplianceFacts): ControlResult[] {
  return CONTROLS[standard].map((control) => ({
    id: control.id,
    title: control.title,
    ...control.check(facts),
  }));
}
