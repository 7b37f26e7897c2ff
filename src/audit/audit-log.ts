import { and, asc, eq, gt } from "drizzle-orm";
import { toHex, utf8 } from "../crypto/encoding";
import { type Database, database } from "../db/client";
import { auditHorizons, auditLog } from "../db/schema";
import type { KeyringEnv } from "../vault/kek-config";
import { unseal } from "../vault/keyring";
import { purposeKey } from "../vault/system-keys";

export const GENESIS_HASH = "0".repeat(64);

/** The last row of a tenant's chain: seq 0 and the genesis hash before the first row. */
export interface ChainHead {
  seq: number;
  hash: string;
}

export const GENESIS_HEAD: ChainHead = { seq: 0, hash: GENESIS_HASH };

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

type ChainKeyEnv = KeyringEnv & Pick<Env, "DB">;

/** The HMAC key of every tenant's audit chain, a system key of this purpose only (src/vault/system-keys.ts). */
export async function auditChainKey(env: ChainKeyEnv, db: Database = database(env.DB)): Promise<CryptoKey> {
  return purposeKey(await unseal(env, db), db, "audit-chain");
}

/**
 * HMAC-SHA-256 over the row and its predecessor's hash. A plain hash chain only proves the rows agree with
 * each other: whoever can write the table can edit a row and recompute every later hash. Keying it with a
 * key that never leaves the Worker makes a rewrite need MASTER_KEY as well as database access (a MAC, not a
 * digest: NIST SP 800-107 §5.3). The encoding is a JSON array with one fixed position per column, so no two
 * different rows share an input: strings are quoted and escaped, and `detail` is a nested JSON value.
 */
export async function chainHash(key: CryptoKey, row: Omit<AuditRow, "hash">): Promise<string> {
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
  return toHex(await crypto.subtle.sign("HMAC", key, utf8(canonical)));
}

type CommitEnv = Pick<Env, "AUDIT_CHAIN"> & ChainKeyEnv;

/**
 * Runs `statements` and their audit rows in one D1 batch, so both land or neither does. The batch is
 * executed by the tenant's AuditChain Durable Object, the chain's single writer.
 */
export async function commitWithAudit(
  env: CommitEnv,
  actor: AuditActor,
  statements: { toSQL(): { sql: string; params: unknown[] } }[],
  events: AuditEvent[],
): Promise<void> {
  // The Durable Object derives the chain key itself. Unsealing here first (cached per isolate) lets a sealed
  // service answer 503 SEALED: an ApiError thrown inside the object would lose its class crossing RPC.
  await unseal(env, database(env.DB));
  const bound = statements.map((statement) => {
    const { sql, params } = statement.toSQL();
    return { sql, params };
  });
  const outcome = await env.AUDIT_CHAIN.get(env.AUDIT_CHAIN.idFromName(actor.tenantId)).commit(
    actor,
    bound,
    events,
  );
  // The database's own message stays the cause, so callers can tell a known constraint from anything else.
  if (!outcome.ok) throw new Error("The audited batch failed.", { cause: new Error(outcome.error) });
}

/** Why the verifier stopped, named for the first bad seq. */
export const CHAIN_BREAKS = [
  "row missing",
  "link to previous row broken",
  "row content altered",
  "row differs from the recorded chain head",
  "tail truncated",
  "retention horizon not attested by the chain",
] as const;

export type ChainBreak = (typeof CHAIN_BREAKS)[number];

/** Present once retention has pruned the tenant's oldest rows: the walk started at `first_seq`. */
export interface VerdictHorizon {
  first_seq: number;
  moved_at: string;
}

export type ChainVerdict =
  | { ok: true; rows: number; horizon?: VerdictHorizon }
  | { ok: false; rows: number; broken_at_seq: number; reason: ChainBreak; horizon?: VerdictHorizon };

/** The audit action of a retention prune; its detail attests the horizon it set (src/monitoring/retention.ts). */
export const AUDIT_RETENTION_ACTION = "audit.retention";

/** Where a walk starts: the genesis, or the tenant's retention horizon. */
export interface ChainStart {
  seq: number;
  prevHash: string;
}

