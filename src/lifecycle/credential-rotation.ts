/**
 * Rotation of a third-party credential, one domain function per Workflow step (credential-rotation-workflow.ts
 * only sequences them). Each function is idempotent: run twice, or run once before a crash lost the engine's
 * record of it, it leaves the same state as run once (threat model cases 20, 32). A new value exists in
 * plaintext only inside the function that mints or tests it and leaves it sealed under the tenant's DEK;
 * step results are version numbers and times only.
 *
 * Stage labels (AWS Secrets Manager's AWSPENDING / AWSCURRENT / AWSPREVIOUS): the successor is `pending`
 * until it has passed its live test, then one batch makes it `current` and the old current `previous`.
 * Nothing before promote touches `current`, so a rotation that fails at any step leaves the current value
 * current and working.
 */
import { and, eq } from "drizzle-orm";
import type { AuditActor, AuditEvent } from "../audit/audit-log";
import { commitWithAudit } from "../audit/audit-log";
import {
  assertValidFields,
  type CredentialRow,
  dropPendingStatement,
  findVersionRow,
  makeCurrentStatements,
  nextVersionNumber,
  openVersion,
  sealedVersionStatements,
  type VersionRow,
  versionInStage,
} from "../credentials/credential-versions";
import { probeVersion } from "../credentials/live-test";
import { isConcurrentChange } from "../credentials/preconditions";
import { providerFetch } from "../credentials/provider-fetch";
import { requireService } from "../credentials/require-service";
import {
  assertNoRotationRunning,
  findRotationConfig,
  nextPeriodStatement,
  openEndpointSecret,
  type RotationConfig,
} from "../credentials/rotation-config";
import { type Database, database } from "../db/client";
import { credentialRotations, credentials } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import { evaluateTenantNow } from "../monitoring/evaluate-now";
import { unseal } from "../vault/keyring";
import { eventStatement } from "./events";
import type { RotationParams } from "./rotation-params";
import {
  claimRunStatement,
  findRun,
  finishRunStatement,
  rotationRunId,
  runStepStatement,
} from "./rotation-runs";
import { ROTATION_RETRY_MS, RotationStopped, rotationActor } from "./rotation-steps";
import { providerRotatorFor } from "./rotators";
import { callExternalRotator } from "./rotators/external";
import type { ProviderRotator, RotatorCall } from "./rotators/provider-rotator";

/** `created_by` of a version a rotation minted (an admin's entered value carries the admin's key id). */
export const ROTATION_CREATOR = "rotation";
/** Longest `last_error` kept: rotator and probe messages are short fixed texts, never values. */
const MAX_ERROR_LENGTH = 300;

/**
 * How this run gets its successor: minted by the provider's API, by the tenant's external endpoint, or
 * entered by an admin (`POST .../rotate` with `fields`, sealed as the pending version before the run began).
 */
export type RotationMode = "provider" | "external" | "entered";

/** What step "begin" learned; the engine stores it, so it holds no secret. */
export interface RotationPlan {
  mode: RotationMode;
  /** The version that was current when the run began: the one promote demotes and retire revokes. */
  fromVersion: number;
  /** The entered successor (mode `entered`); the others learn theirs in step "create". */
  pendingVersion: number | null;
  overlapSeconds: number;
}

const credentialSubject = (params: RotationParams) => ({
  tenantId: params.tenantId,
  subjectType: "credential" as const,
  subjectId: params.subjectId,
});

async function findCredential(db: Database, params: RotationParams): Promise<CredentialRow | undefined> {
  return db
    .select()
    .from(credentials)
    .where(and(eq(credentials.tenantId, params.tenantId), eq(credentials.id, params.subjectId)))
    .get();
}

async function activeCredential(db: Database, params: RotationParams): Promise<CredentialRow> {
  const row = await findCredential(db, params);
  if (row?.status !== "active") throw new RotationStopped("The credential was deleted.");
  return row;
}

function providerRotator(row: CredentialRow): ProviderRotator {
  const rotator = providerRotatorFor(row.serviceId);
  if (!rotator) throw new RotationStopped(`The service ${row.serviceId} has no provider rotator.`);
  return rotator;
}

