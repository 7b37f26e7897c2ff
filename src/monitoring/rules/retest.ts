/**
 * retest_failing: a stored credential whose latest live test (scheduled re-test or manual) fails. One alert per
 * credential while it fails; it resolves when a test passes again, or the credential is deleted.
 */
import type { EvaluatedRule, Evaluation } from "../evaluation";
import { byTenant, STATE_ROWS_CAP, type StateQuery, scopeOf, tenantClause } from "../state-source";

interface Failing {
  id: string;
  tenant_id: string;
  service_id: string;
  name: string;
  last_test_reason: string | null;
  last_tested_at: number | null;
}

export async function retestEvaluations(
  db: D1Database,
  rules: readonly EvaluatedRule[],
  _now: number,
  query: StateQuery = {},
): Promise<Evaluation[]> {
  const mine = rules.filter((rule) => rule.kind === "retest_failing");
  if (mine.length === 0) return [];
  const tenant = tenantClause(query);
  const { results } = await db
    .prepare(
      `SELECT id, tenant_id, service_id, name, last_test_reason, last_tested_at FROM credentials
       WHERE last_test_status = 'invalid' AND status = 'active'${tenant.sql} ORDER BY id LIMIT ?`,
    )
    .bind(...tenant.params, STATE_ROWS_CAP)
    .all<Failing>();
  const complete = results.length < STATE_ROWS_CAP;
  const grouped = byTenant(results);
  return mine.map((rule) => {
    const rows = grouped.get(rule.tenantId) ?? [];
    return {
      rule,
      conditions: rows
        .filter((row) => !rule.serviceId || row.service_id === rule.serviceId)
        .map((row) => ({
          subject: { type: "credential" as const, id: row.id },
          summary: `Credential "${row.name}" (${row.service_id}) fails its live test`,
          // The reason is a fixed code from the live test, never a provider's answer.
          detail: { service_id: row.service_id, reason: row.last_test_reason, tested_at: row.last_tested_at },
        })),
      scope: scopeOf(
        complete,
        rows.map((row) => row.id),
      ),
    };
  });
}
