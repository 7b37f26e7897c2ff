/**
 * The alerts Queue consumer against receivers (MSW inside workerd) that answer, fail, time out and recover:
 * what each channel kind sends, the delivery log, retries with growing delays, the dead-letter queue and the
 * channel's health. The consumer is driven with `createMessageBatch`; acks and retries are read with
 * `getQueueResult` and spies on `retry` (test/lifecycle/retests.test.ts does the same for re-tests).
 */
import { createMessageBatch } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { delay, HttpResponse, http } from "msw";
import { Webhook } from "standardwebhooks";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { fromBase64 } from "../../src/crypto/encoding";
import worker from "../../src/index";
import { renderAlert } from "../../src/monitoring/alert-message";
import { mimeMessage } from "../../src/monitoring/channel-senders";
import {
  CHANNEL_FAILING_AFTER,
  DELIVERY_RETRY_MAX_S,
  deliveryRetryDelaySeconds,
} from "../../src/monitoring/delivery-consumer";
import { newSigningSecret } from "../../src/monitoring/standard-webhooks";
import { callJson, createTenant, type TestTenant } from "../helpers/api";
import { network } from "../setup/network";
import {
  channelRow,
  consume,
  consumeDead,
  deliveryRow,
  queueDelivery,
  storeAlert,
  storeChannel,
} from "./delivery-fixtures";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const HOOK = "https://hooks.example.com/keywarden";
const SLACK = "https://hooks.slack.com/services/T0001/B0001/abcdefSECRETslack";
const SID = `AC${"1b".repeat(16)}`;
const TWILIO_TOKEN = "c".repeat(32);
const TWILIO = `https://api.twilio.com/2010-04-01/Accounts/${SID}/Messages.json`;

interface Received {
  headers: Record<string, string>;
  body: string;
}

/** A webhook receiver that answers each request with the next status of `statuses` (the last one repeats). */
function receiver(url: string, statuses: number[]): Received[] {
  const received: Received[] = [];
  network.use(
    http.post(url, async ({ request }) => {
      received.push({ headers: Object.fromEntries(request.headers), body: await request.text() });
      const status = statuses[Math.min(received.length - 1, statuses.length - 1)] as number;
      return new HttpResponse(status === 204 ? null : "receiver says no", { status });
    }),
  );
  return received;
}

async function webhookSetup(name: string) {
  const tenant = await createTenant(name);
  const secret = newSigningSecret();
  const channelId = await storeChannel(tenant, "webhook", { url: HOOK }, { signing_secret: secret });
  return { tenant, secret, channelId };
}

function randomBase64Url(length: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  return Array.from(crypto.getRandomValues(new Uint8Array(length)), (byte) => alphabet[byte % 64]).join("");
}

function message(tenant: TestTenant, deliveryId: string) {
  return { tenantId: tenant.id, deliveryId };
}

describe("deliveryRetryDelaySeconds: exponential backoff with equal jitter", () => {
  it("grows attempt after attempt whatever the jitter draws, and stops at the cap", () => {
    // Attempts 1 to 5 are the queue's max_retries: each delay is at least the longest the one before could be.
    for (let attempt = 1; attempt < 5; attempt++) {
      const longestNow = deliveryRetryDelaySeconds(attempt, () => 1);
      expect(deliveryRetryDelaySeconds(attempt, () => 0)).toBeLessThan(longestNow);
      expect(deliveryRetryDelaySeconds(attempt + 1, () => 0)).toBeGreaterThanOrEqual(longestNow);
    }
    expect(deliveryRetryDelaySeconds(1, () => 0)).toBe(30);
    expect(deliveryRetryDelaySeconds(1, () => 1)).toBe(60);
    expect(deliveryRetryDelaySeconds(20, () => 1)).toBe(DELIVERY_RETRY_MAX_S);
    expect(deliveryRetryDelaySeconds(20, () => 0)).toBe(DELIVERY_RETRY_MAX_S / 2);
  });
});

