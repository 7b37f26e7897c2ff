import type { AlertSeverity, RuleKind } from "./alert-kinds";
import { parseRuleSettings } from "./rule-schemas";

/**
 * The rules every tenant has without configuring anything: expiry reminders (30, 7 and 1 days, keys and
 * credentials), rotation due/overdue/failed, a live re-test turning failing, and a channel that keeps failing.
 * Their alerts are listed by `GET /api/v1/alerts` even before the tenant has a channel; once it has channels,
 * a default rule notifies every one of them (channel_failing: every one but the failing channel).
 *
 * A stored rule of one of these kinds, enabled or not, replaces the default of that kind for its tenant: that is
 * how a tenant tunes a default, or switches it off (a disabled stored rule).
 */
export const DEFAULT_RULE_KINDS = [
  "expiry_warning",
  "rotation",
  "retest_failing",
  "channel_failing",
] as const;
export type DefaultRuleKind = (typeof DEFAULT_RULE_KINDS)[number];

/** One hour: a condition that clears and comes straight back does not page twice within it. */
export const DEFAULT_COOLDOWN_SECONDS = 3600;

const DEFAULT_SEVERITY: Record<DefaultRuleKind, AlertSeverity> = {
  // The 1-day reminder is raised to critical by the evaluator (src/monitoring/rules/expiry.ts).
  expiry_warning: "warning",
  // A failed rotation is raised to critical by the evaluator (src/monitoring/rules/rotation.ts).
  rotation: "warning",
  retest_failing: "critical",
  channel_failing: "warning",
};

export function isDefaultRuleKind(kind: RuleKind): kind is DefaultRuleKind {
  return (DEFAULT_RULE_KINDS as readonly RuleKind[]).includes(kind);
}

export function defaultRuleId(kind: RuleKind): string {
  return `default:${kind}`;
}

/** The default rule of `kind` as the engine evaluates it (without tenant and channels, which the loader adds). */
export function defaultRule(kind: DefaultRuleKind) {
  return {
    ruleId: defaultRuleId(kind),
    kind,
    severity: DEFAULT_SEVERITY[kind],
    cooldownSeconds: DEFAULT_COOLDOWN_SECONDS,
    serviceId: null,
    settings: parseRuleSettings(kind, {}) as Record<string, unknown>,
  };
}