/** The call context of a provider rotator: the rotation credential's current value, opened in this step. */
async function rotatorCall(
  env: Bindings,
  db: Database,
  rotator: ProviderRotator,
  config: RotationConfig,
): Promise<RotatorCall<Record<string, string>>> {
  const rotatorRow = config.rotatorCredentialId
    ? await db
        .select()
        .from(credentials)
        .where(and(eq(credentials.tenantId, config.tenantId), eq(credentials.id, config.rotatorCredentialId)))
        .get()
    : undefined;
  if (rotatorRow?.status !== "active") {
    throw new RotationStopped("The rotation credential was deleted.");
  }
  const version = await findVersionRow(db, rotatorRow, rotatorRow.currentVersion);
  if (!version) throw new RotationStopped("The rotation credential has no current version.");
  const parsed = rotator.settingsSchema.safeParse(config.settings);
  if (!parsed.success) throw new RotationStopped("The rotation settings are no longer valid.");
  return {
    fetch: providerFetch(env),
    rotatorFields: await openVersion(await unseal(env, db), db, version),
    settings: parsed.data,
  };
}

async function requireConfig(db: Database, row: CredentialRow): Promise<RotationConfig> {
  const config = await findRotationConfig(db, row);
  if (!config || config.method === "assisted") {
    throw new RotationStopped("No automatic rotation is configured for this credential.");
  }
  return config;
}

/**
 * Step "begin": whether this run is the one rotating the credential (a missing or ended run does nothing:
 * another run held it when this one was claimed, or it already finished), and how it rotates. After a crash
 * that lost the engine's record of a later step, the run's successor may already be current: the version it
 * demoted is then the one labelled previous.
 */
export async function beginCredentialRotation(
  env: Bindings,
  params: RotationParams,
): Promise<RotationPlan | null> {
  const db = database(env.DB);
  const run = await findRun(db, params.runId);
  if (run?.state !== "in_progress" || run.subjectId !== params.subjectId) return null;
  const row = await activeCredential(db, params);
  const config = await findRotationConfig(db, row);
  const successor = run.successorId ? await findVersionRow(db, row, Number(run.successorId)) : undefined;
  const promoted = successor?.stage === "current";
  const fromVersion = promoted
    ? ((await versionInStage(db, row, "previous"))?.version ?? row.currentVersion)
    : row.currentVersion;
  const overlapSeconds = params.overlapSeconds ?? config?.overlapSeconds ?? 0;
  if (successor && successor.createdBy !== ROTATION_CREATOR) {
    return { mode: "entered", fromVersion, pendingVersion: successor.version, overlapSeconds };
  }
  const method = (await requireConfig(db, row)).method;
  if (method === "provider") providerRotator(row);
  if (run.step === "queued") {
    // The run shows the step it is at (GET .../{id} `rotation.in_progress.step`) from its first step on.
    await commitWithAudit(
      env,
      rotationActor(params),
      [runStepStatement(db, params.runId, "create", params.now)],
      [
        {
          action: "credential.rotation_start",
          targetType: "credential",
          targetId: row.id,
          detail: { run_id: params.runId, method, trigger: run.trigger },
        },
      ],
    );
  }
  return {
    mode: method === "provider" ? "provider" : "external",
    fromVersion,
    pendingVersion: null,
    overlapSeconds,
  };
}

/** The successor's values from the provider or the external endpoint; plaintext, so it never leaves create. */
async function mintSuccessor(
  env: Bindings,
  db: Database,
  params: RotationParams,
  plan: RotationPlan,
  row: CredentialRow,
  current: VersionRow,
  version: number,
): Promise<{ fields: Record<string, string>; providerKeyId: string | null; revoke: () => Promise<void> }> {
  const config = await requireConfig(db, row);
  const currentFields = await openVersion(await unseal(env, db), db, current);
  if (plan.mode === "provider") {
    const rotator = providerRotator(row);
    const call = await rotatorCall(env, db, rotator, config);
    const minted = await rotator.mint(call, currentFields, params.runId);
    return {
      fields: { ...currentFields, ...minted.fields },
      providerKeyId: minted.providerKeyId,
      revoke: () => rotator.revoke(call, minted.providerKeyId),
    };
  }
  const endpoint = await externalEndpoint(env, db, config);
  const created = await callExternalRotator(env, {
    ...endpoint,
    step: "create",
    service: requireService(row.serviceId),
    credentialId: row.id,
    runId: params.runId,
    version,
  });
  const fields = { ...currentFields, ...created.fields };
  const providerKeyId =
    created.provider_key_id ?? providerRotatorFor(row.serviceId)?.providerKeyIdOf(fields) ?? null;
  return {
    fields,
    providerKeyId,
    revoke: async () => {
      await callExternalRotator(env, {
        ...endpoint,
        step: "revoke",
        credentialId: row.id,
        runId: params.runId,
        version,
        ...(providerKeyId ? { providerKeyId } : {}),
      });
    },
  };
}

