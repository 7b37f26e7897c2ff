import { and, eq, lt, max } from "drizzle-orm";
import { type AuditActor, commitWithAudit } from "../audit/audit-log";
import { openValues, sealWith } from "../credentials/sealed-fields";
import { IntegrityError } from "../crypto/envelope";
import { type Database, database } from "../db/client";
import { dataKeys } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import type { RotationParams } from "../lifecycle/rotation-params";
import {
  assertNoRunInProgress,
  beginRun,
  claimRunStatement,
  findRun,
  finishRunStatement,
  rotationRunId,
  runStepStatement,
} from "../lifecycle/rotation-runs";
import { ROTATION_RETRY_MS, RotationStopped, rotationActor } from "../lifecycle/rotation-steps";
import { WIZARD_MAX_AGE_MS } from "../wizard/wizard-session";
import { activeDek, dekFor, forgetDataKey, newDataKey } from "./data-keys";
import { unseal } from "./keyring";
import { blobsOf, SEALED_SOURCES, type SealedRow, type SealedSource, storedBlobs } from "./sealed-records";

/**
 * Sealed rows re-encrypted per Workflow step: one SELECT per sealed table, one D1 batch of as many
 * compare-and-set UPDATEs plus the encryption count. A tenant of 100,000 sealed rows takes about 1,000 steps, far
 * inside the 10,000 steps a Workflow instance may run.
 */
export const DEK_REENCRYPT_CHUNK = 100;
/** Sweep-and-retire rounds before a run gives up on a field that keeps arriving under a retiring DEK. */
export const DEK_RETIRE_ATTEMPTS = 5;

/** A DEK rotation's parameters: a rotation's, and the chunk size (tests cross many chunks with small ones). */
export interface DekRotationParams extends RotationParams {
  chunk?: number;
}

type Statement = Parameters<typeof commitWithAudit>[2][number];
const raw = (sql: string, params: unknown[]): Statement => ({ toSQL: () => ({ sql, params }) });

/** Whether this run is the one rotating the tenant's DEK (see `beginRun`). */
export function beginDekRotation(env: Bindings, params: DekRotationParams): Promise<boolean> {
  return beginRun(database(env.DB), params);
}

function activeRow(db: Database, tenantId: string) {
  return db
    .select()
    .from(dataKeys)
    .where(and(eq(dataKeys.tenantId, tenantId), eq(dataKeys.status, "active")))
    .get();
}

/**
 * Step "create": DEK v+1 becomes the active key and v starts retiring, in one audited batch with the run's
 * step, so every write from then on (`activeDek` reads the active version on each call) is sealed under v+1.
 * v keeps decrypting until the retire step. A retry finds the version this run created. Returns it.
 */
export async function createSuccessorDek(env: Bindings, params: DekRotationParams): Promise<number> {
  const db = database(env.DB);
  const run = await findRun(db, params.runId);
  if (run?.successorId) return Number(run.successorId);
  const active = await activeRow(db, params.tenantId);
  if (!active) throw new RotationStopped("The tenant has no active data key.");
  const keys = await unseal(env, db);
  try {
    await dekFor(keys, db, params.tenantId, active.version);
  } catch (error) {
    // A DEK that no longer unwraps is not replaced: its fields could never be moved to the new one, and a
    // corrupted key must surface as an error, not as a fresh key (threat model case 7).
    if (error instanceof IntegrityError) throw new RotationStopped("The active data key does not unwrap.");
    throw error;
  }
  const successor = await newDataKey(keys, params.tenantId, active.version + 1, params.now);
  const retireAfter = params.now + WIZARD_MAX_AGE_MS;
  const stillActive = "tenant_id = ? AND version = ? AND status = 'active'";
  await commitWithAudit(
    env,
    rotationActor(params),
    [
      // Both guarded on v still being the active DEK: a second rotation that read v too creates nothing.
      raw(
        `INSERT INTO data_keys (tenant_id, version, kek_provider, kek_version, wrapped_key, encryption_count,
                                status, next_rotation_at, retire_after, created_at)
         SELECT ?, ?, ?, ?, ?, 0, 'active', ?, NULL, ? WHERE EXISTS (SELECT 1 FROM data_keys WHERE ${stillActive})`,
        [
          successor.tenantId,
          successor.version,
          successor.kekProvider,
          successor.kekVersion,
          successor.wrappedKey,
          successor.nextRotationAt,
          successor.createdAt,
          params.tenantId,
          active.version,
        ],
      ),
      raw(
        `UPDATE data_keys SET status = 'retiring', retire_after = ?, next_rotation_at = NULL WHERE ${stillActive}`,
        [retireAfter, params.tenantId, active.version],
      ),
      runStepStatement(db, params.runId, "reencrypt", params.now, { successorId: String(successor.version) }),
    ],
    [
      {
        action: "data_key.rotate",
        targetType: "data_key",
        targetId: params.tenantId,
        detail: {
          version: successor.version,
          retiring_version: active.version,
          kek_provider: successor.kekProvider,
          kek_version: successor.kekVersion,
          run_id: params.runId,
        },
      },
    ],
  );
  return successor.version;
}

