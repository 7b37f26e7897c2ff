import { eq } from "drizzle-orm";
import { CompactSign } from "jose";
import { AUDIT_SEAL_ALG } from "../audit/audit-export-format";
import { auditSealKey } from "../audit/audit-export-key";
import { type AuditActor, commitWithAudit } from "../audit/audit-log";
import { secretsEqual } from "../crypto/constant-time";
import { toHex, utf8 } from "../crypto/encoding";
import { newId } from "../crypto/random";
import { database } from "../db/client";
import { tenantErasures, tenants } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import { clearKeyCache } from "../keys/key-record";
import { forgetDataKey } from "../vault/data-keys";
import { unseal } from "../vault/keyring";
import { purposeKey } from "../vault/system-keys";
import { WIZARD_IDLE_MS } from "../wizard/wizard-session";
import type { ErasureStep } from "./erasure-kinds";
import { CLEARED_OBJECTS, TENANT_TABLES, type TenantRow, type TenantTable } from "./tenant-tables";

/** Rows deleted per Workflow step and table (TenantTable.chunk overrides it where a row costs an object call). */
export const ERASURE_CHUNK = 500;

/**
 * How long the Workflow waits after its first deletion pass before the final sweep. No request of the tenant
 * authenticates after the request, so by then every wizard session of the tenant has been idle for a day and
 * its alarm has wiped it (WIZARD_IDLE_MS: uncommitted sessions are in no D1 table the erasure could read),
 * and any request or job that read the tenant before the request has long finished; the hour is margin for
 * a request still running when the erasure began and for the alarm's retries.
 */
export const ERASURE_SETTLE_MS = WIZARD_IDLE_MS + 60 * 60_000;

/** The event that ends the settle wait early (tests only; deployed, the wait times out). */
export const ERASURE_SETTLED = "erasure-settled";

/** Passes over the tenant's tables per phase before the erasure gives up on rows that keep arriving. */
export const ERASURE_MAX_PASSES = 5;

export type ErasureRow = typeof tenantErasures.$inferSelect;

/** The Workflow's parameters; the instance id is the erasure id, one per tenant ever. */
export interface ErasureParams {
  erasureId: string;
  tenantId: string;
  requestedAt: number;
  /** Tests cross many chunks with small ones. */
  chunk?: number;
}

export const erasureParams = (row: ErasureRow): ErasureParams => ({
  erasureId: row.id,
  tenantId: row.tenantId,
  requestedAt: row.requestedAt,
});

const erasureActor = (tenantId: string, requestId: string): AuditActor => ({
  tenantId,
  actorType: "system",
  actorId: "erasure",
  requestId,
});

export function findErasure(env: Pick<Bindings, "DB">, tenantId: string): Promise<ErasureRow | undefined> {
  const db = database(env.DB);
  return db.select().from(tenantErasures).where(eq(tenantErasures.tenantId, tenantId)).get();
}

type Statement = Parameters<typeof commitWithAudit>[2][number];
const raw = (sql: string, params: unknown[]): Statement => ({ toSQL: () => ({ sql, params }) });

/**
 * Step 1, run by the DELETE request itself so that it holds before the request answers: the erasure row, and
 * in the same audited batch every key of the tenant disabled and every schedule of the tenant cleared. Keys
 * and sessions are refused on the next call because the key rows say so: authentication gains no extra check
 * and verify's hot path no extra read (a session is judged by its key's row on every request). The verify
 * caches of other isolates keep a key for at most KEY_PROPAGATION_BOUND_MS, as after a revocation; this
 * isolate drops its cache at once. Migration 0010's triggers keep the keys disabled and let no new key or DEK be created for
 * the tenant from here on. A repeated request returns the existing erasure.
 */
