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
/**
 * DEK rotations are background maintenance with no deadline: they start at a fifth of the platform's rate, so
 * a backlog (every tenant's DEK due at once) spreads its D1 writes instead of crowding foreground traffic.
 * That is still 1,000 a tick, far above what 90-day schedules bring due.
 */
export const DEK_ROTATIONS_PER_SECOND = 20;
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
  table: "api_keys" | "credential_rotations" | "data_keys";
  idColumn: "id" | "credential_id" | "tenant_id";
  /** Extra condition on the table's rows (assisted credentials are never started by the cron). */
  filter: string;
  workflow: (env: Bindings) => Workflow<RotationParams>;
  /** Items per chunk, and so Workflow instances started per second, when below the tick's chunk. */
  chunk?: number;
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
    // A soft-deleted credential stays due, and rotates again if it is restored before the purge.
    filter:
      "AND method <> 'assisted' AND EXISTS (SELECT 1 FROM credentials c WHERE c.id = credential_id AND c.status = 'active')",
    workflow: (env) => env.CREDENTIAL_ROTATION,
  },
  {
    // A tenant's DEK: due on its schedule, or at once when its encryption counter crosses the bound.
    subjectType: "data_key",
    table: "data_keys",
    idColumn: "tenant_id",
    filter: "AND status = 'active'",
    workflow: (env) => env.DEK_ROTATION,
    chunk: DEK_ROTATIONS_PER_SECOND,
  },
];

export interface TickReport {
  /** Rotation runs claimed and handed to a Workflow this tick. */
  started: number;
  /** D1 calls (a batch counts once) the scheduler made. */
  d1Calls: number;
}

/**
 * Workflows creates at most 100 instances a second per Workflow (Workflows limits, Workers Paid), and one
 * `createBatch` carries at most 100: a tick sends one batch per Workflow a second, and waits out the rest of
 * its wall-clock time (a cron invocation may run for 15 minutes; waiting costs no CPU).
 */
export const CREATE_INTERVAL_MS = 1_000;

export interface TickOptions {
  /** How the tick waits between two `createBatch` calls to one Workflow; tests pass a recorder. */
  wait?: (ms: number) => Promise<void>;
  /** Items per chunk (default `SCHEDULER_CHUNK`); tests use small chunks to cross many chunk boundaries. */
  chunk?: number;
}

/** What every part of one tick shares. */
interface Tick {
  env: Bindings;
  now: number;
  chunk: number;
  report: TickReport;
}

export interface ClaimedRun {
  id: string;
  tenant_id: string;
  subject_id: string;
}

/** What starting a run needs of its source; the KEK re-wrap (src/vault/kek-rewrap.ts) has no due column. */
export type RunSource = Pick<Source, "subjectType" | "workflow">;

/** Starts claimed runs of one source, one paced `createBatch` at a time. */
class RunStarter {
  private batches = 0;
  constructor(
    private readonly env: Bindings,
    private readonly source: RunSource,
    private readonly wait: (ms: number) => Promise<void>,
  ) {}

  /**
   * `createBatch` skips ids that already exist, so starting a run twice starts it once. Runs the platform
   * refused (rate limit, outage) are marked to be started again by the next tick, and the refusal stops this
   * source for this tick.
   */
  async start(runs: readonly ClaimedRun[], now: number): Promise<void> {
    if (runs.length === 0) return;
    if (this.batches++ > 0) await this.wait(CREATE_INTERVAL_MS);
    const instances = runs.map((run) => ({
      id: run.id,
      params: {
        runId: run.id,
        tenantId: run.tenant_id,
        subjectType: this.source.subjectType,
        subjectId: run.subject_id,
        now,
      } satisfies RotationParams,
    }));
    let refused: string[];
    let reason: string;
    try {
      const { errors } = await this.source.workflow(this.env).createBatch({ instances });
      const failed = errors.filter((error) => !error.message.includes("already_exists"));
      refused = failed.map((error) => error.id ?? instances[error.index]?.id ?? "");
      reason = failed[0]?.message ?? "";
    } catch (error) {
      refused = instances.map((instance) => instance.id);
      reason = error instanceof Error ? error.message : String(error);
    }
    if (refused.length === 0) return;
    // updated_at 0 puts them first in line for restartQueuedRuns, without the crash-repair delay.
    await this.env.DB.prepare(
      `UPDATE rotation_runs SET updated_at = 0
       WHERE state = 'in_progress' AND step = 'queued' AND id IN (${refused.map(() => "?").join(", ")})`,
    )
      .bind(...refused)
      .run();
    throw new Error(
      `Workflows did not start ${refused.length} ${this.source.subjectType} rotation(s): ${reason}`,
    );
  }
}

/**
 * Claims every due item of `source`, in chunks: the claim inserts the run (id = item + the time it was due)
 * and clears `next_rotation_at` in one batch, then one `createBatch` starts their Workflows. A second tick
 * finds nothing to claim; a crash between claim and create is repaired by `restartQueuedRuns`.
 */
