import { and, desc, eq } from "drizzle-orm";
import type { Database } from "../db/client";
import { inJsonList } from "../db/in-list";
import { rotationRuns } from "../db/schema";
import { ApiError } from "../errors";
import { isoTime } from "../openapi/shared";
import type { RotationState } from "./rotation-kinds";

export type RotationRun = typeof rotationRuns.$inferSelect;
export type SubjectType = RotationRun["subjectType"];

/**
 * The Workflow instance id of one rotation: the subject and its generation (the scheduled time it was due,
 * or `m<ms>` for a rotation started by hand). Workflows refuses a second instance with the same id, which is
 * what makes a duplicate cron tick start nothing (SECURITY.md case 21). Ids are at most 100 characters of
 * `[A-Za-z0-9_-]`; subject ids are `key_…` / `cred_…` with 22 base62 characters.
 */
export function rotationRunId(subjectId: string, generation: number | `m${number}`): string {
  return `${subjectId}-${generation}`;
}

/**
 * The INSERT that claims a run. The partial unique index on in-progress runs per subject turns a second
 * concurrent claim into a no-op (`onConflictDoNothing`), so the later instance finds no row of its own.
 */
export function claimRunStatement(
  db: Database,
  run: Pick<RotationRun, "id" | "tenantId" | "subjectType" | "subjectId" | "trigger"> & { now: number },
) {
  return db
    .insert(rotationRuns)
    .values({
      id: run.id,
      tenantId: run.tenantId,
      subjectType: run.subjectType,
      subjectId: run.subjectId,
      trigger: run.trigger,
      state: "in_progress",
      step: "queued",
      startedAt: run.now,
      updatedAt: run.now,
    })
    .onConflictDoNothing();
}

/** Moves an in-progress run to `step`, with whatever else the step learned (successor, overlap end). */
export function runStepStatement(
  db: Database,
  id: string,
  step: string,
  now: number,
  extra: Partial<Pick<RotationRun, "successorId" | "overlapEndsAt">> = {},
) {
  return db
    .update(rotationRuns)
    .set({ step, updatedAt: now, ...extra })
    .where(and(eq(rotationRuns.id, id), eq(rotationRuns.state, "in_progress")));
}

/** Ends an in-progress run; ending an already ended run changes nothing. */
export function finishRunStatement(
  db: Database,
  id: string,
  outcome: { state: "completed" } | { state: "failed"; step: string; error: string },
  now: number,
) {
  return db
    .update(rotationRuns)
    .set({
      state: outcome.state,
      ...(outcome.state === "failed" ? { step: outcome.step, error: outcome.error } : {}),
      updatedAt: now,
      finishedAt: now,
    })
    .where(and(eq(rotationRuns.id, id), eq(rotationRuns.state, "in_progress")));
}

/**
 * The first step of every rotation Workflow: whether this run is the one rotating its subject (a run whose
 * row is missing or ended does nothing), and the mark that its instance has started, so the cron's restart
 * of runs that never got an instance leaves it alone.
 */
export async function beginRun(db: Database, params: { runId: string; now: number }): Promise<boolean> {
  const run = await findRun(db, params.runId);
  if (run?.state !== "in_progress") return false;
  if (run.step === "queued") {
    await db
      .update(rotationRuns)
      .set({ step: "begin", updatedAt: params.now })
      .where(and(eq(rotationRuns.id, params.runId), eq(rotationRuns.step, "queued")));
  }
  return true;
}

export async function findRun(db: Database, id: string): Promise<RotationRun | undefined> {
  return db.select().from(rotationRuns).where(eq(rotationRuns.id, id)).get();
}

/** Each subject's most recent run, for the `rotation` object of a list or a single resource. */
export async function latestRuns(
  db: Database,
  tenantId: string,
  subjectIds: readonly string[],
): Promise<Map<string, RotationRun>> {
  if (subjectIds.length === 0) return new Map();
  const rows = await db
    .select()
    .from(rotationRuns)
    .where(and(eq(rotationRuns.tenantId, tenantId), inJsonList(rotationRuns.subjectId, subjectIds)))
    .orderBy(desc(rotationRuns.startedAt))
    .all();
  const latest = new Map<string, RotationRun>();
  for (const row of rows) if (!latest.has(row.subjectId)) latest.set(row.subjectId, row);
  return latest;
}

/**
 * One subject's runs, newest first (its latest run is the first row): `latestRuns` for a single subject, as a
 * query a caller can put in the batch that reads the subject itself (one D1 round trip for both).
 */
export function subjectRunsQuery(db: Database, tenantId: string, subjectId: string) {
  return db
    .select()
    .from(rotationRuns)
    .where(and(eq(rotationRuns.tenantId, tenantId), eq(rotationRuns.subjectId, subjectId)))
    .orderBy(desc(rotationRuns.startedAt));
}

/** Refuses (409) to start or reconfigure a rotation of a subject whose latest run is in progress. */
export function assertNotInProgress(latest: RotationRun | undefined, message: string): void {
  if (latest?.state === "in_progress") throw new ApiError("CONFLICT", message);
}

/** Refuses (409) to start or reconfigure a rotation of a subject while one of its runs is in progress. */
export async function assertNoRunInProgress(
  db: Database,
  subject: { tenantId: string; id: string },
  message: string,
): Promise<void> {
  assertNotInProgress((await latestRuns(db, subject.tenantId, [subject.id])).get(subject.id), message);
}

export interface RotationSchedule {
  policyDays: number | null;
  nextRotationAt: number | null;
  lastRotatedAt: number | null;
}

/** The `rotation` object of a key or credential (DESIGN.md, "Fixed points for the operating life"). */
export function rotationView(schedule: RotationSchedule, run: RotationRun | undefined) {
  const state: RotationState = run?.state === "in_progress" || run?.state === "failed" ? run.state : "idle";
  return {
    policy_days: schedule.policyDays,
    next_rotation_at: isoTime(schedule.nextRotationAt),
    state,
    last_rotated_at: isoTime(schedule.lastRotatedAt),
    last_error: run?.state === "failed" ? run.error : null,
    ...(run?.state === "in_progress"
      ? {
          in_progress: {
            run_id: run.id,
            step: run.step,
            started_at: isoTime(run.startedAt) as string,
            overlap_ends_at: isoTime(run.overlapEndsAt),
          },
        }
      : {}),
  };
}