export async function requestErasure(
  env: Bindings,
  tenantId: string,
  requestId: string,
  now: number,
): Promise<ErasureRow> {
  const existing = await findErasure(env, tenantId);
  if (existing) return existing;
  const db = database(env.DB);
  const tenant = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).get();
  if (!tenant) throw new ApiError("NOT_FOUND", "No such tenant.");
  const row: ErasureRow = {
    tenantId,
    id: newId("era"),
    state: "erasing",
    step: "refused",
    requestedAt: now,
    dekDestroyedAt: null,
    dataKeysDestroyed: 0,
    rowsDeletedAt: null,
    completedAt: null,
    rowsDeleted: {},
    objectsCleared: Object.fromEntries(CLEARED_OBJECTS.map((kind) => [kind, 0])),
    auditHeadSeq: null,
    auditHeadHash: null,
    receiptMac: null,
  };
  try {
    await commitWithAudit(
      env,
      { tenantId, actorType: "operator", actorId: "bootstrap", requestId },
      [
        db.insert(tenantErasures).values(row),
        raw("UPDATE api_keys SET enabled = 0, next_rotation_at = NULL, updated_at = ? WHERE tenant_id = ?", [
          now,
          tenantId,
        ]),
        raw("UPDATE credentials SET next_test_at = NULL WHERE tenant_id = ?", [tenantId]),
        raw("UPDATE credential_rotations SET next_rotation_at = NULL WHERE tenant_id = ?", [tenantId]),
        raw("UPDATE data_keys SET next_rotation_at = NULL WHERE tenant_id = ?", [tenantId]),
      ],
      [
        {
          action: "tenant.erasure_requested",
          targetType: "tenant",
          targetId: tenantId,
          detail: { erasure_id: row.id },
        },
      ],
    );
  } catch (error) {
    // A concurrent request recorded the erasure first: that one is the erasure.
    const winner = await findErasure(env, tenantId);
    if (winner) return winner;
    throw error;
  }
  clearKeyCache();
  return row;
}

/**
 * Makes sure the erasure's Workflow runs: creates the instance (its id is the erasure id, so a second
 * start is refused by the platform), or restarts one that ended in error. A completed erasure needs nothing.
 */
export async function startErasure(env: Bindings, row: ErasureRow): Promise<void> {
  if (row.state === "completed") return;
  // createBatch reports an existing id as a per-instance error instead of throwing (as the scheduler relies on).
  const { errors } = await env.TENANT_ERASURE.createBatch({
    instances: [{ id: row.id, params: erasureParams(row) }],
  });
  const [error] = errors;
  if (!error) return;
  if (!error.message.includes("already_exists")) throw new Error(error.message);
  const instance = await env.TENANT_ERASURE.get(row.id);
  const { status } = await instance.status();
  if (status === "errored" || status === "terminated") await instance.restart();
}

/**
 * Step 2, crypto-shredding: every DEK row of the tenant is deleted, in one audited batch with the moment it
 * happened. From this batch on no ciphertext of the tenant decrypts anywhere: the DEKs existed only wrapped in
 * these rows (NIST SP 800-88 Rev. 1 §2.6, cryptographic erase). This isolate drops the unwrapped copies it
 * cached; other isolates' copies expire within the DEK cache's 10 minutes and no request of the tenant reaches
 * them (step 1). D1 Time Travel can restore the database as it was up to 30 days back, wrapped DEKs included:
 * docs/erasure.md says so. Idempotent.
 */
export async function shredDataKeys(env: Bindings, params: ErasureParams): Promise<number> {
  const row = await findErasure(env, params.tenantId);
  if (!row) throw new Error("The erasure row is missing.");
  if (row.dekDestroyedAt !== null) return row.dataKeysDestroyed;
  const { results } = await env.DB.prepare("SELECT version FROM data_keys WHERE tenant_id = ?")
    .bind(params.tenantId)
    .all<{ version: number }>();
  await commitWithAudit(
    env,
    erasureActor(params.tenantId, params.erasureId),
    [
      raw("DELETE FROM data_keys WHERE tenant_id = ?", [params.tenantId]),
      // changes(): the rows the DELETE just before it removed, counted in the same transaction.
      raw(
        `UPDATE tenant_erasures SET dek_destroyed_at = ?, data_keys_destroyed = changes(), step = 'shredded'
         WHERE tenant_id = ? AND dek_destroyed_at IS NULL`,
        [Date.now(), params.tenantId],
      ),
    ],
    [
      {
        action: "data_key.destroy",
        targetType: "tenant",
        targetId: params.tenantId,
        detail: { erasure_id: params.erasureId, data_keys: results.length },
      },
    ],
  );
  for (const { version } of results) forgetDataKey(params.tenantId, version);
  return results.length;
}

/**
 * Before the tenant's audit log is deleted: records its last row (seq and chain MAC, which binds every row
 * before it) on the receipt, once, and clears the tenant's AuditChain object, which holds the chain head.
 * Run again by the sweep, for an append that landed after the first run. Idempotent.
 */
