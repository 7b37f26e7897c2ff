import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../src/crypto/random";
import type { Bindings } from "../../src/env";
import worker from "../../src/index";
import { runAlertTick } from "../../src/monitoring/alert-tick";
import type { DeliveryMessage } from "../../src/monitoring/outbox";
import { createKey, createTenant, type TestTenant } from "../helpers/api";
import { insertChannelRow } from "./channel-rows";

const DAY = 86_400_000;
const HOUR = 3_600_000;
const BASE = Math.floor(Date.now() / DAY) * DAY + 12 * HOUR;

/** The alerts Queue, recorded instead of consumed: the tick's part ends when the message is handed over. */
function recordingQueue() {
  const sent: DeliveryMessage[] = [];
  const queue = {
    send: async (body: DeliveryMessage) => void sent.push(body),
    sendBatch: async (messages: Iterable<{ body: DeliveryMessage }>) => {
      for (const message of messages) sent.push(message.body);
    },
  };
  return { sent, env: { ...env, ALERT_QUEUE: queue as unknown as Queue } as Bindings };
}

const addChannel = (tenant: TestTenant, name: string) => insertChannelRow(tenant, name, BASE);

async function expiringKey(tenant: TestTenant, inDays: number) {
  const key = await createKey(tenant);
  await env.DB.prepare("UPDATE api_keys SET expires_at = ? WHERE id = ?")
    .bind(BASE + inDays * DAY, key.id)
    .run();
  return key;
}

async function alertsOf(tenantId: string) {
  const { results } = await env.DB.prepare(
    "SELECT id, rule_id, state, subject_id FROM alerts WHERE tenant_id = ? ORDER BY fired_at, id",
  )
    .bind(tenantId)
    .all<{ id: string; rule_id: string; state: string; subject_id: string }>();
  return results;
}

describe("the alert tick (runAlertTick on the cron)", () => {
  it("fires every tenant's default expiry reminders and hands their notifications to the alerts Queue, once, even when the same scheduled time ticks twice (threat model case 21)", async () => {
    const a = await createTenant();
    const b = await createTenant();
    const channel = await addChannel(a, "ops");
    const keyA = await expiringKey(a, 3);
    const keyB = await expiringKey(b, 20);
    const queue = recordingQueue();

    const first = await runAlertTick(queue.env, BASE);
    expect(first).toMatchObject({ fired: 2, relayed: 1 });
    expect(await alertsOf(a.id)).toMatchObject([{ rule_id: "default:expiry_warning", subject_id: keyA.id }]);
    expect(await alertsOf(b.id)).toMatchObject([{ rule_id: "default:expiry_warning", subject_id: keyB.id }]);
    const delivery = await env.DB.prepare(
      "SELECT id, channel_id, enqueued_at FROM alert_deliveries WHERE tenant_id = ?",
    )
      .bind(a.id)
      .first();
    expect(delivery).toMatchObject({ channel_id: channel, enqueued_at: BASE });
    expect(queue.sent).toEqual([{ tenantId: a.id, deliveryId: delivery?.id }]);

    // A duplicate tick at the same time: nothing new fires, nothing is handed over again.
    const again = await runAlertTick(queue.env, BASE);
    expect(again).toMatchObject({ fired: 0, relayed: 0 });
    expect(queue.sent).toHaveLength(1);
  });

  it("resolves, without notifying, the open alerts of a rule that was deleted or of a default that was replaced", async () => {
    const tenant = await createTenant();
    await addChannel(tenant, "ops");
    await expiringKey(tenant, 3);
    const queue = recordingQueue();
    await runAlertTick(queue.env, BASE);
    const [defaultAlert] = await alertsOf(tenant.id);

    // A stored expiry rule replaces the default: the default's alert closes, the stored rule's fires.
    const stored = newId("rul");
    await env.DB.prepare(
      `INSERT INTO alert_rules (id, tenant_id, name, kind, settings, channel_ids, created_at, updated_at)
       VALUES (?, ?, 'expiry', 'expiry_warning', '{"days_before":[5]}', '[]', ?, ?)`,
    )
      .bind(stored, tenant.id, BASE, BASE)
      .run();
    const report = await runAlertTick(queue.env, BASE + HOUR);
    expect(report.orphaned).toBe(1);
    const rows = await alertsOf(tenant.id);
    expect(rows.map((r) => [r.rule_id, r.state])).toEqual([
      ["default:expiry_warning", "resolved"],
      [stored, "firing"],
    ]);
    const resolvedNotices = await env.DB.prepare(
      "SELECT count(*) AS n FROM alert_deliveries WHERE alert_id = ? AND transition = 'resolved'",
    )
      .bind(defaultAlert?.id)
      .first<{ n: number }>();
    expect(resolvedNotices?.n).toBe(0);

    // The stored rule deleted: its alert closes on the next tick (and the default fires again).
    await env.DB.prepare("DELETE FROM alert_rules WHERE id = ?").bind(stored).run();
    await runAlertTick(queue.env, BASE + 3 * HOUR);
    const after = await alertsOf(tenant.id);
    expect(after.find((r) => r.rule_id === stored)?.state).toBe("resolved");
  });

  it("runs on the cron trigger with the scheduled time as now", async () => {
    const tenant = await createTenant();
    const key = await expiringKey(tenant, 300);
    const queue = recordingQueue();
    const ctx = createExecutionContext();
    await worker.scheduled(
      createScheduledController({ scheduledTime: BASE + 299 * DAY, cron: "*/5 * * * *" }),
      { ...queue.env, RETEST_QUEUE: queue.env.ALERT_QUEUE },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(await alertsOf(tenant.id)).toMatchObject([{ subject_id: key.id, state: "firing" }]);
  });
});
