import { and, asc, eq, gte, lte, max } from "drizzle-orm";
import { CompactSign } from "jose";
import { utf8 } from "../crypto/encoding";
import { database } from "../db/client";
import { auditLog } from "../db/schema";
import {
  AUDIT_EXPORT_FORMAT,
  AUDIT_SEAL_ALG,
  AUDIT_SEAL_TYPE,
  type ExportRow,
  type SealChainVerdict,
  type SealPayload,
  sealLine,
  signedRowLine,
} from "./audit-export-format";
import { auditSealKey, signWithSealKey } from "./audit-export-key";
import {
  type AuditActor,
  auditChainKey,
  type ChainBreak,
  chainStart,
  commitWithAudit,
  rowBreak,
  verifyAuditChain,
} from "./audit-log";

/** Rows read from D1 per page: the export never holds more than this in memory. */
export const EXPORT_PAGE_ROWS = 500;
/**
 * Rows per export: signing a line costs ~40 µs of CPU, so one export stays far inside a Worker's CPU budget.
 * A longer log is exported in ranges: the seal's `to_seq` says where this one stopped.
 */
export const MAX_EXPORT_ROWS = 100_000;

export type AuditExportEnv = Parameters<typeof verifyAuditChain>[0];

export interface ExportRange {
  fromSeq?: number;
  toSeq?: number;
}

type AuditRow = typeof auditLog.$inferSelect;

function exportRow(row: AuditRow): ExportRow {
  return {
    type: "row",
    seq: row.seq,
    time: new Date(row.at).toISOString(),
    actor: { type: row.actorType, id: row.actorId },
    action: row.action,
    subject: { type: row.targetType, id: row.targetId },
    request_id: row.requestId,
    detail: row.detail,
    prev_hash: row.prevHash,
    hash: row.hash,
  };
}

/**
 * The tenant's audit rows in `range` as signed NDJSON lines and a final seal (audit-export-format.ts), as a
 * stream read from D1 one page at a time. Before the first byte, the real chain verifier walks the whole
 * chain, and while streaming every exported row is checked again (keyed hash and link) against the row
 * before it: the seal carries the verdict, so a broken chain is exported as evidence and marked, never
 * passed off as sound. The range is fixed when the export starts (rows appended meanwhile are not in it),
 * and the export is itself audited (`audit.export`, after that snapshot, so it never contains its own row).
 */
export async function openAuditExport(
  env: AuditExportEnv,
  actor: AuditActor,
  range: ExportRange,
  now = Date.now(),
): Promise<ReadableStream<Uint8Array>> {
  const tenantId = actor.tenantId;
  const db = database(env.DB);
  const [chainKey, sealKey] = await Promise.all([auditChainKey(env, db), auditSealKey(env, db)]);
  const walked = await verifyAuditChain(env, tenantId);
  const { start } = await chainStart(db, tenantId);
  const newest =
    (
      await db
        .select({ seq: max(auditLog.seq) })
        .from(auditLog)
        .where(eq(auditLog.tenantId, tenantId))
        .get()
    )?.seq ?? 0;
  const fromSeq = Math.max(range.fromSeq ?? start.seq, start.seq);
  const toSeq = Math.min(range.toSeq ?? newest, newest, fromSeq + MAX_EXPORT_ROWS - 1);

  await commitWithAudit(
    env,
    actor,
    [],
    [
      {
        action: "audit.export",
        targetType: "tenant",
        targetId: tenantId,
        detail: { from_seq: fromSeq, to_seq: Math.max(toSeq, fromSeq - 1) },
      },
    ],
  );

  let cursor = fromSeq;
  let expectedSeq = fromSeq;
  let prevHash: string | null =
    fromSeq === start.seq
      ? start.prevHash
      : ((
          await db
            .select({ hash: auditLog.hash })
            .from(auditLog)
            .where(and(eq(auditLog.tenantId, tenantId), eq(auditLog.seq, fromSeq - 1)))
            .get()
        )?.hash ?? null);
  let firstPrevHash: string | null = null;
  let headHash: string | null = null;
  let rows = 0;
  let lastSeq = fromSeq - 1;
  let streamBreak: { broken_at_seq: number; reason: ChainBreak } | null = null;
  const encoder = new TextEncoder();
  const sign = (data: Uint8Array<ArrayBuffer>) => signWithSealKey(sealKey, data);

  const seal = async (): Promise<string> => {
    const chain: SealChainVerdict = !walked.ok
      ? { ok: false, broken_at_seq: walked.broken_at_seq, reason: walked.reason }
      : streamBreak
        ? { ok: false, ...streamBreak }
        : { ok: true };
    if (walked.horizon) chain.horizon = walked.horizon;
    const payload: SealPayload = {
      typ: AUDIT_SEAL_TYPE,
      format: AUDIT_EXPORT_FORMAT,
      tenant: tenantId,
      from_seq: fromSeq,
      to_seq: lastSeq,
      rows,
      first_prev_hash: firstPrevHash,
      head_hash: headHash,
      chain,
      sealed_at: new Date(now).toISOString(),
    };
    const jws = await new CompactSign(utf8(JSON.stringify(payload)))
      .setProtectedHeader({ alg: AUDIT_SEAL_ALG, kid: sealKey.publicJwk.kid, typ: AUDIT_SEAL_TYPE })
      .sign(sealKey.privateKey);
    return sealLine(jws);
  };

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const page =
        cursor > toSeq
          ? []
          : await db
              .select()
              .from(auditLog)
              .where(
                and(eq(auditLog.tenantId, tenantId), gte(auditLog.seq, cursor), lte(auditLog.seq, toSeq)),
              )
              .orderBy(asc(auditLog.seq))
              .limit(EXPORT_PAGE_ROWS)
              .all();
      let text = "";
      for (const row of page) {
        // Without the row before the range (a gap the walk reports), the first row is held to its own link.
        const broken = await rowBreak(chainKey, row, expectedSeq, prevHash ?? row.prevHash);
        if (broken && !streamBreak) {
          streamBreak = { broken_at_seq: broken === "row missing" ? expectedSeq : row.seq, reason: broken };
        }
        if (rows === 0) firstPrevHash = row.prevHash;
        text += await signedRowLine(tenantId, exportRow(row), sign);
        rows += 1;
        lastSeq = row.seq;
        headHash = row.hash;
        prevHash = row.hash;
        expectedSeq = row.seq + 1;
      }
      const done = page.length < EXPORT_PAGE_ROWS;
      cursor = lastSeq + 1;
      if (done) text += await seal();
      if (text) controller.enqueue(encoder.encode(text));
      if (done) controller.close();
    },
  });
}
