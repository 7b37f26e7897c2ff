import { and, eq } from "drizzle-orm";
import type { AuditActor } from "../audit/audit-log";
import { type Database, database } from "../db/client";
import { apiKeys } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import {
  assertRotatable,
  commitKeyChange,
  isWorkingKey,
  mintSuccessor,
  promotionOf,
} from "../keys/key-lifecycle";
import { forgetCachedKey } from "../keys/key-record";
import { evaluateTenantNow } from "../monitoring/evaluate-now";
import { isoTime } from "../openapi/shared";
import { eventStatement } from "./events";
import { endHandoffStatements, handoffStatements, pendingPickup } from "./key-handoff";
import type { RotationParams } from "./rotation-params";
import {
  assertNotInProgress,
  beginRun,
  claimRunStatement,
  findRun,
  finishRunStatement,
  type RotationRun,
  rotationRunId,
  runStepStatement,
} from "./rotation-runs";
import { ROTATION_RETRY_MS, RotationStopped, rotationActor } from "./rotation-steps";

type KeyRow = typeof apiKeys.$inferSelect;

async function findKey(env: Bindings, params: RotationParams, id = params.subjectId) {
  return database(env.DB)
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.tenantId, params.tenantId), eq(apiKeys.id, id)))
    .get();
}

async function findSuccessor(env: Bindings, params: RotationParams) {
  return database(env.DB)
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.tenantId, params.tenantId), eq(apiKeys.rotatedFromId, params.subjectId)))
    .get();
}

/**
 * Whether this run is the one rotating the key. A run whose row is missing or ended (another run held the
 * key when this one was claimed, or it already finished) does nothing.
 */
export async function beginKeyRotation(env: Bindings, params: RotationParams): Promise<boolean> {
  return beginRun(database(env.DB), params);
}

/**
 * Step "create": the successor and its way to the tenant (a JWE for the delivery endpoint, or sealed for
 * pickup) in one batch. The plaintext exists only inside this function. A retry finds the successor this
 * run (or a manual rotation) already made and returns it.
 */
export async function createKeySuccessor(env: Bindings, params: RotationParams): Promise<string> {
  const existing = await findSuccessor(env, params);
  if (existing) return existing.id;
  const source = await findKey(env, params);
  if (!source) throw new RotationStopped("The key was deleted.");
  try {
    assertRotatable(source, params.now);
  } catch (error) {
    throw new RotationStopped(error instanceof ApiError ? error.detail : String(error));
  }
  const db = database(env.DB);
  const successor = await mintSuccessor(source, "rotation", params.now);
  const handoff = await handoffStatements(env, db, {
    tenantId: params.tenantId,
    keyId: successor.row.id,
    runId: params.runId,
    plaintext: successor.key,
    expiresAt: params.now + overlapSecondsOf(source, params) * 1000,
    now: params.now,
    rotatedFromId: source.id,
  });
  await commitKeyChange(
    env,
    rotationActor(params),
    [
      db.insert(apiKeys).values(successor.row),
      ...handoff.statements,
      runStepStatement(db, params.runId, "deliver", params.now, { successorId: successor.row.id }),
    ],
    [
      {
        action: "key.create",
        targetType: "key",
        targetId: successor.row.id,
        detail: { rotated_from_id: source.id, run_id: params.runId, handoff: handoff.method },
      },
    ],
  );
  return successor.row.id;
}

/** The delivery endpoint gave up: the successor waits for pickup (as its JWE) until the overlap ends. */
export async function recordDeliveryFailure(
  env: Bindings,
  params: RotationParams,
  successorId: string,
  reason: string,
): Promise<void> {
  const db = database(env.DB);
  await db.batch([
    eventStatement(db, {
      tenantId: params.tenantId,
      kind: "rotation.delivery_failed",
      subjectType: "key",
      subjectId: successorId,
      dedupeKey: params.runId,
      detail: { rotated_from_id: params.subjectId, error: reason },
      at: params.now,
    }),
  ]);
}

function overlapSecondsOf(source: KeyRow, params: RotationParams): number {
  return params.overlapSeconds ?? source.rotationOverlapSeconds;
}

/**
 * Step "test": the successor authenticates (working, unrevoked) and holds exactly its source's scopes, so
 * a rotation never widens what a key may do (threat model case 25).
 */
