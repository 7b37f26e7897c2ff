import { sql } from "drizzle-orm";
import type { Database } from "../db/client";
import { apiKeys, usageCounts } from "../db/schema";

interface Tally {
  tenantId: string;
  keyId: string;
  day: number;
  valid: number;
  invalid: number;
  lastUsedAt: number;
}

/**
 * Verification counters are buffered per isolate and written in one batched D1 upsert off the
 * response path (ctx.waitUntil). Trade-off, stated in docs/keys.md: an isolate evicted inside
 * the flush window loses at most that window's counts; limits are never affected (the limiter
 * Durable Object is exact).
 */
const pending = new Map<string, Tally>();
let flushScheduled = false;

export function recordVerification(
  ctx: Pick<ExecutionContext, "waitUntil">,
  db: Database,
  entry: { tenantId: string; keyId: string; valid: boolean; at: number },
  flushAfterMs: number,
): void {
  const day = Math.floor(entry.at / 86_400_000) * 86_400_000;
  const slot = `${entry.keyId}:${day}`;
  const tally = pending.get(slot) ?? {
    tenantId: entry.tenantId,
    keyId: entry.keyId,
    day,
    valid: 0,
    invalid: 0,
    lastUsedAt: 0,
  };
  if (entry.valid) tally.valid += 1;
  else tally.invalid += 1;
  tally.lastUsedAt = Math.max(tally.lastUsedAt, entry.at);
  pending.set(slot, tally);
  if (flushScheduled) return;
  flushScheduled = true;
  ctx.waitUntil(
    (flushAfterMs > 0 ? new Promise((resolve) => setTimeout(resolve, flushAfterMs)) : Promise.resolve()).then(
      () => flushUsage(db),
    ),
  );
}

export async function flushUsage(db: Database): Promise<void> {
  flushScheduled = false;
  const tallies = [...pending.values()];
  pending.clear();
  const [first, ...rest] = tallies.flatMap((t) => [
    db
      .insert(usageCounts)
      .values({
        tenantId: t.tenantId,
        keyId: t.keyId,
        bucket: "day",
        start: t.day,
        valid: t.valid,
        invalid: t.invalid,
      })
      .onConflictDoUpdate({
        target: [usageCounts.tenantId, usageCounts.keyId, usageCounts.bucket, usageCounts.start],
        set: {
          valid: sql`${usageCounts.valid} + ${t.valid}`,
          invalid: sql`${usageCounts.invalid} + ${t.invalid}`,
        },
      }),
    db
      .update(apiKeys)
      .set({ lastUsedAt: sql`max(coalesce(${apiKeys.lastUsedAt}, 0), ${t.lastUsedAt})` })
      .where(sql`${apiKeys.id} = ${t.keyId}`),
  ]);
  if (!first) return;
  try {
    await db.batch([first, ...rest]);
  } catch (error) {
    console.error(
      JSON.stringify({ event: "usage_flush_failed", keys: tallies.length, error: String(error) }),
    );
  }
}
