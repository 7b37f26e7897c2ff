/**
 * Scheduled live re-tests: every active stored credential is probed again once per RETEST_INTERVAL_MS.
 *
 * The cron tick (`enqueueDueRetests`) finds credentials whose `next_test_at` has come, in bounded chunks,
 * and sends one Queue message per credential, spaced per provider with `delaySeconds`. The consumer
 * (`consumeRetests`) probes the current version with the same function as `POST /credentials/{id}/test`
 * and records the outcome, its events and the next due time in one audited batch. Messages carry ids and
 * a due time only, never a credential value.
 */
import { and, eq } from "drizzle-orm";
import { z } from "zod";
import type { AuditActor } from "../audit/audit-log";
import { findService } from "../catalog";
import { probeCurrentVersion, providerUnavailable, recordLiveTest } from "../credentials/live-test";
import { database } from "../db/client";
import { credentials } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";

/** Every stored credential is probed live this often. */
export const RETEST_INTERVAL_MS = 86_400_000;

/** Rows per SELECT and messages per `sendBatch` (Queues accept at most 100 messages per call). */
export const RETEST_CHUNK = 100;
/**
 * Chunks per tick: at most 2 D1 calls and one `sendBatch` each, far inside one invocation's subrequest
 * budget. 2,000 credentials every 5 minutes is over half a million a day; the rest stay due for the next tick.
 */
export const RETEST_MAX_CHUNKS = 20;

/**
 * Seconds between two re-tests of the same provider sent by one tick, so a tick never bursts one provider
 * (gentle per provider). Probes that mint an OAuth token on every call are spaced further apart.
 */
const DEFAULT_SPACING_S = 2;
export const RETEST_SPACING_S: Readonly<Record<string, number>> = {
  paypal: 5,
  "google-ads": 5,
  "linkedin-marketing": 5,
};

export function retestSpacingSeconds(serviceId: string): number {
  return RETEST_SPACING_S[serviceId] ?? DEFAULT_SPACING_S;
}

/** Queues delay a message by at most 12 hours; a longer spread is clamped (it then bunches at the end). */
export const MAX_DELAY_S = 43_200;

/** One scheduled live re-test of a stored credential. No secret: ids and the due time it was sent for. */
export interface RetestMessage {
  tenantId: string;
  credentialId: string;
  /** The `next_test_at` the message was sent for: names this re-test (events record once per due time). */
  dueAt: number;
}

const RetestMessageSchema = z.object({
  tenantId: z.string().min(1),
  credentialId: z.string().min(1),
  dueAt: z.number().int(),
});

export interface EnqueueReport {
  /** Messages sent this tick. */
  enqueued: number;
  /** D1 calls made (a SELECT or an UPDATE counts once). */
  d1Calls: number;
}

interface DueRow {
  id: string;
  tenant_id: string;
  service_id: string;
  status: "active" | "deleted";
  next_test_at: number;
}

/**
 * Sends a re-test message for every credential due by `now` (the cron's scheduled time, so a fast-forwarded
 * cron fast-forwards re-tests), then claims the chunk by moving its `next_test_at` to `now` + interval.
 *
 * Send first, claim second: a crash between the two leaves the chunk due, and the next tick sends the same
 * messages again (same `dueAt`), which the consumer recognises. Claiming first would turn that crash into a
 * silently skipped day. A soft-deleted credential is claimed without a message: it keeps its place in the
 * schedule, so a restore resumes re-tests, and it is purged after the restore window anyway.
 */
export async function enqueueDueRetests(env: Bindings, now: number): Promise<EnqueueReport> {
  const report: EnqueueReport = { enqueued: 0, d1Calls: 0 };
  /** Messages sent per provider this tick: the n-th waits n * spacing seconds. */
  const sentPerService = new Map<string, number>();
  let after: { at: number; id: string } = { at: Number.MIN_SAFE_INTEGER, id: "" };
  for (let chunk = 0; chunk < RETEST_MAX_CHUNKS; chunk++) {
    // The cursor keeps one tick from reading a row twice, whatever happened to the claim of an earlier chunk.
    const due = await env.DB.prepare(
      `SELECT id, tenant_id, service_id, status, next_test_at FROM credentials
       WHERE next_test_at <= ?1 AND (next_test_at, id) > (?2, ?3)
       ORDER BY next_test_at, id LIMIT ?4`,
    )
      .bind(now, after.at, after.id, RETEST_CHUNK)
      .all<DueRow>();
    report.d1Calls++;
    const rows = due.results;
    const last = rows.at(-1);
    if (!last) break;
    const messages: MessageSendRequest<RetestMessage>[] = [];
    for (const row of rows) {
      if (row.status !== "active") continue;
      const nth = sentPerService.get(row.service_id) ?? 0;
      sentPerService.set(row.service_id, nth + 1);
      messages.push({
        body: { tenantId: row.tenant_id, credentialId: row.id, dueAt: row.next_test_at },
        delaySeconds: Math.min(nth * retestSpacingSeconds(row.service_id), MAX_DELAY_S),
      });
    }
    if (messages.length > 0) await env.RETEST_QUEUE.sendBatch(messages);
    report.enqueued += messages.length;
    // Exactly the rows read (one bound parameter: D1 allows 100 per statement), and only while still due: a
    // consumer that already recorded a re-test of one of them set a later time, which stays.
    await env.DB.prepare(
      `UPDATE credentials SET next_test_at = ?1
       WHERE id IN (SELECT value FROM json_each(?2)) AND next_test_at <= ?3`,
    )
      .bind(now + RETEST_INTERVAL_MS, JSON.stringify(rows.map((row) => row.id)), now)
      .run();
    report.d1Calls++;
    after = { at: last.next_test_at, id: last.id };
    if (rows.length < RETEST_CHUNK) break;
  }
  return report;
}

