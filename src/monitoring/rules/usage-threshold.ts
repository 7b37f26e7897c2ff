import {
  type CounterSnapshot,
  keysInScope,
  requestsOf,
  rounded,
  scopeOf,
  sliding,
  totalOf,
} from "../counter-snapshot";
import type { Condition, EvaluatedRule, Evaluation } from "../evaluation";
import { parseRuleSettings } from "../rule-schemas";

/**
 * usage_threshold: requests over the last hour or day (sliding window, src/monitoring/counter-snapshot.ts).
 * - `threshold`: per key; a rule that names a service and no key counts the service's keys together.
 * - `percent_of_limit`: per key with a usage limit, its VALID verifications (refused ones consume nothing) in
 *   the window against the limit. The exact remaining count lives in the key's limiter Durable Object, which
 *   the cron does not call for every key: the estimate matches it when the key's refill interval is the rule's
 *   window (docs/anomaly-detection.md).
 */
export function evaluateUsageThreshold(rule: EvaluatedRule, snapshot: CounterSnapshot): Evaluation {
  const settings = parseRuleSettings("usage_threshold", rule.settings);
  const window = settings.window === "hour" ? snapshot.hour : snapshot.day;
  if (!window) return { rule, conditions: [], scope: "none" };
  const span = settings.window === "hour" ? "hour" : "24 hours";
  const keys = keysInScope(window, rule, settings.key_id);
  const conditions: Condition[] = [];
  const { threshold, percent_of_limit: percent } = settings;
  // A rule naming a service and no key counts the service's keys together, from the window's totals.
  const serviceId = settings.key_id === undefined ? rule.serviceId : null;
  if (threshold !== undefined && serviceId !== null) {
    const requests = sliding(window, totalOf(window, rule.tenantId, serviceId), requestsOf);
    if (requests >= threshold) {
      conditions.push({
        subject: { type: "service", id: serviceId },
        summary: `Service ${serviceId}: ${Math.round(requests)} requests in the last ${span} (threshold ${threshold})`,
        detail: { requests: Math.round(requests), threshold, window: settings.window },
      });
    }
  } else if (threshold !== undefined) {
    for (const key of keys) {
      const requests = sliding(window, key, requestsOf);
      if (requests < threshold) continue;
      conditions.push({
        subject: { type: "key", id: key.keyId },
        summary: `Key ${key.keyId}: ${Math.round(requests)} requests in the last ${span} (threshold ${threshold})`,
        detail: { requests: Math.round(requests), threshold, window: settings.window },
      });
    }
  } else if (percent !== undefined) {
    for (const key of keys) {
      if (!key.usageLimit) continue;
      const used = sliding(window, key, (counts) => counts.valid);
      const share = (used / key.usageLimit) * 100;
      if (share < percent) continue;
      conditions.push({
        subject: { type: "key", id: key.keyId },
        summary: `Key ${key.keyId}: ${rounded(share)}% of its usage limit used in the last ${span} (alert at ${percent}%)`,
        detail: {
          used: Math.round(used),
          usage_limit: key.usageLimit,
          percent: rounded(share),
          percent_of_limit: percent,
          window: settings.window,
        },
      });
    }
  }
  return {
    rule,
    conditions,
    scope: scopeOf(window, rule.tenantId, threshold !== undefined && serviceId !== null ? [serviceId] : []),
  };
}
