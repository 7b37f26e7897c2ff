/**
 * rotation: rotations that need a person, from the lifecycle engine's state.
 * - due: an assisted credential rotation whose time has come (an admin has to enter the new value).
 * - overdue: a rotation still not done `overdue_after_hours` after it was due: a key or credential whose
 *   scheduled rotation never started, an assisted one nobody did, or a run stuck in progress.
 * - failed: the latest finished rotation run of a key, credential or tenant DEK failed (a retry in progress
 *   keeps the alert open); it resolves when a later run completes or the key is revoked / credential deleted.
 *   A successor destroyed unseen (`rotation.pickup_missed`, the overlap ended before anyone picked it up)
 *   is a failed rotation too, open for PICKUP_MISSED_OPEN_MS after the event unless someone resolves it.
 * A due rotation that becomes overdue is a new alert (and the due one resolves): the escalation notifies.
 */
import type { AlertSubjectType } from "../alert-kinds";
import type { Condition, EvaluatedRule, Evaluation } from "../evaluation";
import { parseRuleSettings } from "../rule-schemas";
import { byTenant, DAY_MS, HOUR_MS, isoDay, STATE_ROWS_CAP, type StateQuery, scopeOf } from "../state-source";

/** How long a missed pickup stays an open alert: a week for someone to notice and issue the key again. */
export const PICKUP_MISSED_OPEN_MS = 7 * DAY_MS;

type Category = "due" | "overdue" | "failed";

interface Row {
  tenant_id: string;
  category: Category;
  subject_type: "key" | "credential" | "data_key";
  subject_id: string;
  /** The schedule's due time, or the run's start. */
  at: number;
  /** 1 for an assisted credential rotation (a person enters the new value). */
  assisted: number;
  /** The run's id (failed, stuck) or the event's id (pickup missed). */
  ref: string | null;
  step: string | null;
  error: string | null;
}

// ?1 now, ?2 the overdue cut-off, ?3 the pickup-missed cut-off, ?4 one tenant or NULL for all, ?5 the cap.
const ROTATION_STATE_SQL = `
  SELECT k.tenant_id, 'overdue' AS category, 'key' AS subject_type, k.id AS subject_id, k.next_rotation_at AS at,
         0 AS assisted, NULL AS ref, NULL AS step, NULL AS error
  FROM api_keys k
  WHERE k.next_rotation_at <= ?2 AND k.enabled = 1 AND k.revoked_at IS NULL AND (?4 IS NULL OR k.tenant_id = ?4)
  UNION ALL
  SELECT r.tenant_id, CASE WHEN r.next_rotation_at <= ?2 THEN 'overdue' ELSE 'due' END, 'credential',
         r.credential_id, r.next_rotation_at, r.method = 'assisted', NULL, NULL, NULL
  FROM credential_rotations r JOIN credentials c ON c.id = r.credential_id AND c.status = 'active'
  WHERE (r.next_rotation_at <= ?2 OR (r.method = 'assisted' AND r.next_rotation_at <= ?1))
    AND (?4 IS NULL OR r.tenant_id = ?4)
  UNION ALL
  SELECT r.tenant_id, 'overdue', r.subject_type, r.subject_id, r.started_at, 0, r.id, r.step, NULL
  FROM rotation_runs r
  WHERE r.state = 'in_progress' AND r.started_at <= ?2 AND r.subject_type IN ('key', 'credential', 'data_key')
    AND (?4 IS NULL OR r.tenant_id = ?4)
  UNION ALL
  SELECT r.tenant_id, 'failed', r.subject_type, r.subject_id, r.started_at, 0, r.id, r.step, r.error
  FROM rotation_runs r
  WHERE r.state = 'failed' AND r.subject_type IN ('key', 'credential', 'data_key') AND (?4 IS NULL OR r.tenant_id = ?4)
    AND NOT EXISTS (SELECT 1 FROM rotation_runs n WHERE n.subject_id = r.subject_id
                    AND n.state IN ('completed', 'failed') AND n.started_at > r.started_at)
    AND (r.subject_type <> 'key' OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = r.subject_id AND k.revoked_at IS NULL))
    AND (r.subject_type <> 'credential'
         OR EXISTS (SELECT 1 FROM credentials c WHERE c.id = r.subject_id AND c.status = 'active'))
  UNION ALL
  -- The dedupe key's prefix range reads only these events through their unique index.
  SELECT e.tenant_id, 'failed', 'key', e.subject_id, e.at, 0, e.id, 'pickup', 'pickup_missed'
  FROM events e
  WHERE e.dedupe_key >= 'rotation.pickup_missed:' AND e.dedupe_key < 'rotation.pickup_missed;' AND e.at > ?3
    AND (?4 IS NULL OR e.tenant_id = ?4)
  LIMIT ?5`;

