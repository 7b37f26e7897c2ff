/**
 * channel_failing: an alert channel whose deliveries gave up `after_failures` times in a row (the delivery
 * consumer counts them; a delivered one resets the count). The alert goes to the tenant's other channels (the
 * lifecycle never notifies a channel about itself) and resolves once a delivery gets through again.
 */
import type { EvaluatedRule, Evaluation } from "../evaluation";
import { parseRuleSettings } from "../rule-schemas";
import { byTenant, STATE_ROWS_CAP, type StateQuery, scopeOf, tenantClause } from "../state-source";

interface Channel {
  id: string;
  tenant_id: string;
  kind: string;
  name: string;
  consecutive_failures: number;
  last_error: string | null;
  last_delivery_at: number | null;
}

export async function channelFailingEvaluations(
  db: D1Database,
  rules: readonly EvaluatedRule[],
  _now: number,
  query: StateQuery = {},
): Promise<Evaluation[]> {
  const mine = rules.filter((rule) => rule.kind === "channel_failing");
  if (mine.length === 0) return [];
  const lowest = Math.min(
    ...mine.map((rule) => parseRuleSettings("channel_failing", rule.settings).after_failures),
  );
  const tenant = tenantClause(query);
  const { results } = await db
    .prepare(
      `SELECT id, tenant_id, kind, name, consecutive_failures, last_error, last_delivery_at FROM alert_channels
       WHERE consecutive_failures >= ?${tenant.sql} ORDER BY id LIMIT ?`,
    )
    .bind(lowest, ...tenant.params, STATE_ROWS_CAP)
    .all<Channel>();
  const complete = results.length < STATE_ROWS_CAP;
  const grouped = byTenant(results);
  return mine.map((rule) => {
    const { after_failures } = parseRuleSettings("channel_failing", rule.settings);
    const rows = grouped.get(rule.tenantId) ?? [];
    return {
      rule,
      conditions: rows
        .filter((row) => row.consecutive_failures >= after_failures)
        .map((row) => ({
          subject: { type: "channel" as const, id: row.id },
          summary: `Alert channel "${row.name}" (${row.kind}) failed ${row.consecutive_failures} deliveries in a row`,
          // last_error is a stable reason code (e.g. http_500, timeout), never an answer body or a secret.
          detail: {
            kind: row.kind,
            consecutive_failures: row.consecutive_failures,
            last_error: row.last_error,
            last_delivery_at: row.last_delivery_at,
          },
        })),
      scope: scopeOf(
        complete,
        rows.map((row) => row.id),
      ),
    };
  });
}