async function externalEndpoint(env: Bindings, db: Database, config: RotationConfig) {
  if (!config.endpointUrl) throw new RotationStopped("The external rotation has no endpoint.");
  return { url: config.endpointUrl, secret: await openEndpointSecret(env, db, config) };
}

/**
 * Step "create": the successor minted and sealed as the `pending` version with the provider's key id, and the
 * run pointed at it, in one batch. A retry (or a re-run after a crash) finds the version this run made and
 * returns it without calling the provider again; a mint whose batch never landed is revoked by the
 * rotator's own next `mint` (it revokes keys tagged with this run id) or below when the value is refused.
 */
export async function createPendingVersion(
  env: Bindings,
  params: RotationParams,
  plan: RotationPlan,
): Promise<number> {
  const db = database(env.DB);
  const run = await findRun(db, params.runId);
  if (run?.state !== "in_progress") throw new RotationStopped("The rotation run ended.");
  const row = await activeCredential(db, params);
  if (run.successorId) {
    const made = await findVersionRow(db, row, Number(run.successorId));
    if (made) return made.version;
  }
  if (row.currentVersion !== plan.fromVersion) throw new RotationStopped("The credential changed meanwhile.");
  const current = await findVersionRow(db, row, row.currentVersion);
  if (!current) throw new RotationStopped("The credential has no current version.");
  const version = await nextVersionNumber(db, row);
  const minted = await mintSuccessor(env, db, params, plan, row, current, version);
  try {
    assertValidFields(requireService(row.serviceId), row, minted.fields);
  } catch (error) {
    await minted.revoke();
    throw new RotationStopped(
      error instanceof ApiError ? "The minted value did not pass the catalogue's validation." : String(error),
    );
  }
  const keys = await unseal(env, db);
  await commitWithAudit(
    env,
    rotationActor(params),
    [
      ...(await sealedVersionStatements(keys, db, {
        tenantId: row.tenantId,
        credentialId: row.id,
        serviceId: row.serviceId,
        version,
        fields: minted.fields,
        stage: "pending",
        providerKeyId: minted.providerKeyId,
        createdBy: ROTATION_CREATOR,
        now: params.now,
      })),
      runStepStatement(db, params.runId, "test", params.now, { successorId: String(version) }),
    ],
    [
      {
        action: "credential.rotation_create",
        targetType: "credential",
        targetId: row.id,
        detail: { run_id: params.runId, version, provider_key_id: minted.providerKeyId },
      },
    ],
  );
  return version;
}

/**
 * Step "test": an external rotation's endpoint is asked to test the successor, then the successor is probed
 * live with the catalogue's probe. `valid` moves on. An entered value that
 * the provider rejects is final. A freshly minted key may not work for a few seconds (AWS IAM keys propagate
 * eventually), so for a minted one any other verdict is thrown for the step to retry with backoff; when
 * the retries run out, the rotation fails.
 */
export async function testPendingVersion(
  env: Bindings,
  params: RotationParams,
  plan: RotationPlan,
  version: number,
): Promise<"valid"> {
  const db = database(env.DB);
  const row = await activeCredential(db, params);
  const successor = await findVersionRow(db, row, version);
  if (!successor) throw new RotationStopped("The new version is gone.");
  if (plan.mode === "external") {
    // The tenant's endpoint checks the new value in its own systems first (AWS Secrets Manager's testSecret).
    await callExternalRotator(env, {
      ...(await externalEndpoint(env, db, await requireConfig(db, row))),
      step: "test",
      credentialId: row.id,
      runId: params.runId,
      version,
      providerKeyId: successor.providerKeyId,
    });
  }
  const result = await probeVersion(env, db, row, successor);
  if (result.status !== "valid") {
    const message = `The new value failed its live test (${result.status}: ${result.reason}).`;
    if (plan.mode === "entered" && result.status === "invalid") {
      await commitWithAudit(env, rotationActor(params), [], [testAudit(row, params, version, result)]);
      throw new RotationStopped(message);
    }
    throw new Error(message);
  }
  // Re-run after a crash that lost the record of promote, the successor is already current and the run is
  // in its overlap: the run's step must not go back (the cron ends overlaps of runs in step "overlap").
  const stillPending = successor.stage === "pending";
  await commitWithAudit(
    env,
    rotationActor(params),
    stillPending ? [runStepStatement(db, params.runId, "promote", params.now)] : [],
    [testAudit(row, params, version, result)],
  );
  return "valid";
}