export async function closeAuditChain(env: Bindings, params: ErasureParams): Promise<void> {
  const last = await env.DB.prepare(
    "SELECT seq, hash FROM audit_log WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
  )
    .bind(params.tenantId)
    .first<{ seq: number; hash: string }>();
  if (last) {
    await env.DB.prepare(
      `UPDATE tenant_erasures SET audit_head_seq = ?, audit_head_hash = ?
       WHERE tenant_id = ? AND audit_head_seq IS NULL`,
    )
      .bind(last.seq, last.hash, params.tenantId)
      .run();
  }
  await env.AUDIT_CHAIN.get(env.AUDIT_CHAIN.idFromName(params.tenantId)).erase();
  await env.DB.prepare(
    `UPDATE tenant_erasures SET objects_cleared = json_set(objects_cleared, '$.audit_chain', 1)
     WHERE tenant_id = ?`,
  )
    .bind(params.tenantId)
    .run();
}

/** Rows per chunk of one table in one erasure. */
export const chunkOf = (params: ErasureParams, spec: TenantTable): number =>
  params.chunk ?? spec.chunk ?? ERASURE_CHUNK;

/** The tenant tables that still hold a row of the tenant: one index seek per table, in one batch. */
export async function tablesWithRows(env: Bindings, params: ErasureParams): Promise<string[]> {
  const answers = await env.DB.batch<{ found: number }>(
    TENANT_TABLES.map((spec) =>
      env.DB.prepare(
        `SELECT EXISTS (SELECT 1 FROM ${spec.table} WHERE ${spec.tenantColumn} = ?) AS found`,
      ).bind(params.tenantId),
    ),
  );
  return TENANT_TABLES.filter((_, i) => answers[i]?.results[0]?.found === 1).map((spec) => spec.table);
}

export interface ChunkOutcome {
  deleted: number;
  /** The tenant row could not go yet: a row referencing it arrived after its table's pass. */
  blocked: boolean;
}

/**
 * Step 3, one bounded chunk of one table: reads up to `chunk` of the tenant's rows, clears the Durable
 * Objects that belong to them, then deletes exactly those rows in one batch with their count on the receipt,
 * so a crash anywhere re-runs the chunk and counts nothing twice.
 *
 * These deletions do not go through commitWithAudit: what they would append to is the tenant's own audit log,
 * which is among what is erased. Their record is the receipt, updated in the same batch as each deletion.
 */
export async function eraseChunk(
  env: Bindings,
  params: ErasureParams,
  spec: TenantTable,
  step: ErasureStep,
): Promise<ChunkOutcome> {
  const chunk = chunkOf(params, spec);
  const columns = ["rowid AS row_id", ...(spec.objects?.columns ?? [])].join(", ");
  // Table and column names come from TENANT_TABLES, never from input.
  const { results } = await env.DB.prepare(
    `SELECT ${columns} FROM ${spec.table} WHERE ${spec.tenantColumn} = ?1 LIMIT ?2`,
  )
    .bind(params.tenantId, chunk)
    .all<TenantRow>();
  if (results.length === 0) return { deleted: 0, blocked: false };
  const cleared = spec.objects ? await spec.objects.clear(env, params.tenantId, results) : 0;
  const objectPath = `$.${spec.objects?.kind ?? "none"}`;
  try {
    const [deletion] = await env.DB.batch([
      env.DB.prepare(
        `DELETE FROM ${spec.table}
         WHERE ${spec.tenantColumn} = ?1 AND rowid IN (SELECT value FROM json_each(?2))`,
      ).bind(params.tenantId, JSON.stringify(results.map((row) => row.row_id))),
      env.DB.prepare(
        `UPDATE tenant_erasures SET
           rows_deleted = json_set(rows_deleted, ?2, coalesce(json_extract(rows_deleted, ?2), 0) + changes()),
           objects_cleared = CASE WHEN ?3 > 0
             THEN json_set(objects_cleared, ?4, coalesce(json_extract(objects_cleared, ?4), 0) + ?3)
             ELSE objects_cleared END,
           step = ?5
         WHERE tenant_id = ?1`,
      ).bind(params.tenantId, `$.${spec.table}`, cleared, objectPath, step),
    ]);
    return { deleted: deletion?.meta.changes ?? 0, blocked: false };
  } catch (error) {
    // Only the tenant row has dependants (foreign keys): a row that arrived after its table's pass is deleted
    // by the next pass, and the tenant row with it.
    if (spec.table === "tenants" && String(error).includes("FOREIGN KEY"))
      return { deleted: 0, blocked: true };
    throw error;
  }
}

