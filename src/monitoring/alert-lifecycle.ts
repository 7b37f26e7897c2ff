/**
 * The alert lifecycle: what the engine does with what the rules found.
 *
 *   condition true, no open alert, not cooling down  -> fire (state firing) + "fired" outbox rows
 *   condition true, open alert (firing/acknowledged) -> update last_seen_at (and summary/detail/severity when
 *                                                       they changed); no notification: de-duplicated
 *   open alert in scope, condition gone, or listed   -> resolve + "resolved" outbox rows
 *     in `resolves`
 *
 * De-duplication is (tenant, fingerprint) among open alerts, enforced by the unique partial index
 * `alerts_open_idx`; a fingerprint resolved less than the rule's cool-down ago does not fire again (so a
 * flapping condition pages once, not on every tick). Every change and its outbox rows go into one D1 batch
 * (the transactional outbox), and everything is idempotent: a duplicate tick, or two ticks at once, neither
 * fire twice nor notify twice (the insert loses on the unique index, and its outbox rows are removed in the
 * same batch; outbox rows are unique per alert, channel and transition).
 *
 * The engine's changes are not audit rows: the alerts table is their record (fired_at, last_seen_at,
 * resolved_at). People's changes (acknowledge, resolve) are audited by the routes.
 */
import { and, eq, ne, sql } from "drizzle-orm";
import { newId } from "../crypto/random";
import { type Database, database } from "../db/client";
import { inJsonList } from "../db/in-list";
import { alertDeliveries, alerts } from "../db/schema";
import type { Bindings } from "../env";
import type { AlertSeverity, AlertSubjectType } from "./alert-kinds";
import { type Condition, type EvaluatedRule, type Evaluation, fingerprintOf } from "./evaluation";
import { outboxStatements } from "./outbox";
import { loadRules } from "./rule-loader";

export interface ApplyReport {
  fired: number;
  /** Conditions still true on an open alert (de-duplicated). */
  updated: number;
  resolved: number;
  /** Conditions true again within their rule's cool-down: not fired. */
  suppressed: number;
  /** D1 calls made (reads and batches). */
  d1Calls: number;
}

export interface ApplyOptions {
  /**
   * Statements for the last batch, with the last changes (e.g. stamping `events.alerted_at` on the events
   * this evaluation took into account): they commit only if the evaluation's changes did.
   */
  alongside?: (db: Database) => Statement[];
}

export type AlertRow = typeof alerts.$inferSelect;
type Statement = Parameters<Database["batch"]>[0][number];
type OpenAlert = Pick<
  AlertRow,
  | "id"
  | "tenantId"
  | "ruleId"
  | "fingerprint"
  | "subjectType"
  | "subjectId"
  | "summary"
  | "detail"
  | "severity"
>;

/** Tenants per read of open alerts (one JSON parameter: a tick over every tenant is a read or two). */
const TENANTS_PER_READ = 1_000;
/** Candidate fingerprints per cool-down read (one JSON parameter). */
const FINGERPRINTS_PER_READ = 500;
/** Statements per D1 batch: bounded so one batch stays well inside a D1 call's limits. */
const STATEMENTS_PER_BATCH = 80;
/** Ids per bulk `last_seen_at` update (one bound parameter each). */
const IDS_PER_UPDATE = 90;

/**
 * The channels an alert notifies: the rule's, except the alert's own subject when that is a channel (a
 * failing channel's alert goes to the others; telling it about itself would fail too).
 */
export function notifiedChannels(
  rule: Pick<EvaluatedRule, "channelIds">,
  subject: { type: AlertSubjectType; id: string },
): string[] {
  return subject.type === "channel"
    ? rule.channelIds.filter((id) => id !== subject.id)
    : [...rule.channelIds];
}

/** The UPDATE that resolves one open alert and its "resolved" notifications, for the caller's batch. */
export function resolveStatements(
  db: Database,
  alert: { id: string; tenantId: string },
  channelIds: readonly string[],
  now: number,
) {
  return [
    db
      .update(alerts)
      .set({ state: "resolved", resolvedAt: now })
      .where(and(eq(alerts.id, alert.id), eq(alerts.tenantId, alert.tenantId), ne(alerts.state, "resolved"))),
    ...outboxStatements(db, {
      tenantId: alert.tenantId,
      alertId: alert.id,
      channelIds,
      transition: "resolved",
      now,
    }),
  ];
}

