/**
 * Scheduled rotations of issued keys end to end: the successor delivered by JWE through the Workflow, a
 * delivery endpoint that refuses, a rotation started by hand, reminders, and the migration of old expiries.
 */
import { introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { compactDecrypt } from "jose";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runRotationTick } from "../../src/lifecycle/scheduler";
import { callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";
import { dumpDatabase } from "../helpers/db";
import { network } from "../setup/network";
import { deliveryKeyPair, HOOK_URL, registerEndpoint } from "./handoff-fixtures";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const DAY = 86_400_000;
const HOUR = 3_600_000;

async function dueKey(tenant: TestTenant) {
  const key = await createKey(tenant, { rotation: { policy_days: 30, overlap_seconds: 3600 } });
  const row = await env.DB.prepare("SELECT next_rotation_at AS due FROM api_keys WHERE id = ?")
    .bind(key.id)
    .first<{ due: number }>();
  return { key, due: row?.due as number };
}

async function keyView(tenant: TestTenant, id: string) {
  const response = await callJson<{
    rotated_to_id: string | null;
    rotation: { state: string; last_error: string | null; next_rotation_at: string | null };
  }>("GET", `/api/v1/keys/${id}`, { key: tenant.adminKey });
  return response.body;
}

async function eventKinds(tenant: TestTenant, subjectId: string) {
  const response = await callJson<{
    items: { kind: string; severity: string; detail: Record<string, unknown> }[];
  }>("GET", `/api/v1/events?subject_id=${subjectId}`, { key: tenant.adminKey });
  expect(response.status).toBe(200);
  return response.body.items;
}

describe("a scheduled rotation delivers the new key as a JWE (threat model case 30)", () => {
  it("posts the successor encrypted to the tenant's key, and afterwards nothing stored yields its plaintext", async () => {
    const tenant = await createTenant("jwe rotation");
    const { publicJwk, privateKey } = await deliveryKeyPair();
    await registerEndpoint(tenant, publicJwk);
    const received: string[] = [];
    network.use(
      http.post(HOOK_URL, async ({ request }) => {
        received.push(await request.text());
        return new HttpResponse(null, { status: 204 });
      }),
    );
    const { key, due } = await dueKey(tenant);
    const runId = `${key.id}-${due}`;
    await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, runId);
    await runRotationTick(env, due + 1000);
    await instance.waitForStepResult({ name: "promote" });

    expect(received).toHaveLength(1);
    const message = JSON.parse(received[0] as string) as { key_id: string; jwe: string };
    const { plaintext } = await compactDecrypt(message.jwe, privateKey);
    const delivered = JSON.parse(new TextDecoder().decode(plaintext)) as { key_id: string; key: string };
    const successorId = (await keyView(tenant, key.id)).rotated_to_id;
    expect(delivered.key_id).toBe(successorId);
    expect(await verify(tenant, delivered.key)).toMatchObject({ valid: true, key_id: successorId });
    expect(await dumpDatabase()).not.toContain(delivered.key);
    expect(await dumpDatabase()).not.toContain(delivered.key.slice(-20));

    await runRotationTick(env, due + 1000 + HOUR);
    await instance.waitForStatus("complete");
    expect(await verify(tenant, key.key)).toMatchObject({ valid: false, code: "DISABLED" });
    expect(await verify(tenant, delivered.key)).toMatchObject({ valid: true });
  });
});

describe("a delivery endpoint that keeps refusing", () => {
  it("leaves the JWE for one-time pickup and records rotation.delivery_failed; the rotation goes on", async () => {
    const tenant = await createTenant("refusing endpoint");
    const { publicJwk, privateKey } = await deliveryKeyPair();
    await registerEndpoint(tenant, publicJwk);
    let attempts = 0;
    network.use(
      http.post(HOOK_URL, () => {
        attempts++;
        return new HttpResponse("down", { status: 503 });
      }),
    );
    const { key, due } = await dueKey(tenant);
    await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, `${key.id}-${due}`);
    await instance.modify(async (m) => {
      await m.disableRetryDelays();
    });
    await runRotationTick(env, due + 1000);
    await instance.waitForStepResult({ name: "promote" });

    expect(attempts).toBe(6);
    const successorId = (await keyView(tenant, key.id)).rotated_to_id as string;
    const events = await eventKinds(tenant, successorId);
    expect(events).toEqual([
      expect.objectContaining({
        kind: "rotation.delivery_failed",
        detail: expect.objectContaining({ error: expect.stringMatching(/503/) }),
      }),
    ]);
    const pickup = await callJson<{ key_id: string; jwe: string }>(
      "POST",
      `/api/v1/keys/${successorId}/pickup`,
      {
        key: tenant.adminKey,
      },
    );
    expect(pickup.status).toBe(200);
    const { plaintext } = await compactDecrypt(pickup.body.jwe, privateKey);
    const delivered = JSON.parse(new TextDecoder().decode(plaintext)) as { key: string };
    expect(await verify(tenant, delivered.key)).toMatchObject({ valid: true, key_id: successorId });
  });
});

