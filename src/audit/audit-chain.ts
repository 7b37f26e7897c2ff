import { DurableObject } from "cloudflare:workers";
import {
  type AuditActor,
  type AuditEvent,
  auditChainKey,
  type ChainHead,
  chainHash,
  GENESIS_HEAD,
} from "./audit-log";

export type CommitOutcome = { ok: true } | { ok: false; error: string };

export interface BoundStatement {
  sql: string;
  params: unknown[];
}

const INSERT_AUDIT_ROW = `INSERT INTO audit_log (tenant_id, seq, at, actor_type, actor_id, action, target_type, target_id,
  request_id, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** Durable Object storage key of the chain head this object last committed. */
export const CHAIN_HEAD_KEY = "head";

/**
 * The single writer of one tenant's audit chain. Audited mutations run here, one at a time, in one D1
 * batch with their chained audit rows: no two writers can claim the same seq, so concurrent mutations of
 * a tenant queue instead of colliding and retrying (a Durable Object is Cloudflare's tool for exactly this
 * single-writer coordination).
 *
 * It also keeps the chain's head {seq, hash} in its own storage, out of reach of anyone who can only write
 * D1. The keyed hash stops such a person from forging or rewriting rows, but not from deleting the newest
 * ones; the head recorded here is what the verifier holds the end of the chain against.
 *
 * Crash ordering. D1 and this storage cannot commit together, so the D1 batch commits first and the head is
 * recorded after it. A crash in between leaves the recorded head behind D1 by one batch, never ahead of it.
 * - Recorded head behind D1: the verifier accepts rows past the head when the row at the head's seq carries
 *   the head's hash and every later row chains from it (an attacker cannot produce such rows without the
 *   key, and the verifier checks each one). The writer adopts the D1 tail and records it with its next batch.
 * - D1 shorter than the recorded head: rows this object committed are gone, which is truncation, and the
 *   verifier reports the first missing seq. The writer keeps appending after its recorded head and never
 *   re-uses the lost seqs, so later writes leave the gap in place as evidence instead of papering over it.
 * Writing the head before the batch would instead turn every crash into a permanent false truncation alarm.
 */
export class AuditChain extends DurableObject<Env> {
  /** False until this instance has compared its recorded head with D1 (once per start, and after a conflict). */
  private reconciled = false;
  private tail: Promise<unknown> = Promise.resolve();

  /** The head this object last recorded: seq 0 before its first write. */
  head(): ChainHead {
    return this.ctx.storage.kv.get<ChainHead>(CHAIN_HEAD_KEY) ?? GENESIS_HEAD;
  }

  /**
   * Tenant erasure (src/erasure/): forgets the recorded head once the tenant's rows are being deleted. Queued
   * behind any batch still running, so no append lands after it unseen.
   */
  erase(): Promise<void> {
    const run = this.tail.then(async () => {
      await this.ctx.storage.deleteAll();
      this.reconciled = false;
    });
    this.tail = run.catch(() => {});
    return run;
  }

  /**
   * Runs one audited batch. A failure comes back as a value, not a throw: an exception leaving an RPC method
   * is also reported as uncaught on this side, and an expected refusal (a constraint, a compare-and-set that
   * lost) is not an incident to log.
   */
  async commit(
    actor: AuditActor,
    statements: BoundStatement[],
    events: AuditEvent[],
  ): Promise<CommitOutcome> {
    // D1 awaits let other calls in; this queue keeps appends strictly one after another.
    const run = this.tail.then(() => this.write(actor, statements, events));
    this.tail = run.catch(() => {});
    try {
      await run;
      return { ok: true };
    } catch (error) {
      return { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
  }

  /** Where the next row goes: after the recorded head, or after D1's last row if a crash left the head behind. */
  private async base(tenantId: string): Promise<ChainHead> {
    const recorded = this.head();
    if (this.reconciled) return recorded;
    const last = await this.env.DB.prepare(
      "SELECT seq, hash FROM audit_log WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
    )
      .bind(tenantId)
      .first<ChainHead>();
    this.reconciled = true;
    return last && last.seq > recorded.seq ? last : recorded;
  }

  private async write(actor: AuditActor, statements: BoundStatement[], events: AuditEvent[]): Promise<void> {
    const key = await auditChainKey(this.env);
    for (let attempt = 1; ; attempt++) {
      let { seq, hash: prevHash } = await this.base(actor.tenantId);
      const rows: unknown[][] = [];
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
        const hash = await chainHash(key, row);
        rows.push([...Object.values({ ...row, detail: JSON.stringify(row.detail) }), hash]);
        prevHash = hash;
      }
      try {
        await this.env.DB.batch([
          ...statements.map((s) => this.env.DB.prepare(s.sql).bind(...s.params)),
          ...rows.map((values) => this.env.DB.prepare(INSERT_AUDIT_ROW).bind(...values)),
        ]);
      } catch (error) {
        // Someone wrote the chain behind this object's back, or a crash lost the last head write: compare
        // with D1 again, once.
        this.reconciled = false;
        if (attempt >= 2 || !String(error).includes("audit_log.tenant_id, audit_log.seq")) throw error;
        continue;
      }
      // Only after D1 committed (see the class comment). With an empty batch of events the head stays.
      if (events.length > 0)
        this.ctx.storage.kv.put(CHAIN_HEAD_KEY, { seq, hash: prevHash } satisfies ChainHead);
      return;
    }
  }
}