/** A rotation that stopped before a new DEK existed: the run fails and the active DEK is due again later. */
export async function failDekRotation(
  env: Bindings,
  params: DekRotationParams,
  failure: { step: string; error: string },
): Promise<void> {
  const db = database(env.DB);
  const run = await findRun(db, params.runId);
  const beforeCreate = !run?.successorId;
  await commitWithAudit(
    env,
    rotationActor(params),
    [
      ...(beforeCreate
        ? [
            db
              .update(dataKeys)
              .set({ nextRotationAt: params.now + ROTATION_RETRY_MS })
              .where(and(eq(dataKeys.tenantId, params.tenantId), eq(dataKeys.status, "active"))),
          ]
        : []),
      finishRunStatement(db, params.runId, { state: "failed", ...failure }, params.now),
    ],
    [
      {
        action: "data_key.rotation_failed",
        targetType: "data_key",
        targetId: params.tenantId,
        detail: { run_id: params.runId, step: failure.step, error: failure.error },
      },
    ],
  );
}

interface Found {
  source: SealedSource;
  row: SealedRow;
}

/** What one re-encryption chunk did: rows it read under an older DEK, and rows it moved to the new one. */
export interface ChunkResult {
  found: number;
  moved: number;
}

/** A chunk read and resealed, not yet written: `commit` writes it with compare-and-set. */
export interface PreparedChunk {
  found: number;
  commit(): Promise<ChunkResult>;
}

/**
 * Reads up to `chunk` of the tenant's sealed rows under a DEK older than `newVersion` (every SealedSource in
 * turn), opens each with the DEK its blobs name and reseals it under the active DEK, same record and
 * field names (the AAD binds both). Nothing is written until `commit`.
 */