describe("consumeAlertDeliveries: a webhook channel", () => {
  it("delivers a fired alert signed per Standard Webhooks, verifiable by the reference verifier, and logs it", async () => {
    const { tenant, secret, channelId } = await webhookSetup("delivery-webhook");
    const alertId = await storeAlert(tenant, { summary: "Key payments-prod expires in 1 day" });
    const deliveryId = await queueDelivery(tenant, alertId, channelId);
    const received = receiver(HOOK, [204]);
    const now = Date.now();

    const result = await consume([message(tenant, deliveryId)], { now: () => now });

    expect(result.explicitAcks).toHaveLength(1);
    expect(received).toHaveLength(1);
    const [request] = received as [Received];
    const payload = new Webhook(secret).verify(request.body, request.headers) as {
      type: string;
      data: { alert: Record<string, unknown> };
    };
    expect(request.headers["webhook-id"]).toBe(deliveryId);
    expect(payload.type).toBe("alert.fired");
    expect(payload.data.alert).toMatchObject({
      id: alertId,
      kind: "expiry_warning",
      severity: "critical",
      summary: "Key payments-prod expires in 1 day",
      url: `/console/#/alerts/${alertId}`,
    });
    expect(() => new Webhook(secret).verify(`${request.body} `, request.headers)).toThrow();
    expect(await deliveryRow(deliveryId)).toMatchObject({
      state: "delivered",
      attempts: 1,
      lastStatus: 204,
      lastError: null,
      deliveredAt: now,
    });
    expect((await deliveryRow(deliveryId))?.latencyMs).toBeGreaterThanOrEqual(0);
    expect(await channelRow(channelId)).toMatchObject({ health: "healthy", lastDeliveryAt: now });
  });

  it("retries a failing receiver with growing delays, keeping the status and a reason word, never its answer", async () => {
    const { tenant, channelId } = await webhookSetup("delivery-retries");
    const deliveryId = await queueDelivery(tenant, await storeAlert(tenant), channelId);
    const received = receiver(HOOK, [503]);

    const delays: number[] = [];
    for (let attempt = 1; attempt <= 5; attempt++) {
      const result = await consume([message(tenant, deliveryId)], { random: () => 0.5 }, attempt);
      expect(result.explicitAcks).toEqual([]);
      delays.push(...(result.retryDelays as number[]));
    }

    expect(received).toHaveLength(5);
    expect(delays).toEqual([45, 90, 180, 360, 720]);
    const row = await deliveryRow(deliveryId);
    expect(row).toMatchObject({ state: "retrying", attempts: 5, lastStatus: 503, lastError: "http_503" });
    expect(JSON.stringify(row)).not.toContain("receiver says no");
    // Retries alone do not count against the channel: only a delivery that gave up does.
    expect(await channelRow(channelId)).toMatchObject({ consecutiveFailures: 0, health: "healthy" });
  });

  it("retries a receiver that times out, and delivers once it recovers, ending the channel's failure streak", async () => {
    const { tenant, channelId } = await webhookSetup("delivery-timeout");
    await env.DB.prepare(
      "UPDATE alert_channels SET consecutive_failures = 2, last_error = 'timeout' WHERE id = ?",
    )
      .bind(channelId)
      .run();
    const deliveryId = await queueDelivery(tenant, await storeAlert(tenant), channelId);
    network.use(http.post(HOOK, async () => delay("infinite")));

    const slow = await consume([message(tenant, deliveryId)], { timeoutMs: 50 });
    expect(slow.retryDelays).toHaveLength(1);
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "retrying", lastError: "timeout" });

    network.resetHandlers();
    receiver(HOOK, [200]);
    const recovered = await consume([message(tenant, deliveryId)], {}, 2);
    expect(recovered.explicitAcks).toHaveLength(1);
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "delivered", attempts: 2, lastStatus: 200 });
    expect(await channelRow(channelId)).toMatchObject({
      consecutiveFailures: 0,
      health: "healthy",
      lastError: null,
    });
  });

  it("sends nothing twice: a redelivered message after delivery, and two messages for one row at once", async () => {
    const { tenant, channelId } = await webhookSetup("delivery-once");
    const deliveryId = await queueDelivery(tenant, await storeAlert(tenant), channelId);
    const received = receiver(HOOK, [204]);

    const both = await consume([message(tenant, deliveryId), message(tenant, deliveryId)]);
    const again = await consume([message(tenant, deliveryId)], {}, 2);

    expect(received).toHaveLength(1);
    expect(both.explicitAcks).toHaveLength(2);
    expect(again.explicitAcks).toHaveLength(1);
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "delivered", attempts: 1 });
  });

  it("gives up at once, without a request, on a stored URL the SSRF guard refuses (threat model case 31)", async () => {
    const tenant = await createTenant("delivery-ssrf");
    const channelId = await storeChannel(
      tenant,
      "webhook",
      { url: "https://[::ffff:a9fe:a9fe]/latest/meta-data/" },
      { signing_secret: newSigningSecret() },
    );
    const deliveryId = await queueDelivery(tenant, await storeAlert(tenant), channelId);
    const fetchSpy = vi.spyOn(globalThis, "fetch");
    try {
      const result = await consume([message(tenant, deliveryId)]);
      expect(result.explicitAcks).toHaveLength(1);
      expect(fetchSpy).not.toHaveBeenCalled();
    } finally {
      fetchSpy.mockRestore();
    }
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "dead", lastError: "url_refused" });
    expect(await channelRow(channelId)).toMatchObject({ consecutiveFailures: 1 });
  });

  it("marks a delivery to a deleted channel dead without sending", async () => {
    const { tenant, channelId } = await webhookSetup("delivery-deleted-channel");
    const deliveryId = await queueDelivery(tenant, await storeAlert(tenant), channelId);
    await env.DB.prepare("DELETE FROM alert_channels WHERE id = ?").bind(channelId).run();

    const result = await consume([message(tenant, deliveryId)]);

    expect(result.explicitAcks).toHaveLength(1);
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "dead", lastError: "channel_deleted" });
  });

  it("acks a message naming another tenant's delivery without touching it", async () => {
    const { tenant, channelId } = await webhookSetup("delivery-owner");
    const other = await createTenant("delivery-other");
    const deliveryId = await queueDelivery(tenant, await storeAlert(tenant), channelId);

    const result = await consume([message(other, deliveryId)]);

    expect(result.explicitAcks).toHaveLength(1);
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "pending", attempts: 0 });
  });
});

