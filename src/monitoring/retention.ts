import { and, asc, eq, lt } from "drizzle-orm";
import {
  AUDIT_RETENTION_ACTION,
  auditChainKey,
  chainStart,
  commitWithAudit,
  rowBreak,
} from "../audit/audit-log";
import type { SecurityLevel } from "../crypto/keys";
import { database } from "../db/client";
import { auditHorizons, auditLog } from "../db/schema";
import type { Bindings } from "../env";
import { SECURITY_LEVELS } from "../wizard/security-levels";
import { DAY_MS } from "./usage-counts";

/**
 * Hourly usage rows serve the alert rules, the anomaly baselines (which fold each closed hour within the
 * tick after it closes) and hour reports (at most 31 days): 35 days covers all three with a margin.
 */
export const HOURLY_RETENTION_DAYS = 35;

/** How much one cron tick may delete, so a backlog (a first run, a level lowered) spreads over ticks. */
export interface RetentionBudget {
  /** Usage rows per DELETE statement. */
  usageChunk: number;
  /** DELETE statements per bucket and level per tick. */
  usageRounds: number;
  /** Tenants whose audit log is pruned per tick. */
  auditTenants: number;
  /** Audit rows one tenant's horizon moves past per tick (each one's MAC is checked first). */
  auditRows: number;
}

export const RETENTION_BUDGET: RetentionBudget = {
  usageChunk: 5000,
  usageRounds: 4,
  auditTenants: 20,
  auditRows: 1000,
};

const LEVELS = Object.keys(SECURITY_LEVELS) as SecurityLevel[];

/** Tenants without a committed security policy are held to the basic level's retention. */
const LEVEL_OF_ROW = "coalesce(p.security_level, 'basic')";

async function deleteInRounds(d1: D1Database, sql: string, params: unknown[], budget: RetentionBudget) {
  let deleted = 0;
  for (let round = 0; round < budget.usageRounds; round++) {
    const { meta } = await d1
      .prepare(sql)
      .bind(...params, budget.usageChunk)
      .run();
    deleted += meta.changes;
    if (meta.changes < budget.usageChunk) break;
  }
  return deleted;
}

/**
 * Hourly rows older than HOURLY_RETENTION_DAYS, and daily rows older than the tenant's level's
 * `usage_retention_days`, in bounded chunks (the (bucket, start) index finds them). Returns the rows deleted.
 */
export async function purgeUsage(
  env: Pick<Bindings, "DB">,
  now: number,
  budget: RetentionBudget = RETENTION_BUDGET,
): Promise<number> {
  let deleted = await deleteInRounds(
    env.DB,
    `DELETE FROM usage_counts WHERE rowid IN
      (SELECT rowid FROM usage_counts WHERE bucket = 'hour' AND start < ?1 LIMIT ?2)`,
    [now - HOURLY_RETENTION_DAYS * DAY_MS],
    budget,
  );
  for (const level of LEVELS) {
    deleted += await deleteInRounds(
      env.DB,
      `DELETE FROM usage_counts WHERE rowid IN
        (SELECT u.rowid FROM usage_counts u LEFT JOIN security_policies p ON p.tenant_id = u.tenant_id
         WHERE u.bucket = 'day' AND u.start < ?1 AND ${LEVEL_OF_ROW} = ?2 LIMIT ?3)`,
      [now - SECURITY_LEVELS[level].usage_retention_days * DAY_MS, level],
      budget,
    );
  }
  return deleted;
}