async function claimDue(tick: Tick, source: Source, starter: RunStarter) {
  const { env, now, report } = tick;
  const size = Math.min(tick.chunk, source.chunk ?? tick.chunk);
  const db: Db = env.DB;
  const { table, idColumn, filter, subjectType } = source;
  for (let chunk = 0; chunk < SCHEDULER_MAX_CHUNKS; chunk++) {
    const due = await db
      .prepare(
        `SELECT ${idColumn} AS id, next_rotation_at AS at FROM ${table}
         WHERE next_rotation_at <= ?1 ${filter} ORDER BY next_rotation_at, ${idColumn} LIMIT ?2`,
      )
      .bind(now, size)
      .all<{ id: string; at: number }>();
    report.d1Calls++;
    const last = due.results.at(-1);
    if (!last) return;
    // Row-value bounds instead of an id list (D1 allows 100 bound parameters per statement); the plain
    // `<= ?1` on the chunk's last due time lets the index scan stop there instead of at `now`.
    const inChunk = `next_rotation_at <= ?1 ${filter} AND (next_rotation_at, ${idColumn}) <= (?1, ?2)`;
    const [claimed] = await db.batch<ClaimedRun>([
      db
        .prepare(
          `INSERT OR IGNORE INTO rotation_runs
             (id, tenant_id, subject_type, subject_id, trigger, state, step, started_at, updated_at)
           SELECT ${idColumn} || '-' || next_rotation_at, tenant_id, ?3, ${idColumn}, 'schedule', 'in_progress',
                  'queued', ?4, ?4
           FROM ${table} WHERE ${inChunk}
           RETURNING id, tenant_id, subject_id`,
        )
        .bind(last.at, last.id, subjectType, now),
      db.prepare(`UPDATE ${table} SET next_rotation_at = NULL WHERE ${inChunk}`).bind(last.at, last.id),
    ]);
    report.d1Calls++;
    const runs = claimed?.results ?? [];
    await starter.start(runs, now);
    report.started += runs.length;
    if (due.results.length < size) return;
  }
}

/**
 * Runs claimed but never begun are started again: those a refused `createBatch` marked (at once), and those
 * claimed more than `QUEUED_RESTART_MS` ago by a tick that died between claim and create.
 */
async function restartQueuedRuns(tick: Tick, source: RunSource, starter: RunStarter) {
  const { env, now, chunk, report } = tick;
  const stale = await env.DB.prepare(
    `SELECT id, tenant_id, subject_id FROM rotation_runs
     WHERE state = 'in_progress' AND step = 'queued' AND subject_type = ?1 AND updated_at < ?2
     ORDER BY updated_at LIMIT ?3`,
  )
    .bind(source.subjectType, now - QUEUED_RESTART_MS, chunk)
    .all<ClaimedRun>();
  report.d1Calls++;
  await starter.start(stale.results, now);
  report.started += stale.results.length;
}

/**
 * For a Workflow started outside SOURCES (the KEK re-wrap): restarts its runs claimed but never begun, as
 * for every source, then starts the runs the caller just claimed. Returns how many were handed to Workflows.
 */
export async function startRunsOf(
  source: RunSource,
  env: Bindings,
  now: number,
  claimed: readonly ClaimedRun[],
): Promise<number> {
  const tick: Tick = { env, now, chunk: SCHEDULER_CHUNK, report: { started: 0, d1Calls: 0 } };
  const starter = new RunStarter(env, source, (ms) => scheduler.wait(ms));
  await restartQueuedRuns(tick, source, starter);
  await starter.start(claimed, now);
  return tick.report.started + claimed.length;
}

/**
 * Tells every run whose overlap has ended by this tick's clock to retire the old key or version. A deployed
 * run's own timer ends the overlap anyway; this is what makes a fast-forwarded cron end it too.
 */
async function endDueOverlaps({ env, now, chunk, report }: Tick): Promise<void> {
  const due = await env.DB.prepare(
    `UPDATE rotation_runs SET step = 'overlap_ended', updated_at = ?1
     WHERE id IN (SELECT id FROM rotation_runs
                  WHERE state = 'in_progress' AND step = 'overlap' AND overlap_ends_at <= ?1 LIMIT ?2)
     RETURNING id, tenant_id, subject_id, subject_type`,
  )
    .bind(now, chunk)
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
        await new RunStarter(env, source, async () => {}).start([run], now);
        await send();
      });
    }),
  );
}

/**
 * Reminders as events, each table in one INSERT ... SELECT: scheduled rotations entering the reminder
 * horizon, assisted rotations that are due (an admin has to act), successors whose pickup window closes soon.
 */
async function recordReminders({ env, now, report }: Tick): Promise<void> {
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
 * with a future time fast-forwards every rotation, overlap and reminder (DESIGN.md, fixed points). Keys and
 * credentials are started side by side and independently: one refused by the platform does not hold up the
 * other, and the tick reports every failure after all its work is done.
 */
export async function runRotationTick(
  env: Bindings,
  now: number,
  options: TickOptions = {},
): Promise<TickReport> {
  const wait = options.wait ?? ((ms: number) => scheduler.wait(ms));
  const tick: Tick = {
    env,
    now,
    chunk: options.chunk ?? SCHEDULER_CHUNK,
    report: { started: 0, d1Calls: 0 },
  };
  const outcomes = await Promise.allSettled([
    ...SOURCES.map(async (source) => {
      const starter = new RunStarter(env, source, wait);
      await restartQueuedRuns(tick, source, starter);
      await claimDue(tick, source, starter);
    }),
    endDueOverlaps(tick),
    recordReminders(tick),
  ]);
  const failures = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason] : []));
  if (failures.length > 0)
    throw new AggregateError(failures, `rotation tick: ${failures.length} part(s) failed`);
  return tick.report;
}
