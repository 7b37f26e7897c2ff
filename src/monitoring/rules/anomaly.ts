import { assess, catchUp, hourOfWeek } from "../anomaly";
import { type CounterSnapshot, type KeyWindow, keysInScope, rounded, scopeOf } from "../counter-snapshot";
import type { Condition, EvaluatedRule, Evaluation } from "../evaluation";
import { parseRuleSettings } from "../rule-schemas";

/**
 * anomaly_volume / anomaly_failures: a key's requests (or failed verifications) in one hour far above its own
 * baseline for that hour of the week (src/monitoring/anomaly.ts, docs/anomaly-detection.md).
 *
 * Two hours are scored, each against its slot as it stood before that hour (the fold runs two hours behind,
 * src/monitoring/baselines.ts): the last closed hour, complete; and the current one so far, which can only grow,
 * so a spike is raised within a cron interval instead of after the hour. The alert holds while either is
 * anomalous: it fires during the spike, stays through the hour after it (then the last closed hour), and
 * resolves once a normal hour has closed.
 */
export function evaluateAnomaly(rule: EvaluatedRule, snapshot: CounterSnapshot): Evaluation {
  const volume = rule.kind === "anomaly_volume";
  const settings = parseRuleSettings(volume ? "anomaly_volume" : "anomaly_failures", rule.settings);
  const window = snapshot.hour;
  if (!window) return { rule, conditions: [], scope: "none" };
  const series = volume ? "requests" : "failed verifications";
  const conditions: Condition[] = [];
  for (const key of keysInScope(window, rule, settings.key_id)) {
    const worst = worstHour(key, window.previousStart, window.currentStart, volume, {
      zThreshold: settings.z_threshold,
      minCount: settings.min_count,
    });
    if (!worst) continue;
    conditions.push({
      subject: { type: "key", id: key.keyId },
      summary: `Key ${key.keyId}: ${worst.count} ${series} in the hour from ${new Date(worst.hour).toISOString()}, usually about ${Math.round(worst.expected)} (z = ${rounded(worst.z)})`,
      detail: {
        hour: new Date(worst.hour).toISOString(),
        hour_of_week: hourOfWeek(worst.hour),
        count: worst.count,
        expected: rounded(worst.expected),
        z: rounded(worst.z),
        z_threshold: settings.z_threshold,
        weeks_of_history: worst.samples,
      },
    });
  }
  return { rule, conditions, scope: scopeOf(window, rule.tenantId) };
}

function worstHour(
  key: KeyWindow,
  previousStart: number,
  currentStart: number,
  volume: boolean,
  rule: { zThreshold: number; minCount: number },
) {
  let worst: { hour: number; count: number; expected: number; z: number; samples: number } | null = null;
  for (const [which, hour] of [
    ["previous", previousStart],
    ["current", currentStart],
  ] as const) {
    const stored = key.slots[which];
    if (!stored) continue;
    const slot = catchUp(stored, hour);
    const counts = key[which];
    const count = volume ? counts.valid + counts.invalid : counts.invalid;
    const verdict = assess(count, volume ? slot.volume : slot.failures, slot.samples, rule);
    if (verdict.anomalous && (!worst || verdict.z > worst.z)) {
      worst = { hour, count, expected: verdict.expected, z: verdict.z, samples: slot.samples };
    }
  }
  return worst;
}