/** A tenant's DEK rotation is about the tenant; keys and credentials are about themselves. */
function subjectOf(row: Row): { type: AlertSubjectType; id: string } {
  return row.subject_type === "data_key"
    ? { type: "tenant", id: row.tenant_id }
    : { type: row.subject_type, id: row.subject_id };
}

const NOUN = { key: "Key", credential: "Credential", data_key: "Data encryption key" } as const;

function conditionOf(row: Row, now: number): Condition {
  const subject = subjectOf(row);
  const noun = `${NOUN[row.subject_type]} ${row.subject_type === "data_key" ? "" : `${row.subject_id} `}`;
  if (row.category === "due") {
    return {
      subject,
      occurrence: `due@${row.at}`,
      summary: `${noun}rotation is due since ${isoDay(row.at)}: enter the new value`,
      detail: { category: "due", due_at: row.at },
    };
  }
  if (row.category === "overdue") {
    const hours = Math.floor((now - row.at) / HOUR_MS);
    return {
      subject,
      occurrence: row.ref ? `overdue:${row.ref}` : `overdue@${row.at}`,
      summary: row.ref
        ? `${noun}rotation has been in progress for ${hours} hours (step ${row.step})`
        : `${noun}rotation is ${hours} hours overdue (due ${isoDay(row.at)})`,
      detail: { category: "overdue", due_at: row.at, run_id: row.ref, step: row.step },
      severity: "critical",
    };
  }
  if (row.error === "pickup_missed") {
    return {
      subject,
      occurrence: `pickup_missed:${row.ref}`,
      summary: `Rotated key ${row.subject_id} was never picked up and has been destroyed: issue a new key`,
      detail: { category: "failed", event_id: row.ref, at: row.at },
      severity: "critical",
    };
  }
  // One alert per subject while its latest rotation fails: a retry that fails again updates it.
  return {
    subject,
    occurrence: "failed",
    // step and error are fixed texts of the lifecycle engine, never a provider's answer or a value.
    summary: `${noun}rotation failed at step ${row.step}`,
    detail: { category: "failed", run_id: row.ref, step: row.step, error: row.error },
    severity: "critical",
  };
}

export async function rotationEvaluations(
  db: D1Database,
  rules: readonly EvaluatedRule[],
  now: number,
  query: StateQuery = {},
): Promise<Evaluation[]> {
  const mine = rules.filter((rule) => rule.kind === "rotation");
  if (mine.length === 0) return [];
  const settingsOf = new Map(mine.map((rule) => [rule, parseRuleSettings("rotation", rule.settings)]));
  // Read with the shortest overdue threshold in play; each rule applies its own below.
  const shortest = Math.min(...[...settingsOf.values()].map((s) => s.overdue_after_hours));
  const { results } = await db
    .prepare(ROTATION_STATE_SQL)
    .bind(now, now - shortest * HOUR_MS, now - PICKUP_MISSED_OPEN_MS, query.tenantId ?? null, STATE_ROWS_CAP)
    .all<Row>();
  const complete = results.length < STATE_ROWS_CAP;
  const grouped = byTenant(results);

  return mine.map((rule) => {
    const settings = settingsOf.get(rule) ?? parseRuleSettings("rotation", {});
    const overdueBefore = now - settings.overdue_after_hours * HOUR_MS;
    const rows = grouped.get(rule.tenantId) ?? [];
    const conditions: Condition[] = [];
    for (const row of rows) {
      // Overdue by the shortest threshold but not by this rule's: still only due (assisted) or not yet news.
      let category: Category = row.category;
      if (category === "overdue" && row.at > overdueBefore) {
        if (!row.assisted) continue;
        category = "due";
      }
      if (category === "due" && row.at <= overdueBefore) category = "overdue";
      if (!settings.on.includes(category)) continue;
      conditions.push(conditionOf({ ...row, category }, now));
    }
    return {
      rule,
      conditions,
      scope: scopeOf(
        complete,
        rows.map((row) => subjectOf(row).id),
      ),
    };
  });
}
