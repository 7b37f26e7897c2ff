import { and, eq, inArray, lt } from "drizzle-orm";
import { commitWithAudit } from "../audit/audit-log";
import { RESTORE_WINDOW_MS } from "../credentials/credential-view";
import { database } from "../db/client";
import { credentials, credentialVersions, keyUsageDaily } from "../db/schema";
import type { Bindings } from "../env";

/** Per-day verification counts are kept for 400 days: a year of history plus a margin for audits. */
export const USAGE_RETENTION_DAYS = 400;
const PURGE_CHUNK = 50;

export async function purgeOldUsage(env: Bindings, now: number): Promise<void> {
  const cutoff = new Date(now - USAGE_RETENTION_DAYS * 86_400_000).toISOString().slice(0, 10);
  await database(env.DB).delete(keyUsageDaily).where(lt(keyUsageDaily.day, cutoff));
}

/**
 * Soft-deleted credentials past their 30-day restore window are erased for good: versions, row and a
 * system audit entry in one batch per tenant, so a crash leaves either all of it or none.
 */
export async function purgeDeletedCredentials(env: Bindings, now: number): Promise<number> {
  const db = database(env.DB);
  let purged = 0;
  for (;;) {
    const expired = await db
      .select({ id: credentials.id, tenantId: credentials.tenantId })
      .from(credentials)
      .where(and(eq(credentials.status, "deleted"), lt(credentials.deletedAt, now - RESTORE_WINDOW_MS)))
      .limit(PURGE_CHUNK)
      .all();
    if (expired.length === 0) return purged;
    for (const tenantId of new Set(expired.map((row) => row.tenantId))) {
      const ids = expired.filter((row) => row.tenantId === tenantId).map((row) => row.id);
      await commitWithAudit(
        env,
        { tenantId, actorType: "system", actorId: "cron", requestId: `cron:${now}` },
        [
          db
            .delete(credentialVersions)
            .where(
              and(eq(credentialVersions.tenantId, tenantId), inArray(credentialVersions.credentialId, ids)),
            ),
          db.delete(credentials).where(and(eq(credentials.tenantId, tenantId), inArray(credentials.id, ids))),
        ],
        ids.map((id) => ({ action: "credential.purge", targetType: "credential", targetId: id })),
      );
      purged += ids.length;
    }
  }
}

export async function runScheduledJobs(controller: ScheduledController, env: Bindings): Promise<void> {
  await purgeOldUsage(env, controller.scheduledTime);
  await purgeDeletedCredentials(env, controller.scheduledTime);
}