function testAudit(
  row: CredentialRow,
  params: RotationParams,
  version: number,
  result: { status: string; reason: string },
): AuditEvent {
  return {
    action: "credential.test",
    targetType: "credential",
    targetId: row.id,
    detail: { run_id: params.runId, version, status: result.status, reason: result.reason },
  };
}

/**
 * Step "promote": in one batch, with a compare-and-set on the credential's revision, the successor becomes
 * current and the version this run began from becomes previous; the schedule starts a fresh period from
 * `params.now`. An automatic rotation then waits out its overlap (run step "overlap", which the cron ends
 * early when its clock passes `overlap_ends_at`); an entered one is complete: the old value is the admin's
 * to revoke, and stays `previous` for rollback. Already promoted (a crash after the commit): nothing to do.
 */
export async function promotePendingVersion(
  env: Bindings,
  params: RotationParams,
  plan: RotationPlan,
  version: number,
): Promise<{ overlapEndsAt: number | null }> {
  const db = database(env.DB);
  const row = await activeCredential(db, params);
  const overlapEndsAt = plan.mode === "entered" ? null : params.now + plan.overlapSeconds * 1000;
  if (row.currentVersion === version) return { overlapEndsAt };
  const successor = await findVersionRow(db, row, version);
  if (successor?.stage !== "pending") throw new RotationStopped("The new version is gone.");
  if (row.currentVersion !== plan.fromVersion) throw new RotationStopped("The credential changed meanwhile.");
  const config = await findRotationConfig(db, row);
  const completed = overlapEndsAt === null;
  const statements = [
    ...makeCurrentStatements(db, row, version, params.now).statements,
    ...(config ? [nextPeriodStatement(db, config, params.now)] : []),
    completed
      ? finishRunStatement(db, params.runId, { state: "completed" }, params.now)
      : runStepStatement(db, params.runId, "overlap", params.now, { overlapEndsAt }),
    ...(completed ? [completedEvent(db, params, version, params.now)] : []),
  ];
  try {
    await commitWithAudit(env, rotationActor(params), statements, [
      {
        action: "credential.rotation_promote",
        targetType: "credential",
        targetId: row.id,
        detail: { run_id: params.runId, version, previous: row.currentVersion },
      },
    ]);
  } catch (error) {
    // Another writer moved the credential between the read above and this batch: the rotation stops.
    if (isConcurrentChange(error)) {
      throw new RotationStopped("The credential changed meanwhile.");
    }
    throw error;
  }
  return { overlapEndsAt };
}

function completedEvent(db: Database, params: RotationParams, version: number, at: number) {
  return eventStatement(db, {
    ...credentialSubject(params),
    kind: "rotation.completed",
    dedupeKey: params.runId,
    detail: { version },
    at,
  });
}

/**
 * Step "retire", after the overlap: the key of the version this run demoted is revoked at the provider (or by
 * the external endpoint), and the run completes. The version keeps its `previous` label for the record and
 * for rollback of the stored value; the audit row says its key was revoked. A key id the current version
 * also holds (a rollback copies values) is never revoked. Revoking is idempotent at every rotator.
 */
