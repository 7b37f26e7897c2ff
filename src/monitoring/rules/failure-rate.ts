import type { AlertSubjectType } from "../alert-kinds";
import {
  type CounterSnapshot,
  keysInScope,
  requestsOf,
  rounded,
  scopeOf,
  sliding,
  totalOf,
  type WindowCounts,
} from "../counter-snapshot";
import type { Condition, EvaluatedRule, Evaluation } from "../evaluation";
import { parseRuleSettings } from "../rule-schemas";

/**
 * failure_rate: failed verifications in percent of all, over the last hour or day (sliding window), for each
 * key with at least `min_requests` in the window; and, unless the rule names one key, for the rule's whole
 * scope: the tenant (including the answers that named no key: INVALID_FORMAT and NOT_FOUND, a guessing
 * pattern), or the rule's service, from the window's totals (every key, even when the tick read only some).
 */
export function evaluateFailureRate(rule: EvaluatedRule, snapshot: CounterSnapshot): Evaluation {
  const settings = parseRuleSettings("failure_rate", rule.settings);
  const window = settings.window === "hour" ? snapshot.hour : snapshot.day;
  if (!window) return { rule, conditions: [], scope: "none" };
  const span = settings.window === "hour" ? "hour" : "24 hours";
  const check = (
    subject: { type: AlertSubjectType; id: string },
    label: string,
    counts: WindowCounts,
  ): Condition | null => {
    const failures = sliding(window, counts, (c) => c.invalid);
    const requests = sliding(window, counts, requestsOf);
    if (requests < settings.min_requests || requests === 0) return null;
    const rate = (failures / requests) * 100;
    if (rate < settings.threshold_percent) return null;
    return {
      subject,
      summary: `${label}: ${rounded(rate)}% of ${Math.round(requests)} verifications failed in the last ${span} (alert at ${settings.threshold_percent}%)`,
      detail: {
        failure_percent: rounded(rate),
        failures: Math.round(failures),
        requests: Math.round(requests),
        threshold_percent: settings.threshold_percent,
        window: settings.window,
      },
    };
  };
  const conditions: Condition[] = [];
  for (const key of keysInScope(window, rule, settings.key_id)) {
    const found = check({ type: "key", id: key.keyId }, `Key ${key.keyId}`, key);
    if (found) conditions.push(found);
  }
  const wide: string[] = [];
  if (settings.key_id === undefined) {
    const found =
      rule.serviceId === null
        ? check({ type: "tenant", id: rule.tenantId }, "All keys", totalOf(window, rule.tenantId))
        : check(
            { type: "service", id: rule.serviceId },
            `Service ${rule.serviceId}`,
            totalOf(window, rule.tenantId, rule.serviceId),
          );
    if (found) conditions.push(found);
    wide.push(rule.serviceId ?? rule.tenantId);
  }
  return { rule, conditions, scope: scopeOf(window, rule.tenantId, wide) };
}
