import { lt } from "drizzle-orm";
import { database } from "../db/client";
import { keyUsageDaily } from "../db/schema";
import type { Bindings } from "../env";

/** Per-day verification counts are kept for 400 days: a year of history plus a margin for audits. */
export const USAGE_RETENTION_DAYS = 400;

export async function purgeOldUsage(env: Bindings, now: number): Promise<void> {
  const cutoff = new Date(now - USAGE_RETENTION_DAYS * 86_400_000).toISOString().slice(0, 10);
  await database(env.DB).delete(keyUsageDaily).where(lt(keyUsageDaily.day, cutoff));
}

export async function runScheduledJobs(controller: ScheduledController, env: Bindings): Promise<void> {
  await purgeOldUsage(env, controller.scheduledTime);
}