export async function testKeySuccessor(env: Bindings, params: RotationParams, successorId: string) {
  const successor = await findKey(env, params, successorId);
  const source = await findKey(env, params);
  if (!successor || !isWorkingKey(successor, params.now) || successor.rotatedFromId !== params.subjectId) {
    throw new RotationStopped("The new key does not authenticate.");
  }
  const widened = successor.scopes.filter((scope) => !source?.scopes.includes(scope));
  if (widened.length > 0) throw new RotationStopped("The new key holds scopes its source did not.");
}

/**
 * Step "promote": the successor becomes the key, the source verifies (reporting `replaced_by`) until the
 * overlap ends. Returns when the overlap ends. Idempotent: an already promoted source is left as it is.
 */
export async function promoteKeySuccessor(
  env: Bindings,
  params: RotationParams,
  successorId: string,
): Promise<number> {
  const db = database(env.DB);
  const source = await findKey(env, params);
  if (!source) throw new RotationStopped("The key was deleted.");
  if (source.rotatedToId === successorId) {
    return (await findRun(db, params.runId))?.overlapEndsAt ?? source.expiresAt ?? params.now;
  }
  if (source.rotatedToId !== null || source.revokedAt !== null) {
    throw new RotationStopped("The key was revoked or rotated meanwhile.");
  }
  const promotion = promotionOf(db, source, successorId, overlapSecondsOf(source, params), params.now);
  const overlapEndsAt = params.now + overlapSecondsOf(source, params) * 1000;
  await commitKeyChange(
    env,
    rotationActor(params),
    [
      ...promotion.statements,
      runStepStatement(db, params.runId, "overlap", params.now, { overlapEndsAt }),
      eventStatement(db, {
        tenantId: params.tenantId,
        kind: "rotation.started",
        subjectType: "key",
        subjectId: source.id,
        dedupeKey: params.runId,
        detail: { successor_id: successorId, overlap_ends_at: isoTime(overlapEndsAt) },
        at: params.now,
      }),
    ],
    promotion.events.map((event) => ({ ...event, detail: { ...event.detail, run_id: params.runId } })),
  );
  forgetCachedKey(source.hash);
  return overlapEndsAt;
}

/**
 * Step "retire", when the overlap has ended (`endedAt`: the cron's clock, or the timer's): the old key stops
 * verifying, an uncollected pickup is destroyed together with its never-seen successor, and the run ends.
 */
export async function retireKeyRotation(
  env: Bindings,
  params: RotationParams,
  successorId: string,
  endedAt: number,
): Promise<void> {
  const db = database(env.DB);
  const source = await findKey(env, params);
  const missedPickup = await pendingPickup(db, successorId);
  const statements = [
    ...(source && source.revokedAt === null
      ? [
          db
            .update(apiKeys)
            .set({ revokedAt: endedAt, nextRotationAt: null, updatedAt: endedAt })
            .where(and(eq(apiKeys.tenantId, params.tenantId), eq(apiKeys.id, source.id))),
        ]
      : []),
    ...endHandoffStatements(db, successorId),
    ...(missedPickup
      ? [
          // Nobody holds the successor's plaintext any more: a key nobody can present is revoked too.
          db
            .update(apiKeys)
            .set({ revokedAt: endedAt, nextRotationAt: null, updatedAt: endedAt })
            .where(and(eq(apiKeys.tenantId, params.tenantId), eq(apiKeys.id, successorId))),
          eventStatement(db, {
            tenantId: params.tenantId,
            kind: "rotation.pickup_missed",
            subjectType: "key",
            subjectId: successorId,
            dedupeKey: params.runId,
            detail: { rotated_from_id: params.subjectId },
            at: endedAt,
          }),
        ]
      : []),
    finishRunStatement(db, params.runId, { state: "completed" }, endedAt),
    eventStatement(db, {
      tenantId: params.tenantId,
      kind: "rotation.completed",
      subjectType: "key",
      subjectId: params.subjectId,
      dedupeKey: params.runId,
      detail: { successor_id: successorId },
      at: endedAt,
    }),
  ];
  await commitKeyChange(env, rotationActor(params), statements, [
    {
      action: "key.retire",
      targetType: "key",
      targetId: params.subjectId,
      detail: { successor_id: successorId, run_id: params.runId, pickup_missed: missedPickup },
    },
  ]);
  if (source) forgetCachedKey(source.hash);
  if (missedPickup) await evaluateTenantNow(env, params.tenantId, endedAt);
}

/**
 * A rotation that stopped before promotion: its successor (if any) is revoked and its handoff destroyed, the
 * source stays the key, and a scheduled source is tried again later. Nothing here can move "current".
 */
