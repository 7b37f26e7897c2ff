/**
 * The alerts Queue consumer: one message per outbox row (src/monitoring/outbox.ts). Each attempt loads the
 * row, skips it if it is finished, claims the attempt, opens the channel's secrets for this call only, sends
 * through the channel's sender and records status, latency and a fixed reason word. A failure retries with
 * exponential backoff and jitter; after the queue's max_retries the message lands in the dead-letter queue,
 * whose consumer marks the delivery dead and counts it against the channel's health.
 */
import { and, eq, inArray, sql } from "drizzle-orm";
import { z } from "zod";
import { commitWithAudit } from "../audit/audit-log";
import { type Database, database } from "../db/client";
import { alertChannels, alertDeliveries, alerts } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import { unseal } from "../vault/keyring";
import { renderAlert } from "./alert-message";
import {
  type ChannelTarget,
  type OutgoingMessage,
  openChannel,
  PERMANENT_REASONS,
  sendToChannel,
} from "./channel-senders";
import type { DeliveryResult } from "./outbound-url";
import type { DeliveryMessage } from "./outbox";

/** Dead deliveries in a row after which a channel is `failing` (and the channel_failing rule alerts elsewhere). */
export const CHANNEL_FAILING_AFTER = 3;

/** Backoff of attempt n (1-based): a ceiling of 60 s x 2^(n-1), at most an hour. */
export const DELIVERY_RETRY_BASE_S = 60;
export const DELIVERY_RETRY_MAX_S = 3_600;

/**
 * Seconds to wait after failed attempt `attempt` (1-based): "equal jitter" (AWS Architecture Blog,
 * "Exponential Backoff And Jitter"): half the exponential ceiling fixed, the other half random. The fixed half
 * makes the delays grow attempt after attempt; the random half spreads receivers that failed together (an
 * outage) so their retries do not arrive as one burst.
 */
export function deliveryRetryDelaySeconds(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(DELIVERY_RETRY_BASE_S * 2 ** Math.max(0, attempt - 1), DELIVERY_RETRY_MAX_S);
  return Math.ceil(ceiling / 2 + random() * (ceiling / 2));
}

export interface DeliveryOptions {
  /** The clock; default Date.now. */
  now?: () => number;
  /** The jitter source; default Math.random. */
  random?: () => number;
  /** Per-call timeout of HTTP channels; default 5 s. */
  timeoutMs?: number;
}

const DeliveryMessageSchema = z.object({ tenantId: z.string().min(1), deliveryId: z.string().min(1) });

export type DeliveryOutcome =
  | { kind: "delivered"; attempt: number }
  /** No such row (of this tenant), already delivered or dead, or another consumer holds this attempt. */
  | { kind: "skipped"; why: "gone" | "finished" | "taken" }
  | { kind: "retry"; attempt: number; reason: string }
  | { kind: "dead"; reason: string };

/** A stable reason word for a failed attempt: `http_503`, `timeout`, `unreachable`, ... never an answer body. */
function reasonOf(result: DeliveryResult): string {
  if (result.reason === "rejected" && result.status !== undefined) return `http_${result.status}`;
  return result.reason ?? "failed";
}

function openRow(message: DeliveryMessage) {
  return and(
    eq(alertDeliveries.id, message.deliveryId),
    eq(alertDeliveries.tenantId, message.tenantId),
    inArray(alertDeliveries.state, ["pending", "retrying"]),
  );
}

/** Opens the channel and sends; the latency is the receiver's alone (null when nothing was sent). */
async function sendOnce(
  env: Bindings,
  db: Database,
  channel: typeof alertChannels.$inferSelect,
  outgoing: OutgoingMessage & { now: number; timeoutMs: number | undefined },
): Promise<{ result: DeliveryResult; latencyMs: number | null }> {
  let target: ChannelTarget;
  try {
    target = await openChannel(await unseal(env, db), db, channel);
  } catch (error) {
    // A missing SendGrid credential is the channel's configuration; anything else (a sealed service, a DEK
    // that cannot be read right now) is ours and worth another attempt.
    const reason =
      error instanceof ApiError && error.code === "NOT_FOUND" ? "credential_missing" : "channel_unreadable";
    return { result: { delivered: false, reason }, latencyMs: null };
  }
  const started = Date.now();
  const result = await sendToChannel(env, target, outgoing, {
    now: outgoing.now,
    timeoutMs: outgoing.timeoutMs,
  });
  return { result, latencyMs: Math.max(0, Date.now() - started) };
}

