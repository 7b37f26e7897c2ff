import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { stripeKey } from "../credentials/samples";
import { callJson, createTenant } from "../helpers/api";
import { countRows } from "../helpers/db";

/**
 * The re-tests this cron enqueues are recorded, not delivered: a month ahead every credential here is due,
 * and its live probe would reach for a real provider (test/lifecycle/retests.test.ts covers the consumer).
 */
const enqueued: unknown[] = [];
const recordingQueue = {
  send: async (body: unknown) => void enqueued.push(body),
  sendBatch: async (messages: { body: unknown }[]) => void enqueued.push(...messages.map((m) => m.body)),
};

async function runCron(scheduledTime: number) {
  const ctx = createExecutionContext();
  await worker.scheduled(
    createScheduledController({ scheduledTime, cron: "*/5 * * * *" }),
    { ...env, RETEST_QUEUE: recordingQueue as unknown as Queue },
    ctx,
  );
  await waitOnExecutionContext(ctx);
}

describe("scheduled jobs", () => {
  it("purges a soft-deleted credential only after its 30-day restore window, with an audit row", async () => {
    const tenant = await createTenant("cron");
    const created = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
      key: tenant.adminKey,
      body: { service: "stripe", environment: "development", fields: { secret_key: stripeKey() } },
    });
    const rotation = await callJson("PUT", `/api/v1/credentials/${created.body.id}/rotation`, {
      key: tenant.adminKey,
      body: { method: "assisted", policy_days: 30 },
    });
    expect(rotation.status).toBe(200);
    await callJson("DELETE", `/api/v1/credentials/${created.body.id}`, {
      key: tenant.adminKey,
      headers: { "if-match": created.headers.get("etag") as string },
    });
    const versionsBefore = await countRows("credential_versions");

    await runCron(Date.now() + 29 * 86_400_000);
    expect(await countRows("credential_versions")).toBe(versionsBefore);

    await runCron(Date.now() + 31 * 86_400_000);
    const row = await env.DB.prepare("SELECT id FROM credentials WHERE id = ?").bind(created.body.id).first();
    expect(row).toBeNull();
    const settings = await env.DB.prepare("SELECT 1 FROM credential_rotations WHERE credential_id = ?")
      .bind(created.body.id)
      .first();
    expect(settings).toBeNull();
    expect(await countRows("credential_versions")).toBe(versionsBefore - 1);
    const audit = await callJson<{ items: { action: string; actor_type: string }[] }>(
      "GET",
      "/api/v1/audit",
      {
        key: tenant.adminKey,
      },
    );
    expect(audit.body.items[0]).toMatchObject({ action: "credential.purge", actor_type: "system" });
    const chain = await callJson<{ ok: boolean }>("GET", "/api/v1/audit/verify", { key: tenant.adminKey });
    expect(chain.body.ok).toBe(true);
  });

  it("drops per-day usage rows older than the retention period", async () => {
    const today = Math.floor(Date.now() / 86_400_000) * 86_400_000;
    await env.DB.prepare(
      "INSERT INTO usage_counts (tenant_id, key_id, bucket, start, valid) VALUES ('t', 'k', 'day', ?, 1), ('t', 'k', 'day', ?, 1)",
    )
      .bind(Date.parse("2001-01-01"), today)
      .run();
    await runCron(Date.now());
    const days = await env.DB.prepare("SELECT start FROM usage_counts WHERE key_id = 'k'").all<{
      start: number;
    }>();
    expect(days.results.map((d) => d.start)).toEqual([today]);
  });
});
