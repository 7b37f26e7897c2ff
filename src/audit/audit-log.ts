import { and, asc, desc, eq, gt } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
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

const MAX_ATTEMPTS = 12;

/**
 * Runs `statements` and their audit rows in one D1 batch: both land or neither does. The chain's
 * next seq is claimed optimistically; a concurrent writer makes the (tenant, seq) primary key
 * collide, the whole batch rolls back, and we rebuild on the new head.
 */
export async function commitWithAudit(
  db: Database,
  actor: AuditActor,
  statements: BatchItem<"sqlite">[],
  events: AuditEvent[],
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const head = await db
      .select({ seq: auditLog.seq, hash: auditLog.hash })
      .from(auditLog)
      .where(eq(auditLog.tenantId, actor.tenantId))
      .orderBy(desc(auditLog.seq))
      .limit(1)
      .get();
    let prevHash = head?.hash ?? GENESIS_HASH;
    let seq = head?.seq ?? 0;
    const rows: AuditRow[] = [];
    for (const event of events) {
      seq += 1;
      const row = {
        tenantId: actor.tenantId,
        seq,
        at: Date.now(),
        actorType: actor.actorType,
        actorId: actor.actorId,
        action: event.action,
        targetType: event.targetType,
        targetId: event.targetId,
        requestId: actor.requestId,
        detail: event.detail ?? {},
        prevHash,
      };
      prevHash = await chainHash(row);
      rows.push({ ...row, hash: prevHash });
    }
    // One statement per row: D1 caps bound parameters per statement at 100.
    const all = [...statements, ...rows.map((row) => db.insert(auditLog).values(row))];
    const [first, ...rest] = all;
    if (!first) return;
    try {
      await db.batch([first, ...rest]);
      return;
    } catch (error) {
      if (attempt < MAX_ATTEMPTS && isAuditSeqConflict(error)) {
        // Jittered backoff so colliding writers spread out instead of colliding again.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
        continue;
      }
      throw error;
    }
  }
}

function isAuditSeqConflict(error: unknown): boolean {
  const message = String((error as { cause?: unknown })?.cause ?? error);
  return message.includes("UNIQUE constraint failed: audit_log.tenant_id, audit_log.seq");
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