/**
 * One attempt of one outbox row at `now`. Throws only when D1 does; everything a channel or its receiver can
 * do wrong is an outcome.
 */
export async function attemptDelivery(
  env: Bindings,
  message: DeliveryMessage,
  now: number,
  options: Pick<DeliveryOptions, "timeoutMs"> = {},
): Promise<DeliveryOutcome> {
  const db = database(env.DB);
  const found = await db
    .select({ delivery: alertDeliveries, alert: alerts, channel: alertChannels })
    .from(alertDeliveries)
    .leftJoin(
      alerts,
      and(eq(alerts.id, alertDeliveries.alertId), eq(alerts.tenantId, alertDeliveries.tenantId)),
    )
    .leftJoin(
      alertChannels,
      and(
        eq(alertChannels.id, alertDeliveries.channelId),
        eq(alertChannels.tenantId, alertDeliveries.tenantId),
      ),
    )
    .where(and(eq(alertDeliveries.id, message.deliveryId), eq(alertDeliveries.tenantId, message.tenantId)))
    .get();
  if (!found) return { kind: "skipped", why: "gone" };
  const { delivery, alert, channel } = found;
  if (delivery.state === "delivered" || delivery.state === "dead")
    return { kind: "skipped", why: "finished" };
  if (!channel || !alert) {
    const reason = channel ? "alert_missing" : "channel_deleted";
    await markDeliveryDead(env, message, reason, now);
    return { kind: "dead", reason };
  }

  // Claim this attempt: compare-and-set on the attempt count, so two messages for one row (a relay that
  // handed it over again) never send it twice at once.
  const claimed = await db
    .update(alertDeliveries)
    .set({ attempts: delivery.attempts + 1, updatedAt: now })
    .where(and(openRow(message), eq(alertDeliveries.attempts, delivery.attempts)))
    .returning({ attempts: alertDeliveries.attempts })
    .get();
  if (!claimed) return { kind: "skipped", why: "taken" };
  const attempt = claimed.attempts;

  const { result: outcome, latencyMs } = await sendOnce(env, db, channel, {
    id: delivery.id,
    message: renderAlert(alert, delivery.transition, env.PUBLIC_ORIGIN),
    now,
    timeoutMs: options.timeoutMs,
  });

  if (outcome.delivered) {
    await db.batch([
      // A delivered notification proves the channel works again: its failure streak ends.
      db
        .update(alertChannels)
        .set({ consecutiveFailures: 0, health: "healthy", lastDeliveryAt: now, lastError: null })
        .where(
          and(
            eq(alertChannels.tenantId, message.tenantId),
            eq(alertChannels.id, channel.id),
            sql`EXISTS (SELECT 1 FROM ${alertDeliveries} WHERE ${openRow(message)})`,
          ),
        ),
      db
        .update(alertDeliveries)
        .set({
          state: "delivered",
          lastStatus: outcome.status ?? null,
          lastError: null,
          latencyMs,
          deliveredAt: now,
          updatedAt: now,
        })
        .where(openRow(message)),
    ]);
    return { kind: "delivered", attempt };
  }

  const reason = reasonOf(outcome);
  await db
    .update(alertDeliveries)
    .set({
      state: "retrying",
      lastStatus: outcome.status ?? null,
      lastError: reason,
      latencyMs,
      updatedAt: now,
    })
    .where(openRow(message));
  if (PERMANENT_REASONS.has(reason)) {
    await markDeliveryDead(env, message, reason, now);
    return { kind: "dead", reason };
  }
  return { kind: "retry", attempt, reason };
}

/**
 * Gives up on a delivery: the row becomes `dead`, and its channel's failure streak grows (`failing` at
 * CHANNEL_FAILING_AFTER), in one audited batch: a tenant's alerts not reaching it is a fact the audit log
 * keeps. `reason` overrides the last attempt's reason (null keeps it). Idempotent: a row already finished
 * changes nothing, and both statements are conditional on the row still being open.
 */
