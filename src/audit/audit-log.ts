import { and, asc, eq, gt } from "drizzle-orm";
import { toHex, utf8 } from "../crypto/encoding";
import { type Database, database } from "../db/client";
import { auditLog } from "../db/schema";
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
] as const;

export type ChainBreak = (typeof CHAIN_BREAKS)[number];

export type ChainVerdict =
  | { ok: true; rows: number }
  | { ok: false; rows: number; broken_at_seq: number; reason: ChainBreak };

/**
 * Walks a tenant's chain from the first row and names the first row whose content, link or position is
 * wrong, then holds the end of the chain against the head its AuditChain object recorded.
 */
export async function verifyAuditChain(env: CommitEnv, tenantId: string): Promise<ChainVerdict> {
  const db = database(env.DB);
  const key = await auditChainKey(env, db);
  // The head first, the rows second: a write landing in between only makes D1 longer than this head, which
  // is accepted below. Read the other way round it would look like a truncation.
  const head = await env.AUDIT_CHAIN.get(env.AUDIT_CHAIN.idFromName(tenantId)).head();
  return walkChain(db, key, tenantId, head);
}

async function walkChain(
  db: Database,
  key: CryptoKey,
  tenantId: string,
  head: ChainHead,
): Promise<ChainVerdict> {
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
    if (page.length === 0) break;
    for (const row of page) {
      if (row.seq !== expectedSeq) {
        return { ok: false, rows: checked, broken_at_seq: expectedSeq, reason: "row missing" };
      }
      if (row.prevHash !== prevHash) {
        return { ok: false, rows: checked, broken_at_seq: row.seq, reason: "link to previous row broken" };
      }
      const { hash, ...content } = row;
      if ((await chainHash(key, content)) !== hash) {
        return { ok: false, rows: checked, broken_at_seq: row.seq, reason: "row content altered" };
      }
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
  // Every row present was checked. Rows past the recorded head are a batch whose head write was lost in a
  // crash (see AuditChain): they chain from the head, so they are accepted. A chain that ends before the head
  // lost its newest rows, which no per-row check can see.
  if (checked < head.seq) {
    return { ok: false, rows: checked, broken_at_seq: checked + 1, reason: "tail truncated" };
  }
  return { ok: true, rows: checked };
}