/** Tenants whose oldest retained audit row is past their level's audit_retention_days. */
async function tenantsPastAuditRetention(d1: D1Database, now: number, limit: number) {
  const cutoffs = Object.fromEntries(
    LEVELS.map((level) => [level, now - SECURITY_LEVELS[level].audit_retention_days * DAY_MS]),
  );
  const { results } = await d1
    .prepare(
      `SELECT tenant_id, level FROM (
         SELECT t.id AS tenant_id, ${LEVEL_OF_ROW} AS level,
           (SELECT a.at FROM audit_log a WHERE a.tenant_id = t.id ORDER BY a.seq LIMIT 1) AS oldest
         FROM tenants t LEFT JOIN security_policies p ON p.tenant_id = t.id)
       WHERE oldest < json_extract(?1, '$.' || level) LIMIT ?2`,
    )
    .bind(JSON.stringify(cutoffs), limit)
    .all<{ tenant_id: string; level: SecurityLevel }>();
  return results;
}

/**
 * Moves one tenant's audit horizon past its rows older than the level's retention and deletes them, in ONE
 * audited batch: the horizon upsert first (the trigger `audit_log_delete_below_horizon` refuses any delete
 * at or above it), the delete, and an `audit.retention` row whose detail attests the new horizon, which the
 * verifier requires. Only a prefix whose links and MACs verify is pruned: retention never erases the
 * evidence of a tampered row, the horizon stops in front of it. Returns the rows deleted.
 */
export async function pruneTenantAudit(
  env: Bindings,
  tenantId: string,
  level: SecurityLevel,
  now: number,
  maxRows: number = RETENTION_BUDGET.auditRows,
): Promise<number> {
  const db = database(env.DB);
  const retentionDays = SECURITY_LEVELS[level].audit_retention_days;
  const cutoff = now - retentionDays * DAY_MS;
  const key = await auditChainKey(env, db);
  const { start } = await chainStart(db, tenantId);
  const rows = await db
    .select()
    .from(auditLog)
    .where(eq(auditLog.tenantId, tenantId))
    .orderBy(asc(auditLog.seq))
    .limit(maxRows)
    .all();
  let last: { seq: number; hash: string } | null = null;
  let { seq: expectedSeq, prevHash } = start;
  for (const row of rows) {
    if (row.at >= cutoff || (await rowBreak(key, row, expectedSeq, prevHash)) !== null) break;
    last = { seq: row.seq, hash: row.hash };
    prevHash = row.hash;
    expectedSeq += 1;
  }
  if (!last) return 0;
  const firstSeq = last.seq + 1;
  await commitWithAudit(
    env,
    { tenantId, actorType: "system", actorId: "cron", requestId: `cron:${now}` },
    [
      db
        .insert(auditHorizons)
        .values({ tenantId, firstSeq, prevHash: last.hash, movedAt: now })
        .onConflictDoUpdate({
          target: auditHorizons.tenantId,
          set: { firstSeq, prevHash: last.hash, movedAt: now },
        }),
      db.delete(auditLog).where(and(eq(auditLog.tenantId, tenantId), lt(auditLog.seq, firstSeq))),
    ],
    [
      {
        action: AUDIT_RETENTION_ACTION,
        targetType: "tenant",
        targetId: tenantId,
        detail: {
          first_seq: firstSeq,
          prev_hash: last.hash,
          deleted: firstSeq - start.seq,
          retention_days: retentionDays,
        },
      },
    ],
  );
  return firstSeq - start.seq;
}

/** Audit retention for a bounded number of tenants per tick; one tenant's failure does not stop the others. */
export async function pruneAuditLogs(
  env: Bindings,
  now: number,
  budget: RetentionBudget = RETENTION_BUDGET,
): Promise<number> {
  let deleted = 0;
  for (const { tenant_id, level } of await tenantsPastAuditRetention(env.DB, now, budget.auditTenants)) {
    try {
      deleted += await pruneTenantAudit(env, tenant_id, level, now, budget.auditRows);
    } catch (error) {
      console.error(JSON.stringify({ event: "audit_prune_failed", tenant_id, error: String(error) }));
    }
  }
  return deleted;
}

/** The cron's retention job: usage rows and audit rows, each bounded per tick. */
export async function enforceRetention(env: Bindings, now: number): Promise<void> {
  await purgeUsage(env, now);
  await pruneAuditLogs(env, now);
}
