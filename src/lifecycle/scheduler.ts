import type { Bindings } from "../env";
import { EVENT_SEVERITY_OF, type EventKind } from "./event-kinds";
import { SQL_EVENT_ID_TEXT } from "./events";
import { OVERLAP_ENDED, type OverlapEndedPayload, type RotationParams } from "./rotation-params";
import type { SubjectType } from "./rotation-runs";

/** Workflows' `createBatch` takes at most 100 instances; one chunk is one SELECT, one claim batch, one create. */
export const SCHEDULER_CHUNK = 100;
/**
 * Chunks per table per tick. A tick then makes at most ~2 D1 calls per chunk, far inside the 1,000 subrequests
 * of a paid Worker invocation, and what is left stays due for the next tick.
 */
export const SCHEDULER_MAX_CHUNKS = 50;
/** A run claimed this long ago that still has no step is started again (a crash between claim and create). */
export const QUEUED_RESTART_MS = 15 * 60_000;
/** Scheduled rotations are announced this far ahead, as `rotation.upcoming` events. */
export const ROTATION_REMINDER_MS = 7 * 86_400_000;
/**
 * How far behind the reminder horizon a tick still looks: a rotation enters the horizon between two ticks,
 * and this margin covers a cron that was down for up to a day. Dedupe keys keep each reminder single.
 */
const REMINDER_LOOKBACK_MS = 86_400_000;
/** A successor waiting for pickup is reminded about this long before its overlap ends. */
export const PICKUP_REMINDER_MS = 86_400_000;

type Db = D1Database;

interface Source {
  subjectType: SubjectType;
  table: "api_keys" | "credential_rotations";
  idColumn: "id" | "credential_id";
  /** Extra condition on the table's rows (assisted credentials are never started by the cron). */
  filter: string;
  workflow: (env: Bindings) => Workflow<RotationParams>;
}

const SOURCES: readonly Source[] = [
  {
    subjectType: "key",
    table: "api_keys",
    idColumn: "id",
    // A disabled key stays due and rotates once it is enabled again.
    filter: "AND enabled = 1 AND revoked_at IS NULL",
    workflow: (env) => env.KEY_ROTATION,
  },
  {
    subjectType: "credential",
    table: "credential_rotations",
    idColumn: "credential_id",
    filter: "AND method <> 'assisted'",
    workflow: (env) => env.CREDENTIAL_ROTATION,
  },
];

export interface TickReport {
  /** Rotation runs claimed and handed to a Workflow this tick. */
  started: number;
  /** D1 calls (a batch counts once) the scheduler made. */
  d1Calls: number;
}

/**
 * Claims every due item of `source`, in chunks: the claim inserts the run (id = item + the time it was due)
 * and clears `next_rotation_at` in one batch, then one `createBatch` starts their Workflows. A second tick
 * finds nothing to claim; a crash between claim and create is repaired by `restartQueuedRuns`.
 */
async function claimDue(env: Bindings, source: Source, now: number, report: TickReport): Promise<void> {
  const db: Db = env.DB;
  const { table, idColumn, filter, subjectType } = source;
  for (let chunk = 0; chunk < SCHEDULER_MAX_CHUNKS; chunk++) {
    const due = await db
      .prepare(
        `SELECT ${idColumn} AS id, next_rotation_at AS at FROM ${table}
         WHERE next_rotation_at <= ?1 ${filter} ORDER BY next_rotation_at, ${idColumn} LIMIT ?2`,
      )
      .bind(now, SCHEDULER_CHUNK)
      .all<{ id: string; at: number }>();
    report.d1Calls++;
    const last = due.results.at(-1);
    if (!last) return;
    // Row-value bounds instead of an id list: D1 allows 100 bound parameters per statement.
    const inChunk = `next_rotation_at <= ?1 ${filter} AND (next_rotation_at, ${idColumn}) <= (?2, ?3)`;
    const [claimed] = await db.batch<{ id: string; tenant_id: string; subject_id: string }>([
      db
        .prepare(
          `INSERT OR IGNORE INTO rotation_runs
             (id, tenant_id, subject_type, subject_id, trigger, state, step, started_at, updated_at)
           SELECT ${idColumn} || '-' || next_rotation_at, tenant_id, ?4, ${idColumn}, 'schedule', 'in_progress',
                  'queued', ?1, ?1
           FROM ${table} WHERE ${inChunk}
           RETURNING id, tenant_id, subject_id`,
        )
        .bind(now, last.at, last.id, subjectType),
      db.prepare(`UPDATE ${table} SET next_rotation_at = NULL WHERE ${inChunk}`).bind(now, last.at, last.id),
    ]);
    report.d1Calls++;
    const runs = claimed?.results ?? [];
    await startRuns(env, source, runs, now);
    report.started += runs.length;
    if (due.results.length < SCHEDULER_CHUNK) return;
  }
}

async function startRuns(
  env: Bindings,
  source: Source,
  runs: readonly { id: string; tenant_id: string; subject_id: string }[],
  now: number,
): Promise<void> {
  if (runs.length === 0) return;
  // createBatch skips ids that already exist, so starting a run twice starts it once.
  await source.workflow(env).createBatch(
    runs.map((run) => ({
      id: run.id,
      params: {
        runId: run.id,
        tenantId: run.tenant_id,
        subjectType: source.subjectType,
        subjectId: run.subject_id,
        now,
      },
    })),
  );
}

