/**
 * Scheduled live re-tests: the cron part that enqueues due credentials, and the Queue consumer that probes
 * them (provider stand-ins through MSW inside workerd). The cron part is driven with a recording queue, so
 * every sent message and its delay can be read back; the consumer is driven with `createMessageBatch` and
 * its acks and retries read with `getQueueResult`. Recorded times come from an injected clock where a test
 * asserts them.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { findService } from "../../src/catalog";
import { recordLiveTest } from "../../src/credentials/live-test";
import { database } from "../../src/db/client";
import { credentials } from "../../src/db/schema";
import type { Bindings } from "../../src/env";
import {
  consumeRetests,
  enqueueDueRetests,
  MAX_DELAY_S,
  RETEST_CHUNK,
  RETEST_INTERVAL_MS,
  RETEST_MAX_CHUNKS,
  RETEST_SPACING_S,
  type RetestMessage,
  retestSpacingSeconds,
  retryDelaySeconds,
  runRetest,
} from "../../src/lifecycle/retests";
import { STAND_INS } from "../catalog/stand-ins";
import { stripeKey } from "../credentials/samples";
import { call, callJson, createTenant, type TestTenant } from "../helpers/api";
import { network } from "../setup/network";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

/** The tick time of every enqueue test: whatever a tick claims moves past it, so tests cannot see each other's rows. */
const T0 = Math.floor(Date.now() / 1000) * 1000;
/** The consumer's injected clock: an hour after T0, on a whole second (GitHub's expiry header has seconds). */
const NOW = T0 + 3_600_000;

const STRIPE_URL = "https://api.stripe.com/v1/balance";
const GITHUB_URL = "https://api.github.com/user";

function standIn(service: string) {
  const found = STAND_INS.find((entry) => entry.service === service);
  if (!found) throw new Error(`no stand-in for ${service}`);
  return found;
}

/** Every secret value stored by this file: none may appear in a message, event, audit row or log line. */
const secrets: string[] = [];

/** A queue that keeps what it is sent instead of delivering it. */
class RecordingQueue implements Queue<RetestMessage> {
  readonly batches: MessageSendRequest<RetestMessage>[][] = [];
  /** Throws after keeping a batch: the tick dies between sending and claiming. */
  failAfterSend = false;

  get sent(): MessageSendRequest<RetestMessage>[] {
    return this.batches.flat();
  }

  async metrics(): Promise<QueueMetrics> {
    return { backlogCount: 0, backlogBytes: 0 };
  }

  async send(body: RetestMessage, options: QueueSendOptions = {}): Promise<QueueSendResponse> {
    await this.sendBatch([{ body, ...options }]);
    return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
  }

  async sendBatch(messages: Iterable<MessageSendRequest<RetestMessage>>): Promise<QueueSendBatchResponse> {
    const batch = [...messages];
    if (batch.length > 100) throw new Error("Queues accept at most 100 messages per sendBatch");
    this.batches.push(batch);
    if (this.failAfterSend) throw new Error("the invocation died after sending");
    return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
  }
}

async function tick(now = T0) {
  const queue = new RecordingQueue();
  const tickEnv: Bindings = { ...env, RETEST_QUEUE: queue };
  const report = await enqueueDueRetests(tickEnv, now);
  return { queue, report };
}

async function storeStripe(tenant: TestTenant): Promise<string> {
  const secret = stripeKey();
  secrets.push(secret);
  return store(tenant, "stripe", { secret_key: secret });
}

async function storeGithub(tenant: TestTenant): Promise<string> {
  const fields = standIn("github").fields;
  secrets.push(...Object.values(fields));
  return store(tenant, "github", fields);
}

async function store(tenant: TestTenant, service: string, fields: Record<string, string>): Promise<string> {
  const response = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service, environment: "development", fields },
  });
  if (response.status !== 201) throw new Error(JSON.stringify(response.body));
  return response.body.id;
}