export async function retirePreviousVersion(
  env: Bindings,
  params: RotationParams,
  plan: RotationPlan,
  version: number,
  endedAt: number,
): Promise<void> {
  const db = database(env.DB);
  const run = await findRun(db, params.runId);
  if (run?.state !== "in_progress") return;
  const row = await findCredential(db, params);
  const demoted = row ? await findVersionRow(db, row, plan.fromVersion) : undefined;
  const current = row ? await versionInStage(db, row, "current") : undefined;
  const keyId =
    demoted?.providerKeyId && demoted.stage !== "current" && demoted.providerKeyId !== current?.providerKeyId
      ? demoted.providerKeyId
      : null;
  if (row && demoted && keyId) await revokeAtProvider(env, db, params, plan, row, demoted, keyId);
  await commitWithAudit(
    env,
    rotationActor(params),
    [
      finishRunStatement(db, params.runId, { state: "completed" }, endedAt),
      completedEvent(db, params, version, endedAt),
    ],
    [
      {
        action: "credential.rotation_retire",
        targetType: "credential",
        targetId: params.subjectId,
        detail: {
          run_id: params.runId,
          version: plan.fromVersion,
          provider_key_id: keyId,
          revoked: keyId !== null,
        },
      },
    ],
  );
}

async function revokeAtProvider(
  env: Bindings,
  db: Database,
  params: RotationParams,
  plan: RotationPlan,
  row: CredentialRow,
  version: VersionRow,
  keyId: string,
): Promise<void> {
  const config = await requireConfig(db, row);
  if (plan.mode === "provider") {
    const rotator = providerRotator(row);
    await rotator.revoke(await rotatorCall(env, db, rotator, config), keyId);
    return;
  }
  await callExternalRotator(env, {
    ...(await externalEndpoint(env, db, config)),
    step: "revoke",
    credentialId: row.id,
    runId: params.runId,
    version: version.version,
    providerKeyId: keyId,
  });
}

/**
 * Step "compensate", on a failure before promote: the successor this run minted is revoked at the provider
 * (`revoke`) and its pending version removed; an entered successor (the admin's value) is only removed.
 * "current" is never touched. When revoking keeps failing, the Workflow calls this again without `revoke`:
 * the version goes all the same (a stale pending version would block every later rotation) and the key id
 * it returns, left alive at the provider, is named in the failure for a person to revoke.
 */
export async function discardPendingVersion(
  env: Bindings,
  params: RotationParams,
  plan: RotationPlan | null,
  revoke: boolean,
): Promise<string | null> {
  const db = database(env.DB);
  const run = await findRun(db, params.runId);
  if (run?.state !== "in_progress" || !run.successorId) return null;
  const row = await findCredential(db, params);
  const pending = row ? await findVersionRow(db, row, Number(run.successorId)) : undefined;
  if (!row || pending?.stage !== "pending") return null;
  const keyId =
    pending.createdBy === ROTATION_CREATOR && plan?.mode !== "entered" ? pending.providerKeyId : null;
  if (plan && keyId && revoke) await revokeAtProvider(env, db, params, plan, row, pending, keyId);
  await commitWithAudit(
    env,
    rotationActor(params),
    [dropPendingStatement(db, row, pending.version)],
    [
      {
        action: "credential.rotation_discard",
        targetType: "credential",
        targetId: row.id,
        detail: { run_id: params.runId, version: pending.version, provider_key_id: keyId, revoked: revoke },
      },
    ],
  );
  return revoke ? null : keyId;
}

/**
 * Step "fail": the run ends failed with its step and error (fixed texts, never a value), `rotation.failed` is
 * raised, and an automatic rotation is tried again ROTATION_RETRY_MS later: a scheduled one always, a manual
 * one only if nothing else is scheduled sooner. A failure after promote (retire) leaves the fresh period.
 */