describe("a rotation that fails leaves the current key current (threat model case 32)", () => {
  it("a step that fails on every attempt stops the rotation: the old key works, the successor is revoked, it is retried later", async () => {
    const tenant = await createTenant("failing rotation");
    const { key, due } = await dueKey(tenant);
    const tick = due + 1000;
    await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, `${key.id}-${due}`);
    await instance.modify(async (m) => {
      await m.disableRetryDelays();
      await m.mockStepError({ name: "test" }, new Error("injected: the successor did not authenticate"));
    });
    await runRotationTick(env, tick);
    await instance.waitForStatus("complete");

    expect(await verify(tenant, key.key)).toEqual(expect.objectContaining({ valid: true }));
    expect(await verify(tenant, key.key)).not.toHaveProperty("replaced_by");
    const view = await keyView(tenant, key.id);
    expect(view.rotated_to_id).toBeNull();
    expect(view.rotation.state).toBe("failed");
    expect(view.rotation.last_error).toMatch(/did not authenticate/);
    expect(Date.parse(view.rotation.next_rotation_at as string)).toBe(tick + HOUR);
    const successors = await env.DB.prepare(
      "SELECT revoked_at, rotated_from_id FROM api_keys WHERE tenant_id = ? AND created_by = 'rotation'",
    )
      .bind(tenant.id)
      .all<{ revoked_at: number | null; rotated_from_id: string | null }>();
    expect(successors.results).toEqual([{ revoked_at: tick, rotated_from_id: null }]);
    expect(
      await env.DB.prepare("SELECT count(*) AS n FROM key_handoffs WHERE tenant_id = ?")
        .bind(tenant.id)
        .first("n"),
    ).toBe(0);
    const events = await eventKinds(tenant, key.id);
    expect(events.map((event) => event.kind)).toEqual(["rotation.failed"]);
    expect(events[0]).toMatchObject({ severity: "critical", detail: { step: "test" } });

    // The retry an hour later rotates the key.
    await using retry = await introspectWorkflowInstance(env.KEY_ROTATION, `${key.id}-${tick + HOUR}`);
    await runRotationTick(env, tick + HOUR);
    await retry.waitForStepResult({ name: "promote" });
    expect((await keyView(tenant, key.id)).rotation.state).toBe("in_progress");
    expect(await verify(tenant, key.key)).toMatchObject({ valid: true, replaced_by: expect.any(String) });
  });
});

describe("POST /keys/{id}/rotate runs through the same Workflow", () => {
  it("returns the new key at once, and the Workflow retires the old one when the overlap ends", async () => {
    const tenant = await createTenant("manual rotation");
    const key = await createKey(tenant, { rotation: { policy_days: 90 } });
    const rotated = await callJson<{ id: string; key: string; previous: { expires_at: string } }>(
      "POST",
      `/api/v1/keys/${key.id}/rotate`,
      { key: tenant.adminKey, body: { grace_seconds: 600 } },
    );
    expect(rotated.status).toBe(201);
    const run = await env.DB.prepare("SELECT id, step, trigger FROM rotation_runs WHERE subject_id = ?")
      .bind(key.id)
      .first<{ id: string; step: string; trigger: string }>();
    expect(run).toMatchObject({ step: "overlap", trigger: "manual" });
    await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, run?.id as string);
    const overlapEnd = Date.parse(rotated.body.previous.expires_at);
    expect(await instance.waitForStepResult({ name: "promote" })).toBe(overlapEnd);
    expect(await verify(tenant, key.key)).toMatchObject({ valid: true, replaced_by: rotated.body.id });
    const successor = await callJson<{ rotation: { next_rotation_at: string } }>(
      "GET",
      `/api/v1/keys/${rotated.body.id}`,
      { key: tenant.adminKey },
    );
    // A fresh period: 90 days from the rotation, not the predecessor's date.
    expect(Date.parse(successor.body.rotation.next_rotation_at)).toBeGreaterThan(overlapEnd + 89 * DAY);

    const second = await callJson("POST", `/api/v1/keys/${key.id}/rotate`, {
      key: tenant.adminKey,
      body: {},
    });
    expect(second.status).toBe(409);

    await runRotationTick(env, overlapEnd);
    await instance.waitForStatus("complete");
    expect(await verify(tenant, key.key)).toMatchObject({ valid: false, code: "DISABLED" });
    expect(await verify(tenant, rotated.body.key)).toMatchObject({ valid: true });
  });
});