export async function prepareReencryption(
  env: Bindings,
  tenantId: string,
  newVersion: number,
  chunk: number,
): Promise<PreparedChunk> {
  const found: Found[] = [];
  for (const source of SEALED_SOURCES) {
    const room = chunk - found.length;
    if (room <= 0) break;
    // In the order of the (tenant_id, dek_version) index, so the read stops after `room` rows: rows already
    // moved have left the range, and a chunk never sorts or re-reads the tenant's whole table.
    const rows = await env.DB.prepare(
      `SELECT tenant_id, dek_version, ${source.keyColumns.join(", ")}, ${source.blobColumn}
       FROM ${source.table} WHERE tenant_id = ?1 AND dek_version < ?2 ORDER BY dek_version LIMIT ?3`,
    )
      .bind(tenantId, newVersion, room)
      .all<SealedRow>();
    for (const row of rows.results) found.push({ source, row });
  }
  if (found.length === 0) return { found: 0, commit: async () => ({ found: 0, moved: 0 }) };

  const db = database(env.DB);
  const keys = await unseal(env, db);
  const opened: { item: Found; plain: Record<string, string> }[] = [];
  let fields = 0;
  for (const item of found) {
    const target = { tenantId, recordId: item.source.recordId(item.row) };
    const plain = await openValues(keys, db, target, blobsOf(item.source, item.row));
    fields += Object.keys(plain).length;
    opened.push({ item, plain });
  }
  const dek = await activeDek(keys, db, tenantId, fields);
  if (dek.version !== newVersion) {
    throw new Error(`The active data key is version ${dek.version}, not ${newVersion}.`);
  }
  const updates: D1PreparedStatement[] = [];
  for (const { item, plain } of opened) {
    const { source, row } = item;
    const sealed = await sealWith(dek, { tenantId, recordId: source.recordId(row) }, plain);
    const before = row[source.blobColumn] ?? null;
    const after = before === null ? null : storedBlobs(source, sealed);
    const keyMatch = source.keyColumns.map((column) => `AND ${column} = ?`).join(" ");
    // Compare-and-set: a row a writer changed since it was read (a new value, or sealed again) is left as
    // that writer made it; still under an old DEK, the next chunk reads it again.
    updates.push(
      env.DB.prepare(
        `UPDATE ${source.table} SET ${source.blobColumn} = ?, dek_version = ?
         WHERE tenant_id = ? AND dek_version = ? AND ${source.blobColumn} IS ? ${keyMatch}`,
      ).bind(
        after,
        dek.version,
        tenantId,
        row.dek_version,
        before,
        ...source.keyColumns.map((column) => row[column] ?? null),
      ),
    );
  }
  const count = dek.countEncryptions.toSQL();
  return {
    found: found.length,
    commit: async () => {
      const results = await env.DB.batch([...updates, env.DB.prepare(count.sql).bind(...count.params)]);
      const moved = results.slice(0, updates.length).reduce((sum, result) => sum + result.meta.changes, 0);
      return { found: found.length, moved };
    },
  };
}

/** One re-encryption chunk, read and written (a Workflow step). */
export async function reencryptChunk(
  env: Bindings,
  tenantId: string,
  newVersion: number,
  chunk = DEK_REENCRYPT_CHUNK,
): Promise<ChunkResult> {
  return (await prepareReencryption(env, tenantId, newVersion, chunk)).commit();
}

/**
 * Step "overlap": the run waits until the retiring DEK's `retire_after`, when no wizard can still hold a blob
 * sealed under it (wizards live at most WIZARD_MAX_AGE_MS). Idempotent: a run already waiting, or told by
 * the cron that the wait ended, keeps its step. Returns the end of the wait.
 */
export async function beginRetireWait(
  env: Bindings,
  params: DekRotationParams,
  newVersion: number,
): Promise<number> {
  const db = database(env.DB);
  const run = await findRun(db, params.runId);
  if ((run?.step === "overlap" || run?.step === "overlap_ended") && run.overlapEndsAt !== null) {
    return run.overlapEndsAt;
  }
  const latest = await db
    .select({ at: max(dataKeys.retireAfter) })
    .from(dataKeys)
    .where(retiringBelow(params.tenantId, newVersion))
    .get();
  const overlapEndsAt = latest?.at ?? params.now;
  await db.batch([runStepStatement(db, params.runId, "overlap", params.now, { overlapEndsAt })]);
  return overlapEndsAt;
}

/** The tenant's retiring DEKs that a rotation to `newVersion` replaces. */
function retiringBelow(tenantId: string, newVersion: number) {
  return and(
    eq(dataKeys.tenantId, tenantId),
    eq(dataKeys.status, "retiring"),
    lt(dataKeys.version, newVersion),
  );
}

/** The D1 error of the guard statement below, by which `retireOldDeks` tells "a field remains" from a fault. */
const FIELD_REMAINS = "NOT NULL constraint failed: data_keys.tenant_id";

/** Whether any sealed row of the tenant names `version` (SQL over every SealedSource, `?1` = tenant). */
const rowUnder = (version: string) =>
  SEALED_SOURCES.map(
    (source) => `EXISTS (SELECT 1 FROM ${source.table} WHERE tenant_id = ?1 AND dek_version = ${version})`,
  ).join(" OR ");

