/**
 * Stored channels, alerts and outbox rows for the delivery tests, written the way the product writes them:
 * channel secrets sealed with the tenant's DEK (AAD-bound to the channel id), outbox rows by
 * `outboxStatements`. Channel configuration is written directly, so a test can also store what today's
 * validation would refuse (a URL saved under older rules).
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { and, eq } from "drizzle-orm";
import { vi } from "vitest";
import { sealValues } from "../../src/credentials/sealed-fields";
import { newId } from "../../src/crypto/random";
import { database } from "../../src/db/client";
import { alertChannels, alertDeliveries, alerts } from "../../src/db/schema";
import type { ChannelKind, DeliveryTransition } from "../../src/monitoring/alert-kinds";
import {
  consumeAlertDeliveries,
  consumeDeadDeliveries,
  type DeliveryOptions,
} from "../../src/monitoring/delivery-consumer";
import { type DeliveryMessage, outboxStatements } from "../../src/monitoring/outbox";
import { unseal } from "../../src/vault/keyring";
import type { TestTenant } from "../helpers/api";

const db = database(env.DB);

export async function storeChannel(
  tenant: TestTenant,
  kind: ChannelKind,
  config: Record<string, string>,
  secrets: Record<string, string> = {},
): Promise<string> {
  const id = newId("chan");
  const { sealed, dekVersion, countEncryptions } = await sealValues(
    await unseal(env, db),
    db,
    { tenantId: tenant.id, recordId: id },
    secrets,
  );
  await db.batch([
    db.insert(alertChannels).values({
      id,
      tenantId: tenant.id,
      kind,
      name: `${kind} ${id}`,
      config,
      sealedSecrets: sealed,
      dekVersion,
      createdAt: Date.now(),
      updatedAt: Date.now(),
    }),
    countEncryptions,
  ]);
  return id;
}

export interface AlertFixture {
  summary?: string;
  subjectType?: "key" | "credential" | "service" | "tenant" | "channel";
  subjectId?: string;
  severity?: "info" | "warning" | "critical";
  firedAt?: number;
}

export async function storeAlert(tenant: TestTenant, fixture: AlertFixture = {}): Promise<string> {
  const id = newId("alt");
  const subjectId = fixture.subjectId ?? newId("key");
  const firedAt = fixture.firedAt ?? Date.now();
  await db.insert(alerts).values({
    id,
    tenantId: tenant.id,
    ruleId: "default:expiry_warning",
    kind: "expiry_warning",
    severity: fixture.severity ?? "critical",
    state: "firing",
    subjectType: fixture.subjectType ?? "key",
    subjectId,
    fingerprint: `default:expiry_warning|key:${subjectId}|${id}`,
    summary: fixture.summary ?? "Key expires in 1 day",
    detail: { days_left: 1 },
    firedAt,
    lastSeenAt: firedAt,
  });
  return id;
}

/** One outbox row, inserted by the same statements the alert lifecycle uses; returns its id. */
export async function queueDelivery(
  tenant: TestTenant,
  alertId: string,
  channelId: string,
  transition: DeliveryTransition = "fired",
  now = Date.now(),
): Promise<string> {
  await db.batch(
    outboxStatements(db, { tenantId: tenant.id, alertId, channelIds: [channelId], transition, now }) as [
      ReturnType<typeof outboxStatements>[number],
    ],
  );
  const row = await db
    .select({ id: alertDeliveries.id })
    .from(alertDeliveries)
    .where(
      and(
        eq(alertDeliveries.alertId, alertId),
        eq(alertDeliveries.channelId, channelId),
        eq(alertDeliveries.transition, transition),
      ),
    )
    .get();
  if (!row) throw new Error("no outbox row");
  return row.id;
}

export function deliveryRow(id: string) {
  return db.select().from(alertDeliveries).where(eq(alertDeliveries.id, id)).get();
}

export function channelRow(id: string) {
  return db.select().from(alertChannels).where(eq(alertChannels.id, id)).get();
}

let messageCounter = 0;

function batchOf(queue: string, bodies: DeliveryMessage[], attempts: number) {
  return createMessageBatch<DeliveryMessage>(
    queue,
    bodies.map((body) => ({ id: `msg-${++messageCounter}`, timestamp: new Date(), attempts, body })),
  );
}

/**
 * Runs the alerts consumer on one batch: `getQueueResult` reports acks and retries; the retry delays come
 * from spies on each message's `retry`, which that result leaves out.
 */
export async function consume(bodies: DeliveryMessage[], options: DeliveryOptions = {}, attempts = 1) {
  const batch = batchOf("keywarden-alerts", bodies, attempts);
  const retries = batch.messages.map((message) => vi.spyOn(message, "retry"));
  await consumeAlertDeliveries(batch, env, options);
  const result = await getQueueResult(batch, createExecutionContext());
  const retryDelays = retries.flatMap((spy) => spy.mock.calls.map(([o]) => o?.delaySeconds));
  return { ...result, retryDelays };
}

/** Runs the dead-letter consumer on one batch. */
export async function consumeDead(bodies: DeliveryMessage[], now = Date.now()) {
  const batch = batchOf("keywarden-alerts-dlq", bodies, 1);
  await consumeDeadDeliveries(batch, env, { now: () => now });
  return getQueueResult(batch, createExecutionContext());
}