const ruleKey = (tenantId: string, ruleId: string) => `${tenantId}|${ruleId}`;
const alertKey = (tenantId: string, fingerprint: string) => `${tenantId}|${fingerprint}`;

async function openAlertsOf(db: Database, tenantIds: string[]): Promise<OpenAlert[]> {
  const rows: OpenAlert[] = [];
  for (let i = 0; i < tenantIds.length; i += TENANTS_PER_READ) {
    const chunk = tenantIds.slice(i, i + TENANTS_PER_READ);
    rows.push(
      ...(await db
        .select({
          id: alerts.id,
          tenantId: alerts.tenantId,
          ruleId: alerts.ruleId,
          fingerprint: alerts.fingerprint,
          subjectType: alerts.subjectType,
          subjectId: alerts.subjectId,
          summary: alerts.summary,
          detail: alerts.detail,
          severity: alerts.severity,
        })
        .from(alerts)
        .where(and(inJsonList(alerts.tenantId, chunk), ne(alerts.state, "resolved")))
        .all()),
    );
  }
  return rows;
}

/** The last resolution time of each candidate (tenant, fingerprint) resolved after `since`. */
async function lastResolutions(
  db: Database,
  candidates: [string, string][],
  since: number,
): Promise<Map<string, number>> {
  const last = new Map<string, number>();
  for (let i = 0; i < candidates.length; i += FINGERPRINTS_PER_READ) {
    const chunk = JSON.stringify(candidates.slice(i, i + FINGERPRINTS_PER_READ));
    const rows = await db.all<{ tenant_id: string; fingerprint: string; resolved_at: number }>(sql`
      SELECT a.tenant_id, a.fingerprint, max(a.resolved_at) AS resolved_at
      FROM json_each(${chunk}) c
      JOIN alerts a ON a.tenant_id = json_extract(c.value, '$[0]') AND a.fingerprint = json_extract(c.value, '$[1]')
      WHERE a.state = 'resolved' AND a.resolved_at > ${since}
      GROUP BY a.tenant_id, a.fingerprint`);
    for (const row of rows) last.set(alertKey(row.tenant_id, row.fingerprint), row.resolved_at);
  }
  return last;
}

/** Collects statements and runs them in bounded batches; a change's statements never straddle two batches. */
class BatchWriter {
  private pending: Statement[] = [];
  private firedIds: string[] = [];
  private seenIds: string[] = [];
  batches = 0;

  constructor(
    private readonly db: Database,
    private readonly now: number,
  ) {}

  async change(statements: Statement[], firedId?: string): Promise<void> {
    if (this.pending.length + statements.length > STATEMENTS_PER_BATCH) await this.flush();
    this.pending.push(...statements);
    if (firedId) this.firedIds.push(firedId);
  }

  async seen(id: string): Promise<void> {
    this.seenIds.push(id);
    if (this.seenIds.length >= IDS_PER_UPDATE) await this.flush();
  }

  async flush(): Promise<void> {
    const statements = [...this.pending];
    if (this.seenIds.length > 0) {
      statements.push(
        this.db.update(alerts).set({ lastSeenAt: this.now }).where(inJsonList(alerts.id, this.seenIds)),
      );
    }
    if (this.firedIds.length > 0) {
      // An insert that lost to an open alert of the same fingerprint (a concurrent tick) inserted nothing:
      // its outbox rows would name an alert that does not exist.
      statements.push(
        this.db
          .delete(alertDeliveries)
          .where(
            and(
              inJsonList(alertDeliveries.alertId, this.firedIds),
              sql`${alertDeliveries.alertId} NOT IN (SELECT ${alerts.id} FROM ${alerts} WHERE ${inJsonList(alerts.id, this.firedIds)})`,
            ),
          ),
      );
    }
    this.pending = [];
    this.firedIds = [];
    this.seenIds = [];
    const [first, ...rest] = statements;
    if (!first) return;
    await this.db.batch([first, ...rest]);
    this.batches++;
  }
}

/**
 * Applies what the rules found at `now`: fires, de-duplicates, cools down and resolves (see the module
 * comment). Evaluations of any tenants and rules, in any number; several evaluations of one rule (chunks
 * scoped to their subjects) are applied in order.
 */