async function setDue(id: string, at: number): Promise<void> {
  await env.DB.prepare("UPDATE credentials SET next_test_at = ? WHERE id = ?").bind(at, id).run();
}

async function rowOf(id: string) {
  const row = await database(env.DB).select().from(credentials).where(eq(credentials.id, id)).get();
  if (!row) throw new Error(`no credential ${id}`);
  return row;
}

async function eventsOf(id: string) {
  const rows = await env.DB.prepare(
    "SELECT kind, severity, dedupe_key, detail, at FROM events WHERE subject_id = ? ORDER BY at, kind",
  )
    .bind(id)
    .all<{ kind: string; severity: string; dedupe_key: string; detail: string; at: number }>();
  return rows.results.map((row) => ({ ...row, detail: JSON.parse(row.detail) as Record<string, unknown> }));
}

async function auditOf(id: string) {
  const rows = await env.DB.prepare(
    "SELECT action, actor_type, actor_id, detail FROM audit_log WHERE target_id = ? ORDER BY seq",
  )
    .bind(id)
    .all<{ action: string; actor_type: string; actor_id: string; detail: string }>();
  return rows.results;
}

/** Answers the stripe probe with `answer` and counts the probes. */
function stripeAnswers(answer: () => Response) {
  const probes = { count: 0 };
  network.use(
    http.get(STRIPE_URL, () => {
      probes.count++;
      return answer();
    }),
  );
  return probes;
}

