import { introspectWorkflow, introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { runRotationTick } from "../../src/lifecycle/scheduler";
import { callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";

const DAY = 86_400_000;

interface KeyBody {
  id: string;
  rotated_to_id: string | null;
  revoked_at: string | null;
  expires_at: string | null;
  rotation: {
    policy_days: number | null;
    next_rotation_at: string | null;
    state: string;
    last_rotated_at: string | null;
    last_error: string | null;
    in_progress?: { run_id: string; step: string; overlap_ends_at: string | null };
  };
}

async function getKey(tenant: TestTenant, id: string) {
  const response = await callJson<KeyBody>("GET", `/api/v1/keys/${id}`, { key: tenant.adminKey });
  expect(response.status).toBe(200);
  return response.body;
}

async function runsOf(subjectId: string) {
  const rows = await env.DB.prepare(
    "SELECT id, state, step, successor_id FROM rotation_runs WHERE subject_id = ? ORDER BY started_at",
  )
    .bind(subjectId)
    .all<{ id: string; state: string; step: string; successor_id: string | null }>();
  return rows.results;
}

async function eventsOf(subjectId: string) {
  const rows = await env.DB.prepare("SELECT kind FROM events WHERE subject_id = ? ORDER BY at, kind")
    .bind(subjectId)
    .all<{ kind: string }>();
  return rows.results.map((row) => row.kind);
}

describe("a rotation policy schedules rotation; it is not an expiry", () => {
  it("gives a key with a 30-day policy no expiry and a next rotation 30 days out", async () => {
    const tenant = await createTenant("policy");
    const before = Date.now();
    const key = await createKey(tenant, { rotation: { policy_days: 30 } });
    const view = await getKey(tenant, key.id);
    expect(view.expires_at).toBeNull();
    expect(view.rotation).toMatchObject({ policy_days: 30, state: "idle", last_error: null });
    const next = Date.parse(view.rotation.next_rotation_at as string);
    expect(next).toBeGreaterThanOrEqual(before + 30 * DAY);
    expect(next).toBeLessThanOrEqual(Date.now() + 30 * DAY);
  });
});

describe("the cron rotates a due key through the Workflow", () => {
  it("rotates on day 30: the successor verifies, the old key reports replaced_by, then stops after the overlap", async () => {
    const tenant = await createTenant("scheduled rotation");
    const key = await createKey(tenant, { rotation: { policy_days: 30, overlap_seconds: 3600 } });
    const due = Date.parse((await getKey(tenant, key.id)).rotation.next_rotation_at as string);
    const tick = due + 60_000;

    await using workflows = await introspectWorkflow(env.KEY_ROTATION);
    const report = await runRotationTick(env, tick);
    expect(report.started).toBeGreaterThanOrEqual(1);
    const [run] = await runsOf(key.id);
    expect(run?.id).toBe(`${key.id}-${due}`);
    await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, run?.id as string);
    const overlapEndsAt = await instance.waitForStepResult({ name: "promote" });
    expect(overlapEndsAt).toBe(tick + 3_600_000);
    expect(workflows).toBeDefined();

    const rotated = await getKey(tenant, key.id);
    expect(rotated.rotated_to_id).toMatch(/^key_/);
    expect(rotated.rotation).toMatchObject({ state: "in_progress", in_progress: { step: "overlap" } });
    expect(await verify(tenant, key.key)).toMatchObject({ valid: true, replaced_by: rotated.rotated_to_id });
    const successor = await getKey(tenant, rotated.rotated_to_id as string);
    expect(Date.parse(successor.rotation.next_rotation_at as string)).toBe(tick + 30 * DAY);
    expect(successor.rotation.last_rotated_at).toBe(new Date(tick).toISOString());

    await runRotationTick(env, tick + 3_600_000);
    await instance.waitForStatus("complete");
    expect(await verify(tenant, key.key)).toMatchObject({ valid: false, code: "DISABLED" });
    expect((await getKey(tenant, key.id)).rotation).toMatchObject({ state: "idle", last_error: null });
    expect(await runsOf(key.id)).toEqual([
      { id: run?.id, state: "completed", step: "overlap_ended", successor_id: rotated.rotated_to_id },
    ]);
    expect(await eventsOf(key.id)).toEqual(["rotation.started", "rotation.completed"]);
  });
});

describe("PATCH /keys/{id} changes a key's rotation schedule", () => {
  it("sets a new period counted from now, and the overlap", async () => {
    const tenant = await createTenant("patch rotation");
    const key = await createKey(tenant);
    expect((await getKey(tenant, key.id)).rotation).toMatchObject({
      policy_days: null,
      next_rotation_at: null,
    });
    const before = Date.now();
    const patched = await callJson<KeyBody>("PATCH", `/api/v1/keys/${key.id}`, {
      key: tenant.adminKey,
      body: { rotation: { policy_days: 7, overlap_seconds: 600 } },
    });
    expect(patched.status).toBe(200);
    const next = Date.parse(patched.body.rotation.next_rotation_at as string);
    expect(next).toBeGreaterThanOrEqual(before + 7 * DAY);
    expect(next).toBeLessThanOrEqual(Date.now() + 7 * DAY);
    const row = await env.DB.prepare("SELECT rotation_overlap_seconds AS overlap FROM api_keys WHERE id = ?")
      .bind(key.id)
      .first<{ overlap: number }>();
    expect(row?.overlap).toBe(600);

    const off = await callJson<KeyBody>("PATCH", `/api/v1/keys/${key.id}`, {
      key: tenant.adminKey,
      body: { rotation: { policy_days: null } },
    });
    expect(off.body.rotation).toMatchObject({ policy_days: null, next_rotation_at: null });
  });

  it("cannot stretch a key's period past the tenant's security policy, nor turn it off under one", async () => {
    const tenant = await createTenant("policy ceiling");
    await env.DB.prepare(
      `INSERT INTO security_policies (tenant_id, security_level, environment, rotation_policy, rotation_days,
         ip_allowlist, country_allowlist, require_2fa, compliance, wizard_id, updated_at)
       VALUES (?, 'basic', 'development', '30_days', 30, '[]', '[]', 0, '[]', 'wiz_ceiling', ?)`,
    )
      .bind(tenant.id, Date.now())
      .run();
    const key = await createKey(tenant);
    expect((await getKey(tenant, key.id)).rotation.policy_days).toBe(30);
    for (const policy_days of [90, null]) {
      const patched = await callJson<KeyBody>("PATCH", `/api/v1/keys/${key.id}`, {
        key: tenant.adminKey,
        body: { rotation: { policy_days } },
      });
      expect(patched.body.rotation.policy_days).toBe(30);
    }
    const shorter = await callJson<KeyBody>("PATCH", `/api/v1/keys/${key.id}`, {
      key: tenant.adminKey,
      body: { rotation: { policy_days: 10 } },
    });
    expect(shorter.body.rotation.policy_days).toBe(10);
  });
});