describe("consumeDeadDeliveries: the dead-letter queue and channel health", () => {
  it(`marks each delivery dead once and turns the channel failing after ${CHANNEL_FAILING_AFTER} in a row, audited`, async () => {
    const { tenant, channelId } = await webhookSetup("delivery-dlq");
    receiver(HOOK, [500]);
    const deliveries: string[] = [];
    for (let n = 0; n < CHANNEL_FAILING_AFTER; n++) {
      const deliveryId = await queueDelivery(tenant, await storeAlert(tenant), channelId);
      await consume([message(tenant, deliveryId)]);
      deliveries.push(deliveryId);
    }

    const first = deliveries[0] as string;
    await consumeDead([message(tenant, first)]);
    await consumeDead([message(tenant, first)]);
    expect(await deliveryRow(first)).toMatchObject({ state: "dead", lastError: "http_500" });
    expect(await channelRow(channelId)).toMatchObject({ consecutiveFailures: 1, health: "healthy" });

    for (const deliveryId of deliveries.slice(1)) {
      const result = await consumeDead([message(tenant, deliveryId)]);
      expect(result.explicitAcks).toHaveLength(1);
    }
    expect(await channelRow(channelId)).toMatchObject({
      consecutiveFailures: CHANNEL_FAILING_AFTER,
      health: "failing",
      lastError: "http_500",
    });

    const audit = await callJson<{ items: { action: string; target: { id: string } }[] }>(
      "GET",
      "/api/v1/audit?limit=100",
      { key: tenant.adminKey },
    );
    const dead = audit.body.items.filter((item) => item.action === "alert.delivery_dead");
    expect(dead).toHaveLength(CHANNEL_FAILING_AFTER);
  });
});