/** GitHub's token-expiry header (`2026-12-31 23:59:59 UTC`) for `at`. */
function githubExpiry(at: number): string {
  return `${new Date(at).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

function githubAnswers(expiresAt: number) {
  network.use(
    http.get(GITHUB_URL, () =>
      HttpResponse.json(
        { login: "octocat", id: 1, type: "User" },
        { headers: { "github-authentication-token-expiration": githubExpiry(expiresAt) } },
      ),
    ),
  );
}

let messageCounter = 0;
function batchOf(bodies: unknown[], attempts = 1): MessageBatch<RetestMessage> {
  return createMessageBatch<RetestMessage>(
    "keywarden-retests",
    bodies.map((body) => ({
      id: `msg-${++messageCounter}`,
      timestamp: NOW,
      attempts,
      body: body as RetestMessage,
    })),
  );
}

/**
 * Runs the consumer on one batch. `getQueueResult` reports acks and retries; the retry delays are read
 * from spies on each message's `retry`, which that result leaves out.
 */
async function deliver(bodies: unknown[], attempts = 1) {
  const batch = batchOf(bodies, attempts);
  const retries = batch.messages.map((m) => vi.spyOn(m, "retry"));
  await consumeRetests(batch, env);
  const result = await getQueueResult(batch, createExecutionContext());
  const retryDelays = retries.flatMap((spy) => spy.mock.calls.map(([options]) => options?.delaySeconds));
  return { ...result, retryDelays };
}

/** Runs `run` with console output captured instead of printed. */
async function capturingLogs<T>(run: () => Promise<T>): Promise<{ value: T; lines: string[] }> {
  const lines: string[] = [];
  const capture = (...args: unknown[]) => {
    lines.push(args.map(String).join(" "));
  };
  const spies = [
    vi.spyOn(console, "log").mockImplementation(capture),
    vi.spyOn(console, "warn").mockImplementation(capture),
    vi.spyOn(console, "error").mockImplementation(capture),
  ];
  try {
    return { value: await run(), lines };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

function message(tenant: TestTenant, credentialId: string, dueAt: number): RetestMessage {
  return { tenantId: tenant.id, credentialId, dueAt };
}

describe("enqueueDueRetests: the cron part", () => {
  it("sends one message per due active credential, oldest first, with ids and the due time only", async () => {
    const tenant = await createTenant("retests-enqueue");
    const first = await storeStripe(tenant);
    const second = await storeStripe(tenant);
    const notDue = await storeStripe(tenant);
    await setDue(first, T0 - 2_000);
    await setDue(second, T0 - 1_000);
    const notDueBefore = (await rowOf(notDue)).nextTestAt;

    const { queue, report } = await tick();

    expect(queue.sent.map((m) => m.body)).toEqual([
      { tenantId: tenant.id, credentialId: first, dueAt: T0 - 2_000 },
      { tenantId: tenant.id, credentialId: second, dueAt: T0 - 1_000 },
    ]);
    expect(report.enqueued).toBe(2);
    const wire = JSON.stringify(queue.sent);
    for (const secret of secrets) expect(wire).not.toContain(secret);
    // Claimed a full interval past the tick's own time; the credential not yet due is untouched.
    expect((await rowOf(first)).nextTestAt).toBe(T0 + RETEST_INTERVAL_MS);
    expect((await rowOf(second)).nextTestAt).toBe(T0 + RETEST_INTERVAL_MS);
    expect((await rowOf(notDue)).nextTestAt).toBe(notDueBefore);
    expect(notDueBefore).toBeGreaterThan(T0);
  });

  it("sends nothing twice: a second tick with the same time finds nothing due", async () => {
    const tenant = await createTenant("retests-twice");
    const id = await storeStripe(tenant);
    await setDue(id, T0 - 1);

    const once = await tick();
    const again = await tick();

    expect(once.queue.sent.map((m) => m.body.credentialId)).toEqual([id]);
    expect(again.queue.sent).toEqual([]);
    expect(again.report).toEqual({ enqueued: 0, d1Calls: 1 });
  });

  it("keeps a deleted credential scheduled without sending it, so a restore resumes its re-tests", async () => {
    const tenant = await createTenant("retests-deleted");
    const id = await storeStripe(tenant);
    const etag = (await call("GET", `/api/v1/credentials/${id}`, { key: tenant.adminKey })).headers.get(
      "etag",
    );
    const deleted = await call("DELETE", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      headers: { "if-match": etag ?? "" },
    });
    expect(deleted.status).toBe(204);
    await setDue(id, T0 - 1);

    const { queue } = await tick();

    expect(queue.sent).toEqual([]);
    expect((await rowOf(id)).nextTestAt).toBe(T0 + RETEST_INTERVAL_MS);
  });

  it("spaces one provider's messages by its spacing, each provider starting at no delay", async () => {
    const tenant = await createTenant("retests-spacing");
    const stripeIds = [await storeStripe(tenant), await storeStripe(tenant), await storeStripe(tenant)];
    const githubIds = [await storeGithub(tenant), await storeGithub(tenant)];
    // Interleaved due times, so the order of the tick is stripe, github, stripe, github, stripe.
    const order = [stripeIds[0], githubIds[0], stripeIds[1], githubIds[1], stripeIds[2]];
    for (const [i, id] of order.entries()) await setDue(id as string, T0 - 10_000 + i);

    const { queue } = await tick();

    const delayOf = (id: string) => queue.sent.find((m) => m.body.credentialId === id)?.delaySeconds;
    const stripe = retestSpacingSeconds("stripe");
    const github = retestSpacingSeconds("github");
    expect(stripe).toBeGreaterThan(0);
    expect(stripeIds.map(delayOf)).toEqual([0, stripe, 2 * stripe]);
    expect(githubIds.map(delayOf)).toEqual([0, github]);
    // A probe that mints an OAuth token per call is spaced further apart than the default.
    expect(retestSpacingSeconds("paypal")).toBeGreaterThan(stripe);
    for (const service of Object.keys(RETEST_SPACING_S)) expect(findService(service), service).toBeDefined();
  });

  it("works in chunks of at most 100, stops after RETEST_MAX_CHUNKS and leaves the rest due for the next tick", async () => {
    const tenant = await createTenant("retests-chunks");
    const total = RETEST_CHUNK * RETEST_MAX_CHUNKS + 5;
    // Rows straight into the table: the cron part reads only the credentials row, never a version.
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
       INSERT INTO credentials (id, tenant_id, service_id, environment, security_level, name, current_version,
                                revision, status, created_by, created_at, updated_at, next_test_at)
       SELECT 'cred_bulk_' || printf('%05d', i), ?2, 'stripe', 'development', 'basic', 'bulk', 1, 1, 'active',
              'test', ?3, ?3, ?3 - 100000 + i FROM n`,
    )
      .bind(total, tenant.id, T0)
      .run();

    const first = await tick();

    expect(first.queue.batches.length).toBe(RETEST_MAX_CHUNKS);
    for (const batch of first.queue.batches) expect(batch.length).toBeLessThanOrEqual(RETEST_CHUNK);
    expect(first.report).toEqual({
      enqueued: RETEST_CHUNK * RETEST_MAX_CHUNKS,
      d1Calls: 2 * RETEST_MAX_CHUNKS,
    });
    // One provider's spread is clamped to what a Queue message can be delayed.
    const delays = first.queue.sent.map((m) => m.delaySeconds ?? 0);
    expect(Math.max(...delays)).toBeLessThanOrEqual(MAX_DELAY_S);
    expect(new Set(first.queue.sent.map((m) => m.body.credentialId)).size).toBe(first.report.enqueued);

    const second = await tick();
    expect(second.queue.sent.map((m) => m.body.credentialId)).toEqual([
      "cred_bulk_02001",
      "cred_bulk_02002",
      "cred_bulk_02003",
      "cred_bulk_02004",
      "cred_bulk_02005",
    ]);
    expect((await tick()).report.enqueued).toBe(0);
  });

  it("a tick that dies between send and claim sends the same messages again, and the re-test is recorded once", async () => {
    const tenant = await createTenant("retests-crash");
    const id = await storeStripe(tenant);
    await setDue(id, T0 - 1);
    const probes = stripeAnswers(standIn("stripe").invalid);

    const crashed = new RecordingQueue();
    crashed.failAfterSend = true;
    await expect(enqueueDueRetests({ ...env, RETEST_QUEUE: crashed }, T0)).rejects.toThrow();
    expect((await rowOf(id)).nextTestAt).toBe(T0 - 1);
    const { queue } = await tick();

    expect(queue.sent.map((m) => m.body)).toEqual(crashed.sent.map((m) => m.body));
    const result = await deliver([...crashed.sent, ...queue.sent].map((m) => m.body));
    expect(result.explicitAcks).toHaveLength(2);
    expect(probes.count).toBe(1);
    expect((await eventsOf(id)).map((e) => e.kind)).toEqual(["credential.test_failed"]);
    expect((await auditOf(id)).filter((a) => a.action === "credential.test")).toHaveLength(1);
  });
});

