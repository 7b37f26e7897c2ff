import { type CounterSnapshot, sliding, totalOf } from "../counter-snapshot";
import type { EvaluatedRule, Evaluation } from "../evaluation";
import { parseRuleSettings } from "../rule-schemas";

/**
 * auth_failure_burst: authentication to Keywarden itself refused with the tenant's keys (usage_counts
 * `auth_failed`: a known key refused by the management API, a wrong TOTP code), summed over the tenant's keys
 * for the last hour (sliding window), at or above `threshold`. One alert per tenant, naming the key with the
 * most refusals. Both come from the window's totals, which count every key even when the tick read only some. A credential-stuffing or a leaked-key probe shows here before it succeeds (OWASP ASVS V2.2.1).
 */
export function evaluateAuthFailureBurst(rule: EvaluatedRule, snapshot: CounterSnapshot): Evaluation {
  const settings = parseRuleSettings("auth_failure_burst", rule.settings);
  const window = snapshot.hour;
  if (!window) return { rule, conditions: [], scope: "none" };
  const total = sliding(window, totalOf(window, rule.tenantId), (counts) => counts.authFailed);
  const top = window.topAuthFailed.get(rule.tenantId);
  const conditions =
    total >= settings.threshold
      ? [
          {
            subject: { type: "tenant" as const, id: rule.tenantId },
            summary: `${Math.round(total)} refused authentications with this tenant's keys in the last hour (alert at ${settings.threshold})`,
            detail: {
              refused: Math.round(total),
              threshold: settings.threshold,
              top_key_id: top?.keyId || null,
              top_key_refused: top ? Math.round(top.refused) : null,
            },
          },
        ]
      : [];
  // The tenant is the only subject and its total is always complete.
  return { rule, conditions, scope: "all" };
}
