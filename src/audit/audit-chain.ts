import { DurableObject } from "cloudflare:workers";
import { type AuditActor, type AuditEvent, chainHash, GENESIS_HASH } from "./audit-log";

export interface BoundStatement {
  sql: string;
  params: unknown[];
}

const INSERT_AUDIT_ROW = `INSERT INTO audit_log (tenant_id, seq, at, actor_type, actor_id, action, target_type, target_id,
  request_id, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/**
 * The single writer of one tenant's audit chain. Audited mutations run here, one at a time, in one D1
 * batch with their chained audit rows: no two writers can claim the same seq, so concurrent mutations of
 * a tenant queue instead of colliding and retrying (a Durable Object is Cloudflare's tool for exactly this
 * single-writer coordination).
 */
export class AuditChain extends DurableObject<Env> {
  private head: { seq: number; hash: string } | null = null;
  private tail: Promise<unknown> = Promise.resolve();

  commit(actor: AuditActor, statements: BoundStatement[], events: AuditEvent[]): Promise<void> {
    // D1 awaits let other calls in; this queue keeps appends strictly one after another.
    const run = this.tail.then(() => this.write(actor, statements, events));
    this.tail = run.catch(() => {});
    return run;
  }

  private async readHead(tenantId: string) {
    const row = await this.env.DB.prepare(
      "SELECT seq, hash FROM audit_log WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
    )
      .bind(tenantId)
      .first<{ seq: number; hash: string }>();
    return row ?? { seq: 0, hash: GENESIS_HASH };
  }

  private async write(actor: AuditActor, statements: BoundStatement[], events: AuditEvent[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.head ??= await this.readHead(actor.tenantId);
      let { seq, hash: prevHash } = this.head;
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
        const hash = await chainHash(row);
        rows.push([...Object.values({ ...row, detail: JSON.stringify(row.detail) }), hash]);
        prevHash = hash;
      }
      try {
        await this.env.DB.batch([
          ...statements.map((s) => this.env.DB.prepare(s.sql).bind(...s.params)),
          ...rows.map((values) => this.env.DB.prepare(INSERT_AUDIT_ROW).bind(...values)),
        ]);
        this.head = { seq, hash: prevHash };
        return;
      } catch (error) {
        // Someone wrote the chain behind this object's back (a restore, a migration): re-read the head once.
        this.head = null;
        if (attempt >= 2 || !String(error).includes("audit_log.tenant_id, audit_log.seq")) throw error;
      }
    }
  }
}