export async function applyEvaluations(
  env: Pick<Bindings, "DB">,
  evaluations: readonly Evaluation[],
  now: number,
  options: ApplyOptions = {},
): Promise<ApplyReport> {
  const report: ApplyReport = { fired: 0, updated: 0, resolved: 0, suppressed: 0, d1Calls: 0 };
  const db = database(env.DB);
  const alongside = options.alongside?.(db) ?? [];
  if (evaluations.length === 0) {
    const [first, ...rest] = alongside;
    if (first) {
      await db.batch([first, ...rest]);
      report.d1Calls++;
    }
    return report;
  }

  const tenantIds = [...new Set(evaluations.map((e) => e.rule.tenantId))];
  const evaluatedRules = new Set(evaluations.map((e) => ruleKey(e.rule.tenantId, e.rule.ruleId)));
  const open = new Map<string, OpenAlert>();
  for (const row of await openAlertsOf(db, tenantIds)) {
    if (evaluatedRules.has(ruleKey(row.tenantId, row.ruleId)))
      open.set(alertKey(row.tenantId, row.fingerprint), row);
  }
  report.d1Calls += Math.ceil(tenantIds.length / TENANTS_PER_READ);

  // Cool-down applies only to conditions with no open alert, resolved within the longest cool-down in play.
  const candidates = new Map<string, [string, string]>();
  let longestCooldown = 0;
  for (const evaluation of evaluations) {
    if (evaluation.rule.cooldownSeconds <= 0) continue;
    longestCooldown = Math.max(longestCooldown, evaluation.rule.cooldownSeconds);
    for (const condition of evaluation.conditions) {
      const fingerprint = fingerprintOf(evaluation.rule.ruleId, condition);
      const key = alertKey(evaluation.rule.tenantId, fingerprint);
      if (!open.has(key)) candidates.set(key, [evaluation.rule.tenantId, fingerprint]);
    }
  }
  const resolvedAt =
    candidates.size > 0
      ? await lastResolutions(db, [...candidates.values()], now - longestCooldown * 1000)
      : new Map();
  report.d1Calls += Math.ceil(candidates.size / FINGERPRINTS_PER_READ);

  const writer = new BatchWriter(db, now);
  /** Alerts already updated this run: a condition reported twice is counted and written once. */
  const touched = new Set<string>();

  for (const evaluation of evaluations) {
    const { rule } = evaluation;
    const found = new Set<string>();
    for (const condition of evaluation.conditions) {
      const fingerprint = fingerprintOf(rule.ruleId, condition);
      const key = alertKey(rule.tenantId, fingerprint);
      if (found.has(key)) continue;
      found.add(key);
      const existing = open.get(key);
      if (existing) {
        if (touched.has(existing.id)) continue;
        touched.add(existing.id);
        await writer.change(updateStatements(db, existing, rule, condition));
        await writer.seen(existing.id);
        report.updated++;
        continue;
      }
      const lastResolved = resolvedAt.get(key);
      if (lastResolved !== undefined && now - lastResolved < rule.cooldownSeconds * 1000) {
        report.suppressed++;
        continue;
      }
      const fired = firedAlert(rule, condition, fingerprint, now);
      await writer.change(
        [
          db.insert(alerts).values(fired).onConflictDoNothing(),
          ...outboxStatements(db, {
            tenantId: rule.tenantId,
            alertId: fired.id,
            channelIds: notifiedChannels(rule, condition.subject),
            transition: "fired",
            now,
          }),
        ],
        fired.id,
      );
      open.set(key, fired);
      touched.add(fired.id);
      report.fired++;
    }

    const toResolve = new Set(
      (evaluation.resolves ?? [])
        .map((fingerprint) => alertKey(rule.tenantId, fingerprint))
        .filter((k) => !found.has(k)),
    );
    if (evaluation.scope !== "none") {
      const subjects = evaluation.scope === "all" ? null : new Set(evaluation.scope.subjects);
      for (const [key, alert] of open) {
        if (alert.tenantId !== rule.tenantId || alert.ruleId !== rule.ruleId || found.has(key)) continue;
        if (subjects && !subjects.has(alert.subjectId)) continue;
        toResolve.add(key);
      }
    }
    for (const key of toResolve) {
      const alert = open.get(key);
      if (!alert || alert.ruleId !== rule.ruleId) continue;
      const subject = { type: alert.subjectType, id: alert.subjectId };
      await writer.change(resolveStatements(db, alert, notifiedChannels(rule, subject), now));
      open.delete(key);
      report.resolved++;
    }
  }
  await writer.change(alongside);
  await writer.flush();
  report.d1Calls += writer.batches;
  return report;
}

