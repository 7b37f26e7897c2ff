import { newId } from "../crypto/random";
import type { Database } from "../db/client";
import { alertDeliveries } from "../db/schema";
import type { Bindings } from "../env";
import type { DeliveryTransition } from "./alert-kinds";

export interface OutboxEntry {
  tenantId: string;
  alertId: string;
  channelIds: readonly string[];
  transition: DeliveryTransition;
  now: number;
}

/**
 * The outbox rows of one alert transition, for the caller's batch (the transactional outbox: the alert's
 * change and its notifications commit together or not at all). A second insert of the same alert, channel and
 * transition does nothing, so a re-run evaluation never notifies twice. The Queue carries them afterwards
 * (`relayOutbox`).
 */
export function outboxStatements(db: Database, entry: OutboxEntry) {
  return entry.channelIds.map((channelId) =>
    db
      .insert(alertDeliveries)
      .values({
        id: newId("dlv"),
        tenantId: entry.tenantId,
        alertId: entry.alertId,
        channelId,
        transition: entry.transition,
        state: "pending",
        createdAt: entry.now,
        updatedAt: entry.now,
      })
      .onConflictDoNothing(),
  );
}

/** One Queue message per outbox row: ids only, never a secret or the alert's text (the consumer reads the row). */
export interface DeliveryMessage {
  tenantId: string;
  deliveryId: string;
}

/** Rows claimed per statement and messages per `sendBatch` (Queues accept at most 100 messages per call). */
export const RELAY_CHUNK = 100;
/** Chunks per call: at most one UPDATE and one `sendBatch` each; the rest wait for the next tick. */
export const RELAY_MAX_CHUNKS = 10;
/**
 * A row handed to the Queue that is still pending this long after is handed over again: the send may have
 * failed after the claim (a crash between the two), and a message the Queue holds is consumed within minutes.
 * A second message for a row is harmless: the consumer skips a row already delivered, and a receiver
 * de-duplicates on the delivery id it gets as `webhook-id` (Standard Webhooks).
 */
export const RELAY_RESEND_AFTER_MS = 15 * 60_000;

export interface RelayReport {
  /** Messages handed to the Queue. */
  relayed: number;
  /** D1 calls made. */
  d1Calls: number;
}

/**
 * Carries pending outbox rows to the alerts Queue (the relay half of the transactional outbox). Claim first,
 * send second: one conditional UPDATE ... RETURNING stamps `enqueued_at` on a chunk, so a cron tick and an
 * at-once evaluation relaying at the same moment never hand over the same row twice. If the send then fails,
 * the stamp is taken back so the next relay retries the chunk at once; if the Worker dies between claim and
 * send, the row is handed over again after RELAY_RESEND_AFTER_MS. Bounded: at most RELAY_MAX_CHUNKS chunks.
 */
export async function relayOutbox(
  env: Pick<Bindings, "DB" | "ALERT_QUEUE">,
  now: number,
): Promise<RelayReport> {
  const report: RelayReport = { relayed: 0, d1Calls: 0 };
  for (let chunk = 0; chunk < RELAY_MAX_CHUNKS; chunk++) {
    const claimed = await env.DB.prepare(
      `UPDATE alert_deliveries SET enqueued_at = ?1, updated_at = ?1
       WHERE id IN (
         SELECT id FROM alert_deliveries
         WHERE state = 'pending' AND (enqueued_at IS NULL OR enqueued_at <= ?2)
         ORDER BY created_at, id LIMIT ?3
       )
       AND state = 'pending' AND (enqueued_at IS NULL OR enqueued_at <= ?2)
       RETURNING id, tenant_id`,
    )
      .bind(now, now - RELAY_RESEND_AFTER_MS, RELAY_CHUNK)
      .all<{ id: string; tenant_id: string }>();
    report.d1Calls++;
    const rows = claimed.results;
    if (rows.length === 0) break;
    try {
      await env.ALERT_QUEUE.sendBatch(
        rows.map(
          (row): MessageSendRequest<DeliveryMessage> => ({
            body: { tenantId: row.tenant_id, deliveryId: row.id },
            contentType: "json",
          }),
        ),
      );
    } catch (error) {
      await env.DB.prepare(
        `UPDATE alert_deliveries SET enqueued_at = NULL
         WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'pending' AND enqueued_at = ?2`,
      )
        .bind(JSON.stringify(rows.map((row) => row.id)), now)
        .run();
      report.d1Calls++;
      throw error;
    }
    report.relayed += rows.length;
    if (rows.length < RELAY_CHUNK) break;
  }
  return report;
}