/** What one re-test came to; `consumeRetests` turns it into an ack or a retry. */
export type RetestOutcome =
  | { kind: "recorded"; status: "valid" | "invalid" | "unknown" }
  /** Deleted, gone, of another tenant, or of a service no longer in the catalogue: nothing to test. */
  | { kind: "gone" }
  /** Already tested since it fell due (a redelivered message, or a manual test in between). */
  | { kind: "already_tested" }
  /** The provider did not answer (5xx, timeout, network, 429): try again later, record nothing. */
  | { kind: "unavailable"; retryAfterS?: number };

/**
 * Runs one re-test at `now` (epoch ms: the time recorded as `last_tested_at` and on events; the next one is
 * due `now` + interval, never earlier than a later time a fast-forwarded tick already claimed).
 */
export async function runRetest(env: Bindings, message: RetestMessage, now: number): Promise<RetestOutcome> {
  const db = database(env.DB);
  const row = await db
    .select()
    .from(credentials)
    .where(and(eq(credentials.tenantId, message.tenantId), eq(credentials.id, message.credentialId)))
    .get();
  if (row?.status !== "active" || !findService(row.serviceId)) return { kind: "gone" };
  if (row.lastTestedAt !== null && row.lastTestedAt >= message.dueAt) return { kind: "already_tested" };
  const result = await probeCurrentVersion(env, db, row);
  if (providerUnavailable(result)) {
    return result.retry_after_s === undefined
      ? { kind: "unavailable" }
      : { kind: "unavailable", retryAfterS: result.retry_after_s };
  }
  const occasion = `retest:${message.dueAt}`;
  const actor: AuditActor = {
    tenantId: row.tenantId,
    actorType: "system",
    actorId: "retest",
    requestId: `${row.id}:${occasion}`,
  };
  await recordLiveTest(env, db, actor, row, result, {
    now,
    occasion,
    nextTestAt: now + RETEST_INTERVAL_MS,
  });
  return { kind: "recorded", status: result.status };
}

/** First retry after a minute, then doubling (60, 120, 240 s); a provider's Retry-After is honoured up to an hour. */
const RETRY_BASE_S = 60;
const MAX_RETRY_DELAY_S = 3_600;

/** Seconds until attempt `attempts + 1` of a message whose provider was unavailable. */
export function retryDelaySeconds(attempts: number, retryAfterS?: number): number {
  const backoff = RETRY_BASE_S * 2 ** Math.max(0, attempts - 1);
  return Math.min(Math.max(backoff, retryAfterS ?? 0), MAX_RETRY_DELAY_S);
}

/**
 * Queue consumer of scheduled live re-tests, one message after the other (gentle on the providers). A
 * definitive answer acks; an unavailable provider or a failure of our own (sealed service, D1) retries
 * with backoff, and after the queue's max_retries the message goes to the dead-letter queue. The credential
 * stays scheduled either way: the tick already moved its `next_test_at` a full interval on.
 */
export async function consumeRetests(batch: MessageBatch<RetestMessage>, env: Bindings): Promise<void> {
  for (const message of batch.messages) {
    const parsed = RetestMessageSchema.safeParse(message.body);
    if (!parsed.success) {
      console.warn(JSON.stringify({ event: "retest_message_dropped", message_id: message.id }));
      message.ack();
      continue;
    }
    try {
      const outcome = await runRetest(env, parsed.data, Date.now());
      if (outcome.kind === "unavailable") {
        message.retry({ delaySeconds: retryDelaySeconds(message.attempts, outcome.retryAfterS) });
      } else {
        message.ack();
      }
    } catch (error) {
      // Ids and the error's name or code only: no message text, which could quote a value, reaches the logs.
      console.error(
        JSON.stringify({
          event: "retest_failed",
          credential_id: parsed.data.credentialId,
          error: error instanceof ApiError ? error.code : error instanceof Error ? error.name : typeof error,
        }),
      );
      message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    }
  }
}