describe("consumeRetests: the Queue consumer", () => {
  it("records status, reason, latency, time, provider expiry and account, and the next due time", async () => {
    const tenant = await createTenant("retests-record");
    const id = await storeGithub(tenant);
    const expiresAt = NOW + 30 * 86_400_000;
    githubAnswers(expiresAt);

    const outcome = await runRetest(env, message(tenant, id, NOW - 60_000), NOW);

    expect(outcome).toEqual({ kind: "recorded", status: "valid" });
    const row = await rowOf(id);
    expect(row).toMatchObject({
      lastTestStatus: "valid",
      lastTestReason: "authenticated",
      lastTestedAt: NOW,
      providerExpiresAt: expiresAt,
      providerAccount: "octocat",
      nextTestAt: NOW + RETEST_INTERVAL_MS,
    });
    expect(row.lastTestLatencyMs).toBeGreaterThanOrEqual(0);
    // Thirty days away is no warning; a first test that passes is no change worth an event.
    expect(await eventsOf(id)).toEqual([]);
    const audit = (await auditOf(id)).map((a) => ({ ...a, detail: JSON.parse(a.detail) as unknown }));
    expect(audit).toContainEqual({
      action: "credential.test",
      actor_type: "system",
      actor_id: "retest",
      detail: { status: "valid", reason: "authenticated" },
    });
  });

  it("never moves a later next_test_at back (a fast-forwarded tick claimed past the consumer's clock)", async () => {
    const tenant = await createTenant("retests-fast-forward");
    const id = await storeStripe(tenant);
    const claimedByFastForward = NOW + 30 * 86_400_000;
    await setDue(id, claimedByFastForward);
    stripeAnswers(standIn("stripe").valid);

    await runRetest(env, message(tenant, id, NOW - 1), NOW);

    expect((await rowOf(id)).nextTestAt).toBe(claimedByFastForward);
  });

  it("records credential.expiring once per provider expiry date, however many re-tests see it", async () => {
    const tenant = await createTenant("retests-expiring");
    const id = await storeGithub(tenant);
    const soon = NOW + 3 * 86_400_000;
    githubAnswers(soon);

    await runRetest(env, message(tenant, id, NOW - 1), NOW);
    await runRetest(env, message(tenant, id, NOW + 1), NOW + 2);
    expect((await eventsOf(id)).map((e) => [e.kind, e.severity, e.detail.expires_at])).toEqual([
      ["credential.expiring", "warning", soon],
    ]);

    // Renewed, and again inside the warning window: a new expiry date warns again.
    const renewed = NOW + 10 * 86_400_000;
    githubAnswers(renewed);
    await runRetest(env, message(tenant, id, NOW + 3), NOW + 4);
    expect((await eventsOf(id)).map((e) => e.detail.expires_at)).toEqual([soon, renewed]);
  });

  it("a passing credential that starts failing records exactly one credential.test_failed, even delivered twice", async () => {
    const tenant = await createTenant("retests-failing");
    const id = await storeStripe(tenant);
    stripeAnswers(standIn("stripe").valid);
    await runRetest(env, message(tenant, id, NOW - 1), NOW);
    expect((await rowOf(id)).lastTestStatus).toBe("valid");

    network.resetHandlers();
    stripeAnswers(standIn("stripe").invalid);
    const due = message(tenant, id, NOW + 1);
    const result = await deliver([due, due]);
    // And once more, concurrently, as at-least-once delivery allows.
    await Promise.all([deliver([due]), deliver([due])]);

    expect(result.explicitAcks).toHaveLength(2);
    expect(result.retryMessages).toEqual([]);
    const events = await eventsOf(id);
    expect(events.map((e) => [e.kind, e.severity])).toEqual([["credential.test_failed", "critical"]]);
    expect(events[0]?.detail).toEqual({ reason: "unauthorized", previous_status: "valid", version: 1 });
    expect((await rowOf(id)).lastTestStatus).toBe("invalid");
  });

  it("a redelivered message after a recorded re-test is acknowledged without probing again", async () => {
    const tenant = await createTenant("retests-redelivered");
    const id = await storeStripe(tenant);
    const probes = stripeAnswers(standIn("stripe").valid);
    // Due before the consumer's clock reads: the first delivery records a test at or after it.
    const due = message(tenant, id, T0 - 1);

    await deliver([due]);
    const again = await deliver([due]);

    expect(probes.count).toBe(1);
    expect(again.explicitAcks).toHaveLength(1);
    expect((await auditOf(id)).filter((a) => a.action === "credential.test")).toHaveLength(1);
  });

  it("a failing credential that passes again records credential.test_recovered once", async () => {
    const tenant = await createTenant("retests-recovered");
    const id = await storeStripe(tenant);
    stripeAnswers(standIn("stripe").invalid);
    await runRetest(env, message(tenant, id, NOW - 1), NOW);
    network.resetHandlers();
    stripeAnswers(standIn("stripe").valid);

    await runRetest(env, message(tenant, id, NOW + 1), NOW + 2);
    await runRetest(env, message(tenant, id, NOW + 3), NOW + 4);

    // A first test that fails counts as failing: the stored value never worked.
    expect((await eventsOf(id)).map((e) => e.kind)).toEqual([
      "credential.test_failed",
      "credential.test_recovered",
    ]);
  });

  it("a provider answering 503 retries the message with backoff and records nothing", async () => {
    const tenant = await createTenant("retests-503");
    const id = await storeStripe(tenant);
    stripeAnswers(standIn("stripe").valid);
    await runRetest(env, message(tenant, id, NOW - 1), NOW);
    const before = await rowOf(id);
    network.resetHandlers();
    stripeAnswers(() => HttpResponse.json({ error: { type: "api_error" } }, { status: 503 }));
    const due = message(tenant, id, NOW + 1);

    const first = await deliver([due], 1);
    const third = await deliver([due], 3);

    expect(first.explicitAcks).toEqual([]);
    expect(first.retryMessages).toHaveLength(1);
    expect(first.retryDelays).toEqual([retryDelaySeconds(1)]);
    expect(third.retryDelays).toEqual([retryDelaySeconds(3)]);
    expect(retryDelaySeconds(3)).toBeGreaterThan(retryDelaySeconds(1));
    expect(await rowOf(id)).toEqual(before);
    expect(await eventsOf(id)).toEqual([]);
  });

  it("a rate-limited or unreachable provider is retried too, after the provider's Retry-After", async () => {
    const tenant = await createTenant("retests-429");
    const id = await storeStripe(tenant);
    const due = message(tenant, id, Date.now());
    stripeAnswers(() => new HttpResponse(null, { status: 429, headers: { "retry-after": "600" } }));
    const limited = await deliver([due]);
    network.resetHandlers();
    stripeAnswers(() => HttpResponse.error());
    const unreachable = await deliver([due]);

    expect(limited.retryMessages).toHaveLength(1);
    expect(limited.retryDelays).toEqual([600]);
    expect(unreachable.retryMessages).toHaveLength(1);
    expect(unreachable.retryDelays).toEqual([retryDelaySeconds(1)]);
    expect((await rowOf(id)).lastTestStatus).toBeNull();
  });

  it("a deleted credential, or another tenant's, is acknowledged and nothing is written", async () => {
    const tenant = await createTenant("retests-gone");
    const other = await createTenant("retests-gone-other");
    const id = await storeStripe(tenant);
    const etag = (await call("GET", `/api/v1/credentials/${id}`, { key: tenant.adminKey })).headers.get(
      "etag",
    );
    await call("DELETE", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      headers: { "if-match": etag ?? "" },
    });
    const before = await rowOf(id);
    // No stand-in is registered: a probe would fail the test as an unhandled request.

    const result = await deliver([
      message(tenant, id, Date.now()),
      message(other, id, Date.now()),
      { tenantId: tenant.id, credentialId: "cred_does_not_exist", dueAt: Date.now() },
    ]);

    expect(result.explicitAcks).toHaveLength(3);
    expect(result.retryMessages).toEqual([]);
    expect(await rowOf(id)).toEqual(before);
    expect(await eventsOf(id)).toEqual([]);
    expect((await auditOf(id)).map((a) => a.action)).toEqual(["credential.create", "credential.delete"]);
  });

  it("a malformed message is acknowledged and dropped", async () => {
    const { value: result, lines } = await capturingLogs(() =>
      deliver([{ credentialId: 42 }, "not an object"]),
    );

    expect(result.explicitAcks).toHaveLength(2);
    expect(lines.map((line) => JSON.parse(line).event)).toEqual([
      "retest_message_dropped",
      "retest_message_dropped",
    ]);
    expect(result.retryMessages).toEqual([]);
  });

  it("a failure of our own (a credential whose version is missing) is retried, not recorded", async () => {
    const tenant = await createTenant("retests-own-failure");
    await env.DB.prepare(
      `INSERT INTO credentials (id, tenant_id, service_id, environment, security_level, name, current_version,
                                revision, status, created_by, created_at, updated_at, next_test_at)
       VALUES ('cred_without_version', ?1, 'stripe', 'development', 'basic', 'broken', 1, 1, 'active', 'test',
               ?2, ?2, ?2)`,
    )
      .bind(tenant.id, T0 + RETEST_INTERVAL_MS)
      .run();

    const { value: result, lines } = await capturingLogs(() =>
      deliver([message(tenant, "cred_without_version", Date.now())], 2),
    );

    expect(result.retryMessages).toHaveLength(1);
    expect(result.retryDelays).toEqual([retryDelaySeconds(2)]);
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      { event: "retest_failed", credential_id: "cred_without_version", error: "NOT_FOUND" },
    ]);
    expect((await rowOf("cred_without_version")).lastTestStatus).toBeNull();
  });

  it("a result for a version that is no longer current is not recorded over the new one", async () => {
    const tenant = await createTenant("retests-stale-version");
    const id = await storeStripe(tenant);
    const probedRow = await rowOf(id);
    const etag = (await call("GET", `/api/v1/credentials/${id}`, { key: tenant.adminKey })).headers.get(
      "etag",
    );
    const secret = stripeKey();
    secrets.push(secret);
    const updated = await call("PATCH", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      headers: { "if-match": etag ?? "" },
      body: { fields: { secret_key: secret } },
    });
    expect(updated.status).toBe(200);

    // The probe of version 1 finishes after version 2 became current.
    await recordLiveTest(
      env,
      database(env.DB),
      { tenantId: tenant.id, actorType: "system", actorId: "retest", requestId: "stale" },
      probedRow,
      { status: "invalid", reason: "unauthorized", latency_ms: 5 },
      { now: NOW, occasion: "stale" },
    );

    const row = await rowOf(id);
    expect(row.currentVersion).toBe(2);
    expect(row.lastTestStatus).toBeNull();
  });

  it("a manual test through the API records the same status-change events as a scheduled one", async () => {
    const tenant = await createTenant("retests-manual");
    const id = await storeStripe(tenant);
    stripeAnswers(standIn("stripe").valid);
    await runRetest(env, message(tenant, id, NOW - 1), NOW);
    network.resetHandlers();
    stripeAnswers(standIn("stripe").invalid);

    const response = await callJson<{ status: string }>("POST", `/api/v1/credentials/${id}/test`, {
      key: tenant.adminKey,
    });

    expect(response.status).toBe(200);
    expect(response.body.status).toBe("invalid");
    expect((await eventsOf(id)).map((e) => e.kind)).toEqual(["credential.test_failed"]);
  });
});

describe("no plaintext leaves a re-test", () => {
  it("no stored secret appears in any event, audit row or log line of this file's re-tests", async () => {
    // The logging paths: a dropped message and a failure of our own.
    const tenant = await createTenant("retests-no-plaintext");
    const id = await storeStripe(tenant);
    await env.DB.prepare("DELETE FROM credential_versions WHERE credential_id = ?").bind(id).run();
    const { lines: logged } = await capturingLogs(() =>
      deliver([{ junk: true }, message(tenant, id, Date.now())]),
    );
    expect(logged).toHaveLength(2);
    const events = await env.DB.prepare("SELECT * FROM events").all();
    const audit = await env.DB.prepare("SELECT * FROM audit_log").all();
    const everything = JSON.stringify([events.results, audit.results, logged]);
    expect(secrets.length).toBeGreaterThan(0);
    for (const secret of secrets) expect(everything).not.toContain(secret);
  });
});