export async function failCredentialRotation(
  env: Bindings,
  params: RotationParams,
  failure: { step: string; error: string },
): Promise<void> {
  const db = database(env.DB);
  const run = await findRun(db, params.runId);
  if (run?.state !== "in_progress") return;
  const error = failure.error.slice(0, MAX_ERROR_LENGTH);
  const row = await findCredential(db, params);
  const config = row ? await findRotationConfig(db, row) : undefined;
  const retryAt = params.now + ROTATION_RETRY_MS;
  const reschedule =
    row?.status === "active" &&
    config &&
    config.method !== "assisted" &&
    failure.step !== "retire" &&
    (run.trigger === "schedule" || config.nextRotationAt === null || config.nextRotationAt > retryAt);
  await commitWithAudit(
    env,
    rotationActor(params),
    [
      ...(reschedule
        ? [
            db
              .update(credentialRotations)
              .set({ nextRotationAt: retryAt, updatedAt: params.now })
              .where(
                and(
                  eq(credentialRotations.tenantId, params.tenantId),
                  eq(credentialRotations.credentialId, params.subjectId),
                ),
              ),
          ]
        : []),
      finishRunStatement(db, params.runId, { state: "failed", step: failure.step, error }, params.now),
      eventStatement(db, {
        ...credentialSubject(params),
        kind: "rotation.failed",
        dedupeKey: params.runId,
        detail: { step: failure.step, error },
        at: params.now,
      }),
    ],
    [
      {
        action: "credential.rotation_failed",
        targetType: "credential",
        targetId: params.subjectId,
        detail: { run_id: params.runId, step: failure.step, error },
      },
    ],
  );
  // After the commit, inside the Workflow's "fail" step: a retried step finds the alert already open.
  await evaluateTenantNow(env, params.tenantId, params.now);
}

/**
 * `POST /credentials/{id}/rotate`: claims a manual run and starts the same Workflow as a scheduled one. With
 * `fields` (assisted rotation, or any credential) the new value is validated and sealed here as the pending
 * version, in the claim's batch, so no plaintext ever enters the Workflow's params; the Workflow then tests
 * and promotes it. Without, the credential's automatic method mints one.
 */
export async function startCredentialRotation(
  env: Bindings,
  row: CredentialRow,
  actor: AuditActor,
  options: { fields?: Record<string, string>; now: number },
): Promise<{ runId: string; warnings: string[] }> {
  const db = database(env.DB);
  const { now } = options;
  await assertNoRotationRunning(db, row);
  const config = await findRotationConfig(db, row);
  if (!options.fields && (!config || config.method === "assisted")) {
    throw new ApiError("VALIDATION_FAILED", "This credential rotates by hand: send its new value.", {
      errors: [{ path: "fields", message: "required: the credential has no automatic rotation method" }],
    });
  }
  const params: RotationParams = {
    runId: rotationRunId(row.id, `m${now}`),
    tenantId: row.tenantId,
    subjectType: "credential",
    subjectId: row.id,
    now,
  };
  const warnings = options.fields
    ? assertValidFields(requireService(row.serviceId), row, options.fields)
    : [];
  const version = options.fields ? await nextVersionNumber(db, row) : null;
  const pending =
    options.fields && version !== null
      ? [
          ...(await sealedVersionStatements(await unseal(env, db), db, {
            tenantId: row.tenantId,
            credentialId: row.id,
            serviceId: row.serviceId,
            version,
            fields: options.fields,
            stage: "pending",
            createdBy: actor.actorId,
            now,
          })),
          runStepStatement(db, params.runId, "test", now, { successorId: String(version) }),
        ]
      : [];
  await commitWithAudit(
    env,
    actor,
    [claimRunStatement(db, { ...params, id: params.runId, trigger: "manual" }), ...pending],
    [
      {
        action: "credential.rotate",
        targetType: "credential",
        targetId: row.id,
        detail: {
          run_id: params.runId,
          version,
          method: options.fields ? "entered" : (config?.method ?? null),
        },
      },
    ],
  ).catch((error: unknown) => {
    // A second pending version (a rotation that claimed the credential meanwhile) breaks the stage index.
    if (String((error as { cause?: unknown }).cause ?? error).includes("UNIQUE")) {
      throw new ApiError("CONFLICT", "A rotation of this credential is in progress; wait for it to end.");
    }
    throw error;
  });
  if (!(await findRun(db, params.runId))) {
    // Another run claimed the credential between the check above and the batch: this claim was a no-op, and
    // a pending version it stored would block that run's own, so it goes again.
    if (version !== null) {
      await commitWithAudit(
        env,
        actor,
        [dropPendingStatement(db, row, version)],
        [
          {
            action: "credential.rotation_discard",
            targetType: "credential",
            targetId: row.id,
            detail: { run_id: params.runId, version, provider_key_id: null },
          },
        ],
      );
    }
    throw new ApiError("CONFLICT", "A rotation of this credential is in progress; wait for it to end.");
  }
  await env.CREDENTIAL_ROTATION.create({ id: params.runId, params });
  return { runId: params.runId, warnings };
}