describe("reminders are events", () => {
  it("records one rotation.upcoming event a week before a scheduled rotation, however many ticks see it", async () => {
    const tenant = await createTenant("reminders");
    const { key, due } = await dueKey(tenant);
    await runRotationTick(env, due - 8 * DAY);
    expect(await eventKinds(tenant, key.id)).toEqual([]);
    await runRotationTick(env, due - 7 * DAY + HOUR);
    await runRotationTick(env, due - 6 * DAY);
    const events = await eventKinds(tenant, key.id);
    expect(events).toEqual([
      expect.objectContaining({
        kind: "rotation.upcoming",
        severity: "info",
        detail: { next_rotation_at: due },
      }),
    ]);
  });

  it("warns a day before an uncollected pickup is destroyed", async () => {
    const tenant = await createTenant("pickup reminder");
    const key = await createKey(tenant, { rotation: { policy_days: 30, overlap_seconds: 3 * 86_400 } });
    const due = Date.now() + 30 * DAY;
    await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, `${key.id}-${due}`);
    await env.DB.prepare("UPDATE api_keys SET next_rotation_at = ? WHERE id = ?").bind(due, key.id).run();
    await runRotationTick(env, due);
    await instance.waitForStepResult({ name: "promote" });
    const successorId = (await keyView(tenant, key.id)).rotated_to_id as string;
    await runRotationTick(env, due + DAY);
    expect(await eventKinds(tenant, successorId)).toEqual([]);
    await runRotationTick(env, due + 2 * DAY + HOUR);
    expect((await eventKinds(tenant, successorId)).map((event) => event.kind)).toEqual([
      "rotation.pickup_reminder",
    ]);
  });
});

describe("migration 0007: an expiry that was a rotation policy becomes a schedule", () => {
  it("turns a wizard key's policy-length expiry into next_rotation_at and leaves a chosen expiry alone", async () => {
    const tenant = await createTenant("legacy expiry");
    const policyKey = await createKey(tenant);
    const chosenKey = await createKey(tenant);
    const created = Date.now();
    await env.DB.batch([
      env.DB.prepare(
        `INSERT INTO security_policies (tenant_id, security_level, environment, rotation_policy, rotation_days,
           ip_allowlist, country_allowlist, require_2fa, compliance, wizard_id, updated_at)
         VALUES (?, 'basic', 'development', '90_days', 90, '[]', '[]', 0, '[]', 'wiz_legacy', ?)`,
      ).bind(tenant.id, created),
      env.DB.prepare("UPDATE api_keys SET created_at = ?, expires_at = ? WHERE id = ?").bind(
        created,
        created + 90 * DAY,
        policyKey.id,
      ),
      env.DB.prepare("UPDATE api_keys SET created_at = ?, expires_at = ? WHERE id = ?").bind(
        created,
        created + 14 * DAY,
        chosenKey.id,
      ),
    ]);
    const migration = env.TEST_MIGRATIONS.find((entry) => entry.name.startsWith("0007"));
    const conversion = migration?.queries.find((query) =>
      query.includes("a rotation policy is not a kill date"),
    );
    expect(conversion).toBeDefined();
    await env.DB.prepare(conversion as string).run();

    const rows = await env.DB.prepare(
      "SELECT id, expires_at, next_rotation_at, rotation_days FROM api_keys WHERE id IN (?, ?) ORDER BY expires_at",
    )
      .bind(policyKey.id, chosenKey.id)
      .all();
    expect(rows.results).toEqual([
      { id: policyKey.id, expires_at: null, next_rotation_at: created + 90 * DAY, rotation_days: 90 },
      { id: chosenKey.id, expires_at: created + 14 * DAY, next_rotation_at: null, rotation_days: null },
    ]);
  });
});