export async function chainStart(db: Database, tenantId: string) {
  const horizon = await db.select().from(auditHorizons).where(eq(auditHorizons.tenantId, tenantId)).get();
  const start: ChainStart = horizon
    ? { seq: horizon.firstSeq, prevHash: horizon.prevHash }
    : { seq: 1, prevHash: GENESIS_HASH };
  return { start, horizon: horizon ?? null };
}

/** What is wrong with `row` as the successor of `prevHash` at `expectedSeq`, or null when nothing is. */
export async function rowBreak(
  key: CryptoKey,
  row: AuditRow,
  expectedSeq: number,
  prevHash: string,
): Promise<ChainBreak | null> {
  if (row.seq !== expectedSeq) return "row missing";
  if (row.prevHash !== prevHash) return "link to previous row broken";
  const { hash, ...content } = row;
  if ((await chainHash(key, content)) !== hash) return "row content altered";
  return null;
}

/**
 * Walks a tenant's chain from its start (the first row, or the retention horizon: the first retained row must
 * chain from the horizon's `prev_hash`) and names the first row whose content, link or position is wrong,
 * then holds the end of the chain against the head its AuditChain object recorded. A horizon counts only when
 * the newest retention row in the chain, which no one can write without the chain key, names it: someone who
 * can write D1 could otherwise move the horizon up and delete history below it.
 */
export async function verifyAuditChain(env: CommitEnv, tenantId: string): Promise<ChainVerdict> {
  const db = database(env.DB);
  const key = await auditChainKey(env, db);
  // The head first, the rows second: a write landing in between only makes D1 longer than this head, which
  // is accepted below. Read the other way round it would look like a truncation.
  const head = await env.AUDIT_CHAIN.get(env.AUDIT_CHAIN.idFromName(tenantId)).head();
  const { start, horizon } = await chainStart(db, tenantId);
  const verdict = await walkChain(db, key, tenantId, head, start, horizon !== null);
  return horizon
    ? {
        ...verdict,
        horizon: { first_seq: horizon.firstSeq, moved_at: new Date(horizon.movedAt).toISOString() },
      }
    : verdict;
}

async function walkChain(
  db: Database,
  key: CryptoKey,
  tenantId: string,
  head: ChainHead,
  start: ChainStart,
  pruned: boolean,
): Promise<ChainVerdict> {
  let prevHash = start.prevHash;
  let expectedSeq = start.seq;
  let checked = 0;
  let attested: AuditRow["detail"] | null = null;
  for (;;) {
    const page = await db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.tenantId, tenantId), gt(auditLog.seq, expectedSeq - 1)))
      .orderBy(asc(auditLog.seq))
      .limit(500)
      .all();
    if (page.length === 0) break;
    for (const row of page) {
      const broken = await rowBreak(key, row, expectedSeq, prevHash);
      if (broken) {
        const at = broken === "row missing" ? expectedSeq : row.seq;
        return { ok: false, rows: checked, broken_at_seq: at, reason: broken };
      }
      const { hash } = row;
      if (row.action === AUDIT_RETENTION_ACTION) attested = row.detail;
      if (row.seq === head.seq && hash !== head.hash) {
        return {
          ok: false,
          rows: checked,
          broken_at_seq: row.seq,
          reason: "row differs from the recorded chain head",
        };
      }
      prevHash = hash;
      expectedSeq += 1;
      checked += 1;
    }
  }
  if (pruned && (attested?.first_seq !== start.seq || attested?.prev_hash !== start.prevHash)) {
    return {
      ok: false,
      rows: checked,
      broken_at_seq: start.seq,
      reason: "retention horizon not attested by the chain",
    };
  }
  // Every row present was checked. Rows past the recorded head are a batch whose head write was lost in a
  // crash (see AuditChain): they chain from the head, so they are accepted. A chain that ends before the head
  // lost its newest rows, which no per-row check can see.
  if (expectedSeq - 1 < head.seq) {
    return { ok: false, rows: checked, broken_at_seq: expectedSeq, reason: "tail truncated" };
  }
  return { ok: true, rows: checked };
}
