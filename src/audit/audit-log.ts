import { and, asc, eq, gt } from "drizzle-orm";
import { toHex, utf8 } from "../crypto/encoding";
import type { Database } from "../db/client";
import { auditLog } from "../db/schema";

export const GENESIS_HASH = "0".repeat(64);

/**
 * Only primitives, chosen by the caller from an allowlist: secrets, ciphertexts and hashes of
 * secret material never enter the audit log (OWASP Logging CS "data to exclude").
 */
export type AuditDetail = Record<string, string | number | boolean | null | string[]>;

export interface AuditEvent {
  action: string;
  targetType: string;
  targetId: string;
  detail?: AuditDetail;
}

export interface AuditActor {
  tenantId: string;
  actorType: "key" | "session" | "operator" | "system";
  actorId: string;
  requestId: string;
}

type AuditRow = typeof auditLog.$inferSelect;

export async function chainHash(row: Omit<AuditRow, "hash">): Promise<string> {
  const canonical = JSON.stringify([
    row.prevHash,
    row.tenantId,
    row.seq,
    row.at,
    row.actorType,
    row.actorId,
    row.action,
    row.targetType,
    row.targetId,
    row.requestId,
    row.detail,
  ]);
  return toHex(await crypto.subtle.digest("SHA-256", utf8(canonical)));
}

/**
 * Runs `statements` and their audit rows in one D1 batch, so both land or neither does. The batch is
 * executed by the tenant's AuditChain Durable Object, the chain's single writer.
 */
export async function commitWithAudit(
  env: Pick<Env, "AUDIT_CHAIN">,
  actor: AuditActor,
  statements: { toSQL(): { sql: string; params: unknown[] } }[],
  events: AuditEvent[],
): Promise<void> {
  const bound = statements.map((statement) => {
    const { sql, params } = statement.toSQL();
    return { sql, params };
  });
  await env.AUDIT_CHAIN.get(env.AUDIT_CHAIN.idFromName(actor.tenantId)).commit(actor, bound, events);
}

export type ChainVerdict =
  | { ok: true; rows: number }
  | { ok: false; rows: number; broken_at_seq: number; reason: string };

/** Walks a tenant's chain and names the first row whose content, link or position is wrong. */
export async function verifyAuditChain(db: Database, tenantId: string): Promise<ChainVerdict> {
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let checked = 0;
  for (;;) {
    const page = await db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.tenantId, tenantId), gt(auditLog.seq, expectedSeq - 1)))
      .orderBy(asc(auditLog.seq))
      .limit(500)
      .all();
    if (page.length === 0) return { ok: true, rows: checked };
    for (const row of page) {
      if (row.seq !== expectedSeq) {
        return { ok: false, rows: checked, broken_at_seq: expectedSeq, reason: "row missing" };
      }
      if (row.prevHash !== prevHash) {
        return { ok: false, rows: checked, broken_at_seq: row.seq, reason: "link to previous row broken" };
      }
      const { hash, ...content } = row;
      if ((await chainHash(content)) !== hash) {
        return { ok: false, rows: checked, broken_at_seq: row.seq, reason: "row content altered" };
      }
      prevHash = hash;
      expectedSeq += 1;
      checked += 1;
    }
  }
}
