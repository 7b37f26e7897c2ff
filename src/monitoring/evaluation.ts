import type { AlertSeverity, AlertSubjectType, RuleKind } from "./alert-kinds";

/** A rule as the engine evaluates it: a tenant's stored rule, or one of the defaults every tenant has. */
export interface EvaluatedRule {
  tenantId: string;
  /** The rule row's id, or `default:<kind>` (src/monitoring/default-rules.ts). */
  ruleId: string;
  kind: RuleKind;
  severity: AlertSeverity;
  cooldownSeconds: number;
  /** Where its notifications go (a default rule: every channel of the tenant). */
  channelIds: string[];
  serviceId: string | null;
  /** Parsed with the kind's settings schema (src/monitoring/rule-schemas.ts). */
  settings: Record<string, unknown>;
}

/** One thing that is true now and that the rule alerts on. */
export interface Condition {
  subject: { type: AlertSubjectType; id: string };
  /**
   * Distinguishes occurrences about the same subject, and is part of the fingerprint: the 7-day reminder of
   * an expiry is a different alert from its 30-day one, and a new expiry date a different one again.
   */
  occurrence?: string;
  /** One line for people; never a secret. */
  summary: string;
  detail: Record<string, string | number | null>;
  /** Overrides the rule's severity for this condition (e.g. the 1-day reminder is critical). */
  severity?: AlertSeverity;
}

/**
 * What one evaluation of one rule found. Open alerts of the rule whose subject is inside `scope` and whose
 * fingerprint is not among `conditions` resolve: the condition cleared.
 * - `all`: the rule was evaluated over every subject it covers.
 * - `subjects`: only these subject ids were looked at (one chunk of a larger evaluation).
 * - `none`: nothing resolves by absence (event-driven rules resolve through their own `resolves`).
 */
export interface Evaluation {
  rule: EvaluatedRule;
  conditions: Condition[];
  scope: "all" | "none" | { subjects: string[] };
  /** Fingerprints of open alerts that resolve now whatever the scope (e.g. a later rotation succeeded). */
  resolves?: string[];
}

/** The fingerprint that de-duplicates alerts: rule + subject + occurrence. */
export function fingerprintOf(ruleId: string, condition: Pick<Condition, "subject" | "occurrence">): string {
  const base = `${ruleId}|${condition.subject.type}:${condition.subject.id}`;
  return condition.occurrence ? `${base}|${condition.occurrence}` : base;
}
