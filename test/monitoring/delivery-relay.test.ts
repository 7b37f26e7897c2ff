/**
 * relayOutbox: pending outbox rows handed to the alerts Queue. It scans every tenant's outbox, so this file
 * runs in its own workerd and database (vitest.config.ts ISOLATED). The Queue is a recording stand-in, so each
 * message can be read back, then fed to the real consumer.
 */
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Bindings } from "../../src/env";
import {
  type DeliveryMessage,
  RELAY_CHUNK,
  RELAY_MAX_CHUNKS,
  RELAY_RESEND_AFTER_MS,
  relayOutbox,
} from "../../src/monitoring/outbox";
import { newSigningSecret } from "../../src/monitoring/standard-webhooks";
import { createTenant } from "../helpers/api";
import { network } from "../setup/network";
import { consume, deliveryRow, queueDelivery, storeAlert, storeChannel } from "./delivery-fixtures";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

/** A queue that keeps what it is sent; `failNext` makes the next sendBatch throw without keeping anything. */
class RecordingQueue {
  readonly sent: MessageSendRequest<DeliveryMessage>[] = [];
  failNext = false;
  async send(): Promise<QueueSendResponse> {
    throw new Error("relayOutbox sends in batches");
  }
  async sendBatch(messages: Iterable<MessageSendRequest<DeliveryMessage>>): Promise<QueueSendBatchResponse> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error("queue unavailable");
    }
    this.sent.push(...messages);
    return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
  }
  async metrics(): Promise<QueueMetrics> {
    return { backlogCount: 0, backlogBytes: 0 };
  }
}

function relayEnv(queue: RecordingQueue): Pick<Bindings, "DB" | "ALERT_QUEUE"> {
  return { DB: env.DB, ALERT_QUEUE: queue as unknown as Queue };
}

async function clearOutbox() {
  await env.DB.prepare("DELETE FROM alert_deliveries").run();
}

async function pendingFixture(name: string, count: number) {
  const tenant = await createTenant(name);
  const channelId = await storeChannel(
    tenant,
    "webhook",
    { url: "https://hooks.example.com/relay" },
    {
      signing_secret: newSigningSecret(),
    },
  );
  const ids: string[] = [];
  for (let n = 0; n < count; n++) ids.push(await queueDelivery(tenant, await storeAlert(tenant), channelId));
  return { tenant, channelId, ids };
}

const NOW = Date.UTC(2031, 0, 6, 3, 0, 0);

describe("relayOutbox (the outbox relay)", () => {
  it("hands each pending row to the Queue once, with ids only, and stamps enqueued_at", async () => {
    await clearOutbox();
    const { tenant, ids } = await pendingFixture("relay-once", 3);
    const queue = new RecordingQueue();

    const first = await relayOutbox(relayEnv(queue), NOW);
    const second = await relayOutbox(relayEnv(queue), NOW + 60_000);

    expect(first.relayed).toBe(3);
    expect(second.relayed).toBe(0);
    expect(queue.sent.map((m) => m.body)).toHaveLength(3);
    expect(queue.sent.map((m) => m.body)).toEqual(
      expect.arrayContaining(ids.map((deliveryId) => ({ tenantId: tenant.id, deliveryId }))),
    );
    for (const id of ids) expect(await deliveryRow(id)).toMatchObject({ state: "pending", enqueuedAt: NOW });
  });

  it("takes its claim back when the Queue refuses the batch, so the next relay sends it at once", async () => {
    await clearOutbox();
    const { ids } = await pendingFixture("relay-send-fails", 2);
    const queue = new RecordingQueue();
    queue.failNext = true;

    await expect(relayOutbox(relayEnv(queue), NOW)).rejects.toThrow("queue unavailable");
    for (const id of ids) expect(await deliveryRow(id)).toMatchObject({ enqueuedAt: null });

    expect((await relayOutbox(relayEnv(queue), NOW + 1_000)).relayed).toBe(2);
    expect(queue.sent).toHaveLength(2);
  });

  it(`hands a row over again only when it is still pending ${RELAY_RESEND_AFTER_MS / 60_000} minutes later`, async () => {
    await clearOutbox();
    const { ids } = await pendingFixture("relay-resend", 1);
    const queue = new RecordingQueue();

    await relayOutbox(relayEnv(queue), NOW);
    expect((await relayOutbox(relayEnv(queue), NOW + RELAY_RESEND_AFTER_MS - 1)).relayed).toBe(0);
    expect((await relayOutbox(relayEnv(queue), NOW + RELAY_RESEND_AFTER_MS)).relayed).toBe(1);
    expect(queue.sent.map((m) => m.body.deliveryId)).toEqual([ids[0], ids[0]]);
  });

  it("never hands the same row to two relays running at the same moment", async () => {
    await clearOutbox();
    const { ids } = await pendingFixture("relay-concurrent", 5);
    const queue = new RecordingQueue();

    const reports = await Promise.all([relayOutbox(relayEnv(queue), NOW), relayOutbox(relayEnv(queue), NOW)]);

    expect(reports[0].relayed + reports[1].relayed).toBe(5);
    expect(queue.sent.map((m) => m.body.deliveryId).sort()).toEqual([...ids].sort());
  });

  it(`is bounded: at most ${RELAY_MAX_CHUNKS} chunks of ${RELAY_CHUNK} per call; the rest wait for the next`, async () => {
    await clearOutbox();
    const total = RELAY_CHUNK * RELAY_MAX_CHUNKS + 7;
    // Synthetic outbox rows, written in one statement (the relay reads only state, enqueued_at and ids).
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
       INSERT INTO alert_deliveries (id, tenant_id, alert_id, channel_id, transition, state, created_at, updated_at)
       SELECT 'dlv_bulk' || i, 'ten_bulk', 'alt_bulk' || i, 'chan_bulk', 'fired', 'pending', ?2, ?2 FROM n`,
    )
      .bind(total, NOW)
      .run();
    const queue = new RecordingQueue();

    const first = await relayOutbox(relayEnv(queue), NOW);
    const second = await relayOutbox(relayEnv(queue), NOW);

    expect(first).toEqual({ relayed: RELAY_CHUNK * RELAY_MAX_CHUNKS, d1Calls: RELAY_MAX_CHUNKS });
    expect(second.relayed).toBe(7);
    expect(new Set(queue.sent.map((m) => m.body.deliveryId)).size).toBe(total);
  });

  it("end to end: a relayed message is consumed and delivered", async () => {
    await clearOutbox();
    const { ids } = await pendingFixture("relay-end-to-end", 1);
    const queue = new RecordingQueue();
    let calls = 0;
    network.use(
      http.post("https://hooks.example.com/relay", () => {
        calls++;
        return new HttpResponse(null, { status: 204 });
      }),
    );

    await relayOutbox(relayEnv(queue), NOW);
    await consume(queue.sent.map((m) => m.body));

    expect(calls).toBe(1);
    expect(await deliveryRow(ids[0] as string)).toMatchObject({ state: "delivered", enqueuedAt: NOW });
  });
});