/** Marks where the Workflow is, and when the first full pass left nothing of the tenant. */
export async function markStep(env: Bindings, params: ErasureParams, step: ErasureStep): Promise<void> {
  await env.DB.prepare(
    `UPDATE tenant_erasures SET step = ?2,
       rows_deleted_at = CASE WHEN ?2 = 'settling' THEN coalesce(rows_deleted_at, ?3) ELSE rows_deleted_at END
     WHERE tenant_id = ?1 AND state = 'erasing'`,
  )
    .bind(params.tenantId, step, Date.now())
    .run();
}

/**
 * The receipt's fixed encoding: one position per field, objects with sorted keys, so the MAC input of a
 * receipt never depends on how its JSON columns happen to be ordered.
 */
function receiptMacInput(row: ErasureRow): string {
  const sorted = (record: Record<string, number>) =>
    Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([
    "kw-erasure-receipt",
    1,
    row.id,
    row.tenantId,
    row.requestedAt,
    row.dekDestroyedAt,
    row.dataKeysDestroyed,
    row.rowsDeletedAt,
    row.completedAt,
    sorted(row.rowsDeleted),
    sorted(row.objectsCleared),
    row.auditHeadSeq,
    row.auditHeadHash,
  ]);
}

async function receiptMac(env: Bindings, row: ErasureRow): Promise<string> {
  const db = database(env.DB);
  const key = await purposeKey(await unseal(env, db), db, "erasure-receipt");
  return toHex(await crypto.subtle.sign("HMAC", key, utf8(receiptMacInput(row))));
}

/**
 * Step 5: the receipt. Its MAC, under a system key that never leaves the Worker, lets Keywarden tell later
 * whether anyone with only database access edited it. Idempotent.
 */
export async function completeErasure(env: Bindings, params: ErasureParams): Promise<void> {
  const row = await findErasure(env, params.tenantId);
  if (!row) throw new Error("The erasure row is missing.");
  if (row.state === "completed") return;
  const completed: ErasureRow = {
    ...row,
    state: "completed",
    step: "completed",
    completedAt: Date.now(),
    rowsDeletedAt: row.rowsDeletedAt ?? Date.now(),
  };
  const mac = await receiptMac(env, completed);
  await env.DB.prepare(
    `UPDATE tenant_erasures SET state = 'completed', step = 'completed', completed_at = ?, rows_deleted_at = ?,
       receipt_mac = ? WHERE tenant_id = ? AND state = 'erasing'`,
  )
    .bind(completed.completedAt, completed.rowsDeletedAt, mac, params.tenantId)
    .run();
}

/** The JWS `typ` of a signed receipt: a verifier checks it, so no other Keywarden signature passes for one. */
export const ERASURE_RECEIPT_TYP = "keywarden-erasure-receipt";

/**
 * A compact JWS (RFC 7515, EdDSA per RFC 8037) over the receipt, by the deployment's audit export key, so
 * anyone can verify it offline with the public key of GET /api/v1/audit/export-key: the receipt is evidence
 * for the tenant and its auditors, not only for Keywarden. Ed25519 signatures are deterministic, so signing
 * the same intact receipt again gives the same JWS; only a receipt whose MAC still holds is signed.
 */
export async function signReceipt(env: Bindings, receipt: Record<string, unknown>): Promise<string> {
  const key = await auditSealKey(env);
  return new CompactSign(utf8(JSON.stringify(receipt)))
    .setProtectedHeader({ alg: AUDIT_SEAL_ALG, kid: key.publicJwk.kid, typ: ERASURE_RECEIPT_TYP })
    .sign(key.privateKey);
}

/** Whether a completed receipt still carries the MAC Keywarden wrote; null while the erasure runs. */
export async function receiptIntact(env: Bindings, row: ErasureRow): Promise<boolean | null> {
  if (row.state !== "completed" || row.receiptMac === null) return null;
  return secretsEqual(await receiptMac(env, row), row.receiptMac);
}