describe("each channel kind sends a concise message with the console link, never a secret", () => {
  it("Slack: escapes markup so a name in the summary cannot ping @channel or disguise a link", async () => {
    const tenant = await createTenant("delivery-slack");
    const channelId = await storeChannel(tenant, "slack", {}, { webhook_url: SLACK });
    const alertId = await storeAlert(tenant, {
      summary: "Key <!channel> <https://evil.example|x> & co expires",
    });
    const deliveryId = await queueDelivery(tenant, alertId, channelId);
    let text = "";
    network.use(
      http.post(SLACK, async ({ request }) => {
        text = ((await request.json()) as { text: string }).text;
        return new HttpResponse("ok");
      }),
    );

    await consume([message(tenant, deliveryId)]);

    expect(text).toContain("&lt;!channel&gt; &lt;https://evil.example|x&gt; &amp; co");
    expect(text).not.toContain("<!channel>");
    expect(text).toContain(`</console/#/alerts/${alertId}|Open the alert>`);
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "delivered" });
  });

  it("Twilio SMS: one short line with the alert link, authenticated with the sealed token", async () => {
    const tenant = await createTenant("delivery-sms");
    const channelId = await storeChannel(
      tenant,
      "sms",
      { to: "+14155550100", from: "+14155550101", twilio_account_sid: SID },
      { twilio_auth_token: TWILIO_TOKEN },
    );
    const alertId = await storeAlert(tenant, { summary: "Rotation of key billing failed" });
    const deliveryId = await queueDelivery(tenant, alertId, channelId);
    let seen: { auth: string | null; form: Record<string, string> } | undefined;
    network.use(
      http.post(TWILIO, async ({ request }) => {
        seen = {
          auth: request.headers.get("authorization"),
          form: Object.fromEntries(new URLSearchParams(await request.text())),
        };
        return HttpResponse.json({ sid: "SM1" }, { status: 201 });
      }),
    );

    await consume([message(tenant, deliveryId)]);

    expect(seen?.auth).toBe(`Basic ${btoa(`${SID}:${TWILIO_TOKEN}`)}`);
    expect(seen?.form).toEqual({
      To: "+14155550100",
      From: "+14155550101",
      Body: `Keywarden CRITICAL: Rotation of key billing failed /console/#/alerts/${alertId}`,
    });
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "delivered", lastStatus: 201 });
  });

  it("e-mail: through the send_email binding, a subject that cannot inject headers, a base64 body with links", async () => {
    const tenant = await createTenant("delivery-email");
    const channelId = await storeChannel(tenant, "email", { to: "ops@example.com" });
    const summary = "Key x expires\r\nBcc: victim@example.com";
    const alertId = await storeAlert(tenant, { summary, subjectId: "key_abc" });
    const deliveryId = await queueDelivery(tenant, alertId, channelId);
    const send = vi.spyOn(env.EMAIL, "send").mockResolvedValue({ messageId: "m1" });
    try {
      await consume([message(tenant, deliveryId)]);
      const sent = send.mock.calls[0]?.[0] as unknown as { from: string; to: string };
      expect(sent).toMatchObject({ from: env.ALERT_FROM_ADDRESS, to: "ops@example.com" });
    } finally {
      send.mockRestore();
    }
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "delivered" });

    // The MIME text the binding was given, built by the same function from the same alert.
    const alert = await env.DB.prepare("SELECT * FROM alerts WHERE id = ?").bind(alertId).first();
    const rendered = renderAlert(
      {
        id: alertId,
        kind: "expiry_warning",
        severity: "critical",
        state: "firing",
        subjectType: "key",
        subjectId: "key_abc",
        summary: String(alert?.summary),
        detail: { days_left: 1 },
        firedAt: Number(alert?.fired_at),
        resolvedAt: null,
      },
      "fired",
      "https://keywarden.example.com/",
    );
    const raw = mimeMessage(
      env.ALERT_FROM_ADDRESS,
      "ops@example.com",
      { id: deliveryId, message: rendered },
      0,
    );
    const [head, body] = raw.split("\r\n\r\n") as [string, string];
    expect(head).toMatch(
      /^Subject: \[Keywarden\] CRITICAL alert firing: Key x expires Bcc: victim@example\.com$/m,
    );
    expect(head).not.toMatch(/^Bcc:/m);
    expect(head).toMatch(new RegExp(`^Message-ID: <${deliveryId}@keywarden>$`, "m"));
    const text = new TextDecoder().decode(fromBase64(body.replaceAll("\r\n", "")));
    expect(text).toContain(`Alert: https://keywarden.example.com/console/#/alerts/${alertId}`);
    expect(text).toContain("Key: https://keywarden.example.com/console/#/keys/key_abc");
    expect(body.split("\r\n").every((line) => line.length <= 76)).toBe(true);
  });

  it("e-mail through the tenant's own SendGrid credential (v3 mail/send), the key opened for the call only", async () => {
    const tenant = await createTenant("delivery-sendgrid");
    const apiKey = `SG.${randomBase64Url(22)}.${randomBase64Url(43)}`;
    const stored = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
      key: tenant.adminKey,
      body: { service: "sendgrid", environment: "development", fields: { api_key: apiKey } },
    });
    expect(stored.status).toBe(201);
    const channelId = await storeChannel(tenant, "email", {
      to: "ops@example.com",
      via: "sendgrid",
      credential_id: stored.body.id,
      from: "alerts@acme.example",
    });
    const deliveryId = await queueDelivery(tenant, await storeAlert(tenant), channelId);
    let seen: { auth: string | null; body: Record<string, unknown> } | undefined;
    network.use(
      http.post("https://api.sendgrid.com/v3/mail/send", async ({ request }) => {
        seen = {
          auth: request.headers.get("authorization"),
          body: (await request.json()) as Record<string, unknown>,
        };
        return new HttpResponse(null, { status: 202 });
      }),
    );

    await consume([message(tenant, deliveryId)]);

    expect(seen?.auth).toBe(`Bearer ${apiKey}`);
    expect(seen?.body).toMatchObject({
      personalizations: [{ to: [{ email: "ops@example.com" }] }],
      from: { email: "alerts@acme.example" },
    });
    expect(await deliveryRow(deliveryId)).toMatchObject({ state: "delivered", lastStatus: 202 });
    const dump = JSON.stringify(
      (await env.DB.prepare("SELECT * FROM alert_deliveries WHERE tenant_id = ?").bind(tenant.id).all())
        .results,
    );
    expect(dump).not.toContain(apiKey);
  });

  it("leaves no channel secret in any delivery row, channel row, audit row, queue message or log line", async () => {
    const { tenant, secret, channelId } = await webhookSetup("delivery-no-secrets");
    const slackId = await storeChannel(tenant, "slack", {}, { webhook_url: SLACK });
    const smsId = await storeChannel(
      tenant,
      "sms",
      { to: "+14155550100", from: "+14155550101", twilio_account_sid: SID },
      { twilio_auth_token: TWILIO_TOKEN },
    );
    const alertId = await storeAlert(tenant);
    const ids = [
      await queueDelivery(tenant, alertId, channelId),
      await queueDelivery(tenant, alertId, slackId),
      await queueDelivery(tenant, alertId, smsId),
    ];
    network.use(
      http.post(HOOK, () => new HttpResponse(`echo ${secret}`, { status: 500 })),
      http.post(SLACK, () => new HttpResponse(`echo ${SLACK}`, { status: 500 })),
      http.post(TWILIO, () => new HttpResponse(`echo ${TWILIO_TOKEN}`, { status: 500 })),
    );
    const lines: string[] = [];
    const capture = (...args: unknown[]) => void lines.push(args.map(String).join(" "));
    const spies = (["log", "warn", "error"] as const).map((level) =>
      vi.spyOn(console, level).mockImplementation(capture),
    );
    const messages = ids.map((id) => message(tenant, id));
    try {
      await consume(messages);
      await consumeDead(messages);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }

    const rows = await Promise.all(
      ["alert_deliveries", "alert_channels", "audit_log"].map(
        async (table) =>
          (await env.DB.prepare(`SELECT * FROM ${table} WHERE tenant_id = ?`).bind(tenant.id).all()).results,
      ),
    );
    const everything = JSON.stringify({ rows, lines, messages });
    for (const value of [secret, secret.slice(6), SLACK, "abcdefSECRETslack", TWILIO_TOKEN, "echo"]) {
      expect(everything).not.toContain(value);
    }
    expect(rows[0]).toHaveLength(3);
  });
});

describe("the Worker's queue handler", () => {
  it("routes keywarden-alerts to the delivery consumer and its dead-letter queue to the dead-delivery consumer", async () => {
    const { tenant, channelId } = await webhookSetup("delivery-dispatch");
    const sent = await queueDelivery(tenant, await storeAlert(tenant), channelId);
    const given = await queueDelivery(tenant, await storeAlert(tenant), channelId);
    const received = receiver(HOOK, [204]);

    await worker.queue(
      createMessageBatch("keywarden-alerts", [
        { id: "dispatch-1", timestamp: new Date(), attempts: 1, body: message(tenant, sent) },
      ]),
      env,
    );
    await worker.queue(
      createMessageBatch("keywarden-alerts-dlq", [
        { id: "dispatch-2", timestamp: new Date(), attempts: 1, body: message(tenant, given) },
      ]),
      env,
    );

    expect(received).toHaveLength(1);
    expect(await deliveryRow(sent)).toMatchObject({ state: "delivered" });
    expect(await deliveryRow(given)).toMatchObject({ state: "dead", attempts: 0 });
  });
});
