import { type CounterSnapshot, NEW_ORIGIN_WINDOW_MS } from "../counter-snapshot";
import type { Condition, EvaluatedRule, Evaluation } from "../evaluation";
import { parseRuleSettings } from "../rule-schemas";

/**
 * new_origin: a key verified from a country or network (AS number, or the client's /24 or /48 without one) it
 * had never been verified from. The snapshot holds origins first seen within the last NEW_ORIGIN_WINDOW_MS and
 * at least NEW_ORIGIN_LEARNING_MS after the key's first origin of that kind: a new key's first day of origins
 * is its normal set, not news (src/monitoring/counter-snapshot.ts). Each new origin is its own alert
 * (occurrence `<kind>:<value>`), open while the origin is news and resolved by absence once it is a day old.
 */
export function evaluateNewOrigin(rule: EvaluatedRule, snapshot: CounterSnapshot): Evaluation {
  const settings = parseRuleSettings("new_origin", rule.settings);
  if (!snapshot.origins) return { rule, conditions: [], scope: "none" };
  const kinds = new Set(settings.origins);
  const conditions: Condition[] = [];
  for (const origin of snapshot.origins.rows) {
    if (origin.tenantId !== rule.tenantId || !kinds.has(origin.kind)) continue;
    if (settings.key_id !== undefined && origin.keyId !== settings.key_id) continue;
    if (rule.serviceId !== null && origin.serviceId !== rule.serviceId) continue;
    conditions.push({
      subject: { type: "key", id: origin.keyId },
      occurrence: `${origin.kind}:${origin.value}`,
      summary: `Key ${origin.keyId} used from a new ${origin.kind}: ${origin.value}`,
      detail: {
        origin_kind: origin.kind,
        origin: origin.value,
        first_seen_at: new Date(origin.firstSeenAt).toISOString(),
        news_until: new Date(origin.firstSeenAt + NEW_ORIGIN_WINDOW_MS).toISOString(),
      },
    });
  }
  return { rule, conditions, scope: snapshot.origins.complete ? "all" : "none" };
}
