import { and, eq, inArray, lt } from "drizzle-orm";
import { commitWithAudit } from "../audit/audit-log";
import { RESTORE_WINDOW_MS } from "../credentials/credential-view";
import { database } from "../db/client";
import { credentialRotations, credentials, credentialVersions } from "../db/schema";
import type { Bindings } from "../env";
import { purgeKeyChanges } from "../keys/key-change-feed";
import { enqueueDueRetests } from "../lifecycle/retests";
import { runRotationTick } from "../lifecycle/scheduler";
import { runAlertTick } from "../monitoring/alert-tick";
import { enforceRetention } from "../monitoring/retention";
import { startKekRewrap } from "../vault/kek-rewrap";

const PURGE_CHUNK = 50;

/**
 * Soft-deleted credentials past their 30-day restore window are erased for good: versions, rotation
 * settings (with the sealed endpoint secret), row and a system audit entry in one batch per tenant, so a
 * crash leaves either all of it or none. Their finished rotation runs stay as history: they hold no secret.
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
          db
            .delete(credentialRotations)
            .where(
              and(eq(credentialRotations.tenantId, tenantId), inArray(credentialRotations.credentialId, ids)),
            ),
          db.delete(credentials).where(and(eq(credentials.tenantId, tenantId), inArray(credentials.id, ids))),
        ],
        ids.map((id) => ({ action: "credential.purge", targetType: "credential", targetId: id })),
      );
      purged += ids.length;
    }
  }
}

/**
 * Every cron tick, with "now" taken from the scheduled event (DESIGN.md fixed points): a tick fired locally
 * with a future `time` fast-forwards rotations, overlaps, reminders, re-tests and purges alike. Each job is
 * bounded per tick and leaves the rest due for the next one; one failing job does not stop the others.
 */
export async function runScheduledJobs(
  controller: Pick<ScheduledController, "scheduledTime">,
  env: Bindings,
) {
  const now = controller.scheduledTime;
  const outcomes = await Promise.allSettled([
    runRotationTick(env, now),
    startKekRewrap(env, now),
    enqueueDueRetests(env, now),
    enforceRetention(env, now),
    purgeDeletedCredentials(env, now),
    purgeKeyChanges(env.DB, now),
    runAlertTick(env, now),
  ]);
  const failed = outcomes.filter((outcome) => outcome.status === "rejected");
  if (failed.length > 0) {
    throw new AggregateError(
      failed.map((outcome) => outcome.reason),
      `${failed.length} scheduled job(s) failed`,
    );
  }
}
