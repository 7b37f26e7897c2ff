/**
 * expiry_warning: keys, and credentials whose provider reported an expiry (harvested by live tests), that reach
 * one of the rule's reminder days (default 30, 7 and 1) before they expire. Each threshold is its own alert (the
 * 7-day reminder notifies even though the 30-day one was acknowledged); only the tightest threshold reached is
 * open, so a key 5 days from expiry shows one alert, not two. A new expiry date is a new occurrence, and the
 * alert resolves when the expiry moves out of reach (renewed), passes, or the key is revoked.
 */
import type { Condition, EvaluatedRule, Evaluation } from "../evaluation";
import { parseRuleSettings } from "../rule-schemas";
import {
  byTenant,
  DAY_MS,
  isoDay,
  STATE_ROWS_CAP,
  type StateQuery,
  scopeOf,
  tenantClause,
} from "../state-source";

interface Expiring {
  id: string;
  tenant_id: string;
  service_id: string | null;
  name: string;
  expires_at: number;
}

/** The reminder at or below this many days is critical: there is no time left for a ticket queue. */
const CRITICAL_DAYS = 1;

async function expiring(
  db: D1Database,
  subject: "key" | "credential",
  now: number,
  horizon: number,
  query: StateQuery,
) {
  const tenant = tenantClause(query);
  // Rotated keys are excluded: their expiry is the end of their overlap, which the rotation already announced.
  const sql =
    subject === "key"
      ? `SELECT id, tenant_id, service_id, name, expires_at FROM api_keys
         WHERE expires_at > ? AND expires_at <= ? AND revoked_at IS NULL AND rotated_to_id IS NULL${tenant.sql}
         ORDER BY expires_at, id LIMIT ?`
      : `SELECT id, tenant_id, service_id, name, provider_expires_at AS expires_at FROM credentials
         WHERE provider_expires_at > ? AND provider_expires_at <= ? AND status = 'active'${tenant.sql}
         ORDER BY provider_expires_at, id LIMIT ?`;
  const { results } = await db
    .prepare(sql)
    .bind(now, horizon, ...tenant.params, STATE_ROWS_CAP)
    .all<Expiring>();
  return { rows: results, complete: results.length < STATE_ROWS_CAP };
}

export async function expiryEvaluations(
  db: D1Database,
  rules: readonly EvaluatedRule[],
  now: number,
  query: StateQuery = {},
): Promise<Evaluation[]> {
  const mine = rules.filter((rule) => rule.kind === "expiry_warning");
  if (mine.length === 0) return [];
  const settingsOf = new Map(mine.map((rule) => [rule, parseRuleSettings("expiry_warning", rule.settings)]));
  const horizon = now + Math.max(...[...settingsOf.values()].flatMap((s) => s.days_before)) * DAY_MS;
  const [keys, creds] = await Promise.all([
    expiring(db, "key", now, horizon, query),
    expiring(db, "credential", now, horizon, query),
  ]);
  const keysOf = byTenant(keys.rows);
  const credsOf = byTenant(creds.rows);

  return mine.map((rule) => {
    const settings = settingsOf.get(rule) ?? parseRuleSettings("expiry_warning", {});
    const days = [...settings.days_before].sort((a, b) => a - b);
    const conditions: Condition[] = [];
    const read: string[] = [];
    const sources = [
      { type: "key" as const, label: "Key", rows: keysOf.get(rule.tenantId) ?? [] },
      { type: "credential" as const, label: "Credential", rows: credsOf.get(rule.tenantId) ?? [] },
    ];
    for (const source of sources) {
      if (!settings.subjects.includes(source.type)) continue;
      for (const row of source.rows) {
        read.push(row.id);
        if (rule.serviceId && row.service_id !== rule.serviceId) continue;
        const left = row.expires_at - now;
        const threshold = days.find((d) => left <= d * DAY_MS);
        if (threshold === undefined) continue;
        const daysLeft = Math.ceil(left / DAY_MS);
        conditions.push({
          subject: { type: source.type, id: row.id },
          occurrence: `${threshold}d@${row.expires_at}`,
          summary: `${source.label} "${row.name}" expires in ${daysLeft} day${daysLeft === 1 ? "" : "s"} (${isoDay(row.expires_at)})`,
          detail: { expires_at: row.expires_at, days_before: threshold, service_id: row.service_id },
          ...(threshold <= CRITICAL_DAYS ? { severity: "critical" as const } : {}),
        });
      }
    }
    return { rule, conditions, scope: scopeOf(keys.complete && creds.complete, read) };
  });
}