export async function markDeliveryDead(
  env: Bindings,
  message: DeliveryMessage,
  reason: string | null,
  now: number,
): Promise<boolean> {
  const db = database(env.DB);
  const row = await db.select().from(alertDeliveries).where(openRow(message)).get();
  if (!row) return false;
  const why = reason ?? row.lastError ?? "retries_exhausted";
  await commitWithAudit(
    env,
    {
      tenantId: row.tenantId,
      actorType: "system",
      actorId: "alert-delivery",
      requestId: `delivery:${row.id}`,
    },
    [
      db
        .update(alertChannels)
        .set({
          consecutiveFailures: sql`${alertChannels.consecutiveFailures} + 1`,
          health: sql`CASE WHEN ${alertChannels.consecutiveFailures} + 1 >= ${CHANNEL_FAILING_AFTER} THEN 'failing' ELSE ${alertChannels.health} END`,
          lastError: why,
        })
        .where(
          and(
            eq(alertChannels.tenantId, row.tenantId),
            eq(alertChannels.id, row.channelId),
            sql`EXISTS (SELECT 1 FROM ${alertDeliveries} WHERE ${openRow(message)})`,
          ),
        ),
      db
        .update(alertDeliveries)
        .set({ state: "dead", lastError: why, updatedAt: now })
        .where(openRow(message)),
    ],
    [
      {
        action: "alert.delivery_dead",
        targetType: "alert_channel",
        targetId: row.channelId,
        detail: {
          delivery_id: row.id,
          alert_id: row.alertId,
          transition: row.transition,
          attempts: row.attempts,
          reason: why,
        },
      },
    ],
  );
  return true;
}

/** Ids and a fixed word only: no message text, which could quote a value, reaches the logs. */
function logFailure(event: string, message: DeliveryMessage, error: unknown) {
  console.error(
    JSON.stringify({
      event,
      delivery_id: message.deliveryId,
      error: error instanceof ApiError ? error.code : error instanceof Error ? error.name : typeof error,
    }),
  );
}

function parse(message: Message<unknown>): DeliveryMessage | null {
  const parsed = DeliveryMessageSchema.safeParse(message.body);
  if (parsed.success) return parsed.data;
  console.warn(JSON.stringify({ event: "alert_delivery_message_dropped", message_id: message.id }));
  message.ack();
  return null;
}

/**
 * Consumer of `keywarden-alerts`. The messages of a batch are attempted side by side (each is one channel's
 * call, bounded by its timeout). A failed attempt retries after `deliveryRetryDelaySeconds`; the Queue moves a
 * message past max_retries (wrangler.toml) to the dead-letter queue.
 */
export async function consumeAlertDeliveries(
  batch: MessageBatch<unknown>,
  env: Bindings,
  options: DeliveryOptions = {},
): Promise<void> {
  const clock = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  await Promise.all(
    batch.messages.map(async (message) => {
      const body = parse(message);
      if (!body) return;
      try {
        const outcome = await attemptDelivery(env, body, clock(), options);
        if (outcome.kind === "retry") {
          message.retry({ delaySeconds: deliveryRetryDelaySeconds(outcome.attempt, random) });
        } else {
          message.ack();
        }
      } catch (error) {
        logFailure("alert_delivery_failed", body, error);
        message.retry({ delaySeconds: deliveryRetryDelaySeconds(message.attempts, random) });
      }
    }),
  );
}

/** Consumer of `keywarden-alerts-dlq`: every message is a delivery that ran out of retries. */
export async function consumeDeadDeliveries(
  batch: MessageBatch<unknown>,
  env: Bindings,
  options: Pick<DeliveryOptions, "now"> = {},
): Promise<void> {
  const clock = options.now ?? Date.now;
  for (const message of batch.messages) {
    const body = parse(message);
    if (!body) continue;
    try {
      await markDeliveryDead(env, body, null, clock());
      message.ack();
    } catch (error) {
      logFailure("alert_delivery_dead_failed", body, error);
      message.retry();
    }
  }
}
