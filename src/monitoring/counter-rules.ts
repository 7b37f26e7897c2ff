import { database } from "../db/client";
import type { Bindings } from "../env";
import type { RuleKind } from "./alert-kinds";
import {
  COUNTER_LIMITS,
  type CounterLimits,
  type CounterSnapshot,
  readCounterSnapshot,
  type SnapshotNeeds,
} from "./counter-snapshot";
import type { EvaluatedRule, Evaluation } from "./evaluation";
import { loadRules } from "./rule-loader";
import { parseRuleSettings } from "./rule-schemas";
import { evaluateAnomaly } from "./rules/anomaly";
import { evaluateAuthFailureBurst } from "./rules/auth-failure-burst";
import { evaluateFailureRate } from "./rules/failure-rate";
import { evaluateNewOrigin } from "./rules/new-origin";
import { evaluateUsageThreshold } from "./rules/usage-threshold";

/** The rule kinds evaluated from usage counters and origins (the others: src/monitoring/alert-tick.ts). */
export const COUNTER_RULE_KINDS = [
  "usage_threshold",
  "failure_rate",
  "anomaly_volume",
  "anomaly_failures",
  "new_origin",
  "auth_failure_burst",
] as const satisfies readonly RuleKind[];
export type CounterRuleKind = (typeof COUNTER_RULE_KINDS)[number];

type CounterRule = EvaluatedRule & { kind: CounterRuleKind };

function isCounterRule(rule: EvaluatedRule): rule is CounterRule {
  return (COUNTER_RULE_KINDS as readonly RuleKind[]).includes(rule.kind);
}

/** The window a rule reads: daily only for usage_threshold / failure_rate set to `day`. */
function windowOf(rule: CounterRule): "hour" | "day" | "origins" {
  switch (rule.kind) {
    case "usage_threshold":
    case "failure_rate":
      return parseRuleSettings(rule.kind, rule.settings).window;
    case "new_origin":
      return "origins";
    default:
      return "hour";
  }
}

/** What the snapshot must hold for these rules, so a tick reads nothing no rule needs. */
export function snapshotNeeds(rules: readonly EvaluatedRule[]): SnapshotNeeds {
  const hour = new Set<string>();
  const day = new Set<string>();
  const origins = new Set<string>();
  let slots = false;
  let usageLimits = false;
  for (const rule of rules.filter(isCounterRule)) {
    const window = windowOf(rule);
    (window === "hour" ? hour : window === "day" ? day : origins).add(rule.tenantId);
    if (rule.kind === "anomaly_volume" || rule.kind === "anomaly_failures") slots = true;
    if (
      rule.kind === "usage_threshold" &&
      parseRuleSettings(rule.kind, rule.settings).percent_of_limit !== undefined
    ) {
      usageLimits = true;
    }
  }
  return {
    hourTenants: [...hour].sort(),
    dayTenants: [...day].sort(),
    originTenants: [...origins].sort(),
    slots,
    usageLimits,
  };
}

const EVALUATORS: Record<CounterRuleKind, (rule: EvaluatedRule, snapshot: CounterSnapshot) => Evaluation> = {
  usage_threshold: evaluateUsageThreshold,
  failure_rate: evaluateFailureRate,
  anomaly_volume: evaluateAnomaly,
  anomaly_failures: evaluateAnomaly,
  new_origin: evaluateNewOrigin,
  auth_failure_burst: evaluateAuthFailureBurst,
};

/** Every counter rule against one snapshot: pure. */
export function evaluateCounterRules(
  rules: readonly EvaluatedRule[],
  snapshot: CounterSnapshot,
): Evaluation[] {
  return rules.filter(isCounterRule).map((rule) => EVALUATORS[rule.kind](rule, snapshot));
}

/**
 * The counter rules of every tenant at `now`: the stored rules of COUNTER_RULE_KINDS (none is on by default),
 * one snapshot of the counters they need (src/monitoring/counter-snapshot.ts), each rule evaluated against it.
 * Nothing is read when no tenant has such a rule. `limits`: the snapshot's page size and budget (tests).
 */
export async function counterEvaluations(
  env: Pick<Bindings, "DB">,
  now: number,
  limits: CounterLimits = COUNTER_LIMITS,
): Promise<Evaluation[]> {
  const rules = await loadRules(database(env.DB), COUNTER_RULE_KINDS);
  if (rules.length === 0) return [];
  const snapshot = await readCounterSnapshot(env, snapshotNeeds(rules), now, limits);
  return evaluateCounterRules(rules, snapshot);
}