/** Runs claimed long ago and never begun (the tick died between claim and create) are created again. */
async function restartQueuedRuns(env: Bindings, now: number, report: TickReport): Promise<void> {
  for (const source of SOURCES) {
    const stale = await env.DB.prepare(
      `SELECT id, tenant_id, subject_id FROM rotation_runs
       WHERE state = 'in_progress' AND step = 'queued' AND subject_type = ?1 AND updated_at < ?2
       ORDER BY updated_at LIMIT ?3`,
    )
      .bind(source.subjectType, now - QUEUED_RESTART_MS, SCHEDULER_CHUNK)
      .all<{ id: string; tenant_id: string; subject_id: string }>();
    report.d1Calls++;
    await startRuns(env, source, stale.results, now);
  }
}

/**
 * Tells every run whose overlap has ended by this tick's clock to retire the old key or version. A deployed
 * run's own timer ends the overlap anyway; this is what makes a fast-forwarded cron end it too.
 */
async function endDueOverlaps(env: Bindings, now: number, report: TickReport): Promise<void> {
  const due = await env.DB.prepare(
    `UPDATE rotation_runs SET step = 'overlap_ended', updated_at = ?1
     WHERE id IN (SELECT id FROM rotation_runs
                  WHERE state = 'in_progress' AND step = 'overlap' AND overlap_ends_at <= ?1 LIMIT ?2)
     RETURNING id, tenant_id, subject_id, subject_type`,
  )
    .bind(now, SCHEDULER_CHUNK)
    .all<{ id: string; tenant_id: string; subject_id: string; subject_type: SubjectType }>();
  report.d1Calls++;
  const payload: OverlapEndedPayload = { now };
  await Promise.all(
    due.results.map(async (run) => {
      const source = SOURCES.find((candidate) => candidate.subjectType === run.subject_type);
      if (!source) return;
      const workflow = source.workflow(env);
      // A run whose instance was never created (the request that started it by hand died after its commit)
      // gets one now; its steps up to the overlap find their work done.
      const send = async () => (await workflow.get(run.id)).sendEvent({ type: OVERLAP_ENDED, payload });
      await send().catch(async () => {
        await startRuns(env, source, [run], now);
        await send();
      });
    }),
  );
}

/**
 * Reminders as events, each table in one INSERT ... SELECT: scheduled rotations entering the reminder
 * horizon, assisted rotations that are due (an admin has to act), successors whose pickup window closes soon.
 */
async function recordReminders(env: Bindings, now: number, report: TickReport): Promise<void> {
  const db: Db = env.DB;
  const horizon = now + ROTATION_REMINDER_MS;
  const insert = (kind: EventKind) =>
    `INSERT OR IGNORE INTO events (id, tenant_id, kind, severity, subject_type, subject_id, dedupe_key, detail, at)
     SELECT ${SQL_EVENT_ID_TEXT}, tenant_id, '${kind}', '${EVENT_SEVERITY_OF[kind]}',`;
  await db.batch([
    db
      .prepare(
        `${insert("rotation.upcoming")} 'key', id, 'rotation.upcoming:' || id || ':' || next_rotation_at,
           json_object('next_rotation_at', next_rotation_at), ?1
         FROM api_keys WHERE next_rotation_at BETWEEN ?2 AND ?3`,
      )
      .bind(now, horizon - REMINDER_LOOKBACK_MS, horizon),
    db
      .prepare(
        `${insert("rotation.upcoming")} 'credential', credential_id,
           'rotation.upcoming:' || credential_id || ':' || next_rotation_at,
           json_object('next_rotation_at', next_rotation_at, 'method', method), ?1
         FROM credential_rotations WHERE next_rotation_at BETWEEN ?2 AND ?3`,
      )
      .bind(now, horizon - REMINDER_LOOKBACK_MS, horizon),
    db
      .prepare(
        `${insert("rotation.action_required")} 'credential', credential_id,
           'rotation.action_required:' || credential_id || ':' || next_rotation_at,
           json_object('next_rotation_at', next_rotation_at), ?1
         FROM credential_rotations WHERE method = 'assisted' AND next_rotation_at <= ?1`,
      )
      .bind(now),
    db
      .prepare(
        `${insert("rotation.pickup_reminder")} 'key', key_id, 'rotation.pickup_reminder:' || key_id,
           json_object('expires_at', expires_at, 'run_id', run_id), ?1
         FROM key_handoffs WHERE method = 'pickup' AND expires_at <= ?2`,
      )
      .bind(now, now + PICKUP_REMINDER_MS),
  ]);
  report.d1Calls++;
}

/**
 * One cron tick of the rotation engine, with `now` taken from the scheduled event: a cron fired locally
 * with a future time fast-forwards every rotation, overlap and reminder (DESIGN.md, fixed points).
 */
export async function runRotationTick(env: Bindings, now: number): Promise<TickReport> {
  const report: TickReport = { started: 0, d1Calls: 0 };
  await restartQueuedRuns(env, now, report);
  for (const source of SOURCES) await claimDue(env, source, now, report);
  await endDueOverlaps(env, now, report);
  await recordReminders(env, now, report);
  return report;
}