function firedAlert(rule: EvaluatedRule, condition: Condition, fingerprint: string, now: number): AlertRow {
  return {
    id: newId("alr"),
    tenantId: rule.tenantId,
    ruleId: rule.ruleId,
    kind: rule.kind,
    severity: condition.severity ?? rule.severity,
    state: "firing",
    subjectType: condition.subject.type,
    subjectId: condition.subject.id,
    fingerprint,
    summary: condition.summary,
    detail: condition.detail,
    firedAt: now,
    lastSeenAt: now,
    acknowledgedAt: null,
    acknowledgedBy: null,
    resolvedAt: null,
  };
}

/** An open alert whose condition is still true: its text and severity follow the condition, nothing is sent. */
function updateStatements(
  db: Database,
  alert: OpenAlert,
  rule: EvaluatedRule,
  condition: Condition,
): Statement[] {
  const severity: AlertSeverity = condition.severity ?? rule.severity;
  if (
    alert.summary === condition.summary &&
    alert.severity === severity &&
    JSON.stringify(alert.detail) === JSON.stringify(condition.detail)
  ) {
    return [];
  }
  return [
    db
      .update(alerts)
      .set({ summary: condition.summary, detail: condition.detail, severity })
      .where(and(eq(alerts.id, alert.id), ne(alerts.state, "resolved"))),
  ];
}

/**
 * Open alerts whose rule no longer applies (deleted or disabled, or a default replaced by a stored rule of its
 * kind) resolve without notification: the rule that would name their channels is gone. Bounded per call.
 */
export async function resolveOrphanedAlerts(
  env: Pick<Bindings, "DB">,
  now: number,
  limit = 100,
): Promise<number> {
  const result = await env.DB.prepare(
    `UPDATE alerts SET state = 'resolved', resolved_at = ?1
     WHERE id IN (
       SELECT a.id FROM alerts a
       WHERE a.state != 'resolved' AND (
         (a.rule_id LIKE 'default:%'
           AND EXISTS (SELECT 1 FROM alert_rules r WHERE r.tenant_id = a.tenant_id AND r.kind = a.kind))
         OR (a.rule_id NOT LIKE 'default:%'
           AND NOT EXISTS (SELECT 1 FROM alert_rules r WHERE r.id = a.rule_id AND r.tenant_id = a.tenant_id AND r.enabled = 1))
       )
       LIMIT ?2)`,
  )
    .bind(now, limit)
    .run();
  return result.meta.changes ?? 0;
}

/** One alert of one tenant, or undefined (another tenant's alert is not found, never forbidden). */
export async function findAlert(db: Database, tenantId: string, id: string): Promise<AlertRow | undefined> {
  return db
    .select()
    .from(alerts)
    .where(and(eq(alerts.tenantId, tenantId), eq(alerts.id, id)))
    .get();
}

/**
 * A person takes a firing alert: it stays open (so the condition does not fire again while it holds) and
 * resolves like any other when the condition clears. No notification: the person who acknowledged knows.
 */
export function acknowledgeStatements(db: Database, alert: AlertRow, actorId: string, now: number) {
  return [
    db
      .update(alerts)
      .set({ state: "acknowledged", acknowledgedAt: now, acknowledgedBy: actorId })
      .where(and(eq(alerts.id, alert.id), eq(alerts.tenantId, alert.tenantId), eq(alerts.state, "firing"))),
  ];
}

/**
 * A person resolves an open alert: "resolved" notifications go to its rule's channels (when the rule still
 * exists). If the condition still holds, the rule fires it again after its cool-down.
 */
export async function resolveByPersonStatements(db: Database, alert: AlertRow, now: number) {
  const rules = await loadRules(db, [alert.kind], { tenantId: alert.tenantId });
  const rule = rules.find((candidate) => candidate.ruleId === alert.ruleId);
  const channelIds = rule ? notifiedChannels(rule, { type: alert.subjectType, id: alert.subjectId }) : [];
  return resolveStatements(db, alert, channelIds, now);
}