export async function failKeyRotation(
  env: Bindings,
  params: RotationParams,
  failure: { step: string; error: string },
): Promise<void> {
  const db = database(env.DB);
  const source = await findKey(env, params);
  const successor = await findSuccessor(env, params);
  const abandoned = successor && source?.rotatedToId !== successor.id ? successor : undefined;
  const retry = source && source.rotatedToId === null && isWorkingKey(source, params.now);
  await commitKeyChange(
    env,
    rotationActor(params),
    [
      ...(abandoned
        ? [
            // rotated_from_id is cleared so the source's next rotation can make a successor again.
            db
              .update(apiKeys)
              .set({
                revokedAt: params.now,
                rotatedFromId: null,
                nextRotationAt: null,
                updatedAt: params.now,
              })
              .where(and(eq(apiKeys.tenantId, params.tenantId), eq(apiKeys.id, abandoned.id))),
            ...endHandoffStatements(db, abandoned.id),
          ]
        : []),
      ...(retry && source.rotationDays !== null
        ? [
            db
              .update(apiKeys)
              .set({ nextRotationAt: params.now + ROTATION_RETRY_MS })
              .where(and(eq(apiKeys.tenantId, params.tenantId), eq(apiKeys.id, source.id))),
          ]
        : []),
      finishRunStatement(db, params.runId, { state: "failed", ...failure }, params.now),
      eventStatement(db, {
        tenantId: params.tenantId,
        kind: "rotation.failed",
        subjectType: "key",
        subjectId: params.subjectId,
        dedupeKey: params.runId,
        detail: { step: failure.step, error: failure.error },
        at: params.now,
      }),
    ],
    [
      {
        action: "key.rotation_failed",
        targetType: "key",
        targetId: params.subjectId,
        detail: { run_id: params.runId, step: failure.step, error: failure.error },
      },
    ],
  );
  // After the commit, inside the Workflow's "fail" step: a retried step finds the alert already open.
  await evaluateTenantNow(env, params.tenantId, params.now);
}

/**
 * The batch of a rotation started by hand: the run claimed, the successor created and promoted at once. The
 * successor's INSERT precedes the promotion (see `promotionOf`).
 */
export async function planKeyRotationNow(
  db: Database,
  source: KeyRow,
  options: { overlapSeconds?: number; createdBy: string; now: number },
) {
  const { now } = options;
  const overlapSeconds = options.overlapSeconds ?? source.rotationOverlapSeconds;
  const params: RotationParams = {
    runId: rotationRunId(source.id, `m${now}`),
    tenantId: source.tenantId,
    subjectType: "key",
    subjectId: source.id,
    now,
    overlapSeconds,
  };
  const successor = await mintSuccessor(source, options.createdBy, now);
  const promotion = promotionOf(db, source, successor.row.id, overlapSeconds, now);
  const statements = [
    claimRunStatement(db, { ...params, id: params.runId, trigger: "manual" }),
    db.insert(apiKeys).values(successor.row),
    ...promotion.statements,
    runStepStatement(db, params.runId, "overlap", now, {
      successorId: successor.row.id,
      overlapEndsAt: now + overlapSeconds * 1000,
    }),
  ];
  const events = promotion.events.map((event) => ({
    ...event,
    detail: { ...event.detail, run_id: params.runId },
  }));
  return { params, successor, previousExpiresAt: promotion.expiresAt, statements, events };
}

/**
 * `POST /keys/{id}/rotate`: the successor is created and promoted at once (its plaintext goes back to the
 * caller, who asked for it, exactly once), then the same Workflow as a scheduled rotation takes the run
 * through the overlap and retires the old key; its create, deliver, test and promote steps find their work
 * done.
 */
export async function rotateKeyNow(
  env: Bindings,
  actor: AuditActor,
  source: KeyRow,
  options: {
    overlapSeconds?: number;
    createdBy: string;
    now: number;
    /** The key's latest rotation run, read in the same batch as the key (`subjectRunsQuery`). */
    latestRun: RotationRun | undefined;
  },
) {
  assertRotatable(source, options.now);
  const db = database(env.DB);
  assertNotInProgress(options.latestRun, "This key is already being rotated.");
  const plan = await planKeyRotationNow(db, source, options);
  await commitKeyChange(env, actor, plan.statements, plan.events);
  forgetCachedKey(source.hash);
  await env.KEY_ROTATION.create({ id: plan.params.runId, params: plan.params });
  return plan;
}