/**
 * Step "retire": deletes the tenant's retiring DEKs older than `newVersion` (crypto-shredding them: a blob
 * still naming one fails closed, threat model case 6) and completes the run, in one audited batch. The
 * batch aborts as a whole when any sealed row still names one of them, checked inside the batch, so a field
 * written under the old DEK by a late request is never left without its key. Returns the retired versions,
 * or null when a field remains (the caller sweeps again).
 */
export async function retireOldDeks(
  env: Bindings,
  params: DekRotationParams,
  newVersion: number,
  endedAt: number,
): Promise<number[] | null> {
  const db = database(env.DB);
  const retiring = await db
    .select({ version: dataKeys.version })
    .from(dataKeys)
    .where(retiringBelow(params.tenantId, newVersion))
    .all();
  const versions = retiring.map((row) => row.version);
  // Retired by an attempt that crashed before the engine recorded it: only the run's end may be missing.
  if (versions.length === 0) {
    await db.batch([finishRunStatement(db, params.runId, { state: "completed" }, endedAt)]);
    return [];
  }
  const retiringSql =
    "SELECT version FROM data_keys WHERE tenant_id = ?1 AND status = 'retiring' AND version < ?2";
  try {
    await commitWithAudit(
      env,
      rotationActor(params),
      [
        // Present exactly when a field remains, this row violates NOT NULL and aborts the batch (audit row
        // included): D1 has no conditional abort, and the DELETE's own guard alone would report success.
        raw(
          `INSERT INTO data_keys (tenant_id, version, kek_provider, kek_version, wrapped_key, status, created_at)
           SELECT NULL, 0, '', 0, '', 'retiring', 0
           WHERE EXISTS (SELECT 1 FROM (${retiringSql}) AS r WHERE ${rowUnder("r.version")})`,
          [params.tenantId, newVersion],
        ),
        raw(
          `DELETE FROM data_keys WHERE tenant_id = ?1 AND status = 'retiring' AND version < ?2
             AND NOT (${rowUnder("data_keys.version")})`,
          [params.tenantId, newVersion],
        ),
        finishRunStatement(db, params.runId, { state: "completed" }, endedAt),
      ],
      [
        {
          action: "data_key.retire",
          targetType: "data_key",
          targetId: params.tenantId,
          detail: { versions: versions.map(String), active_version: newVersion, run_id: params.runId },
        },
      ],
    );
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : "";
    if (cause.includes(FIELD_REMAINS)) return null;
    throw error;
  }
  for (const version of versions) forgetDataKey(params.tenantId, version);
  return versions;
}

/**
 * Starts a DEK rotation now (operator route): claims the run, audited as the operator's request, and starts
 * the same Workflow as the cron. The partial unique index of in-progress runs per subject refuses a second
 * run of the tenant, so of two racing requests one claims and the other is told a rotation is in progress.
 */
export async function rotateDekNow(
  env: Bindings,
  actor: AuditActor,
  now: number,
): Promise<{ runId: string }> {
  const db = database(env.DB);
  const tenantId = actor.tenantId;
  if (!(await activeRow(db, tenantId))) throw new ApiError("NOT_FOUND", "No such tenant.");
  await assertNoRunInProgress(db, { tenantId, id: tenantId }, IN_PROGRESS);
  const params: DekRotationParams = {
    runId: rotationRunId(tenantId, `m${now}`),
    tenantId,
    subjectType: "data_key",
    subjectId: tenantId,
    now,
  };
  await commitWithAudit(
    env,
    actor,
    [claimRunStatement(db, { ...params, id: params.runId, trigger: "manual" })],
    [
      {
        action: "data_key.rotation_requested",
        targetType: "data_key",
        targetId: tenantId,
        detail: { run_id: params.runId },
      },
    ],
  );
  // Another request claimed the tenant between the check and the claim: its run is the one in progress.
  if (!(await findRun(db, params.runId))) throw new ApiError("CONFLICT", IN_PROGRESS);
  await env.DEK_ROTATION.create({ id: params.runId, params });
  return { runId: params.runId };
}

const IN_PROGRESS = "A data key rotation of this tenant is already in progress.";
