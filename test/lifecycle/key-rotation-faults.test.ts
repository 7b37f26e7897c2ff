import { introspectWorkflow, introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import { deliverHandoff } from "../../src/lifecycle/key-handoff";
import {
  beginKeyRotation,
  createKeySuccessor,
  promoteKeySuccessor,
  testKeySuccessor,
} from "../../src/lifecycle/key-rotation";
import type { RotationParams } from "../../src/lifecycle/rotation-params";
import { claimRunStatement } from "../../src/lifecycle/rotation-runs";
import { runRotationTick } from "../../src/lifecycle/scheduler";
import { callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";

const OVERLAP_MS = 3_600_000;

interface Scenario {
  tenant: TestTenant;
  key: { id: string; key: string };
  due: number;
  runId: string;
}

async function dueKey(name: string): Promise<Scenario> {
  const tenant = await createTenant(name);
  const key = await createKey(tenant, { rotation: { policy_days: 30, overlap_seconds: OVERLAP_MS / 1000 } });
  const row = await env.DB.prepare("SELECT next_rotation_at AS due FROM api_keys WHERE id = ?")
    .bind(key.id)
    .first<{ due: number }>();
  const due = row?.due as number;
  return { tenant, key, due, runId: `${key.id}-${due}` };
}

/**
 * Everything a rotation leaves behind for one tenant, with generated ids replaced by their role, so two
 * rotations of different keys can be compared: keys, runs, handoffs, events and the audit trail.
 */
async function finalState(scenario: Scenario) {
  const tenantId = scenario.tenant.id;
  const keys = await env.DB.prepare(
    `SELECT id, rotated_from_id, rotated_to_id, revoked_at IS NOT NULL AS revoked, enabled, expires_at,
            next_rotation_at, last_rotated_at FROM api_keys WHERE tenant_id = ? AND id <> ? ORDER BY created_at, id`,
  )
    .bind(tenantId, scenario.tenant.adminKeyId)
    .all<Record<string, string | number | null>>();
  const names = new Map<string, string>([[scenario.key.id, "source"]]);
  keys.results.forEach((row, index) => {
    if (!names.has(row.id as string)) names.set(row.id as string, `successor${index}`);
  });
  const name = (id: unknown) => (typeof id === "string" ? (names.get(id) ?? id) : id);
  const relative = (ms: unknown) => (typeof ms === "number" ? ms - scenario.due : ms);
  const runs = await env.DB.prepare(
    "SELECT state, step, successor_id, overlap_ends_at, error FROM rotation_runs WHERE tenant_id = ?",
  )
    .bind(tenantId)
    .all<Record<string, string | number | null>>();
  const events = await env.DB.prepare("SELECT kind, subject_id FROM events WHERE tenant_id = ? ORDER BY kind")
    .bind(tenantId)
    .all<{ kind: string; subject_id: string }>();
  const audit = await env.DB.prepare(
    "SELECT action, target_id FROM audit_log WHERE tenant_id = ? AND actor_type = 'system' ORDER BY seq",
  )
    .bind(tenantId)
    .all<{ action: string; target_id: string }>();
  const handoffs = await env.DB.prepare("SELECT count(*) AS n FROM key_handoffs WHERE tenant_id = ?")
    .bind(tenantId)
    .first<{ n: number }>();
  return {
    keys: keys.results.map((row) => ({
      ...row,
      id: name(row.id),
      rotated_from_id: name(row.rotated_from_id),
      rotated_to_id: name(row.rotated_to_id),
      expires_at: relative(row.expires_at),
      next_rotation_at: relative(row.next_rotation_at),
      last_rotated_at: relative(row.last_rotated_at),
    })),
    runs: runs.results.map((row) => ({
      ...row,
      successor_id: name(row.successor_id),
      overlap_ends_at: relative(row.overlap_ends_at),
    })),
    events: events.results.map((row) => ({ kind: row.kind, subject: name(row.subject_id) })),
    audit: audit.results.map((row) => ({ action: row.action, target: name(row.target_id) })),
    handoffs: handoffs?.n,
  };
}

/** Runs the cron at the key's due time and again when its overlap ends, and waits for the run to finish. */
async function rotateThroughOverlap(scenario: Scenario, tick: number) {
  await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, scenario.runId);
  await instance.modify(async (m) => {
    await m.disableRetryDelays();
  });
  await runRotationTick(env, tick);
  await instance.waitForStepResult({ name: "promote" });
  await runRotationTick(env, tick + OVERLAP_MS);
  await instance.waitForStatus("complete");
}

async function audited(tenant: TestTenant) {
  const chain = await callJson<{ ok: boolean }>("GET", "/api/v1/audit/verify", { key: tenant.adminKey });
  expect(chain.body.ok).toBe(true);
}

const TICK_AFTER_DUE = 60_000;
const baseline = (async () => {
  const scenario = await dueKey("fault-free");
  await rotateThroughOverlap(scenario, scenario.due + TICK_AFTER_DUE);
  return finalState(scenario);
})();

describe("crash matrix: a key rotation resumes at every step boundary (threat model cases 20, 32)", () => {
  it("ends a fault-free rotation with the successor working and the old key retired", async () => {
    const state = await baseline;
    expect(state.keys).toHaveLength(2);
    expect(state.keys[0]).toMatchObject({ id: "source", revoked: 1, rotated_to_id: "successor1" });
    // Nobody picked the successor up during the overlap: it was destroyed unseen, and that is an event.
    expect(state.keys[1]).toMatchObject({ rotated_from_id: "source", revoked: 1, next_rotation_at: null });
    expect(state.events).toContainEqual({ kind: "rotation.pickup_missed", subject: "successor1" });
    expect(state.handoffs).toBe(0);
    expect(state.runs).toEqual([
      {
        state: "completed",
        step: "overlap_ended",
        successor_id: "successor1",
        overlap_ends_at: TICK_AFTER_DUE + OVERLAP_MS,
        error: null,
      },
    ]);
  });

  for (const step of ["create", "deliver", "test", "promote", "retire"]) {
    it(`a "${step}" step that throws once is retried, and the rotation ends exactly as a fault-free one`, async () => {
      const scenario = await dueKey(`throws in ${step}`);
      await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, scenario.runId);
      await instance.modify(async (m) => {
        await m.mockStepError({ name: step }, new Error(`injected fault in ${step}`), 1);
      });
      await rotateThroughOverlap(scenario, scenario.due + TICK_AFTER_DUE);
      expect(await finalState(scenario)).toEqual(await baseline);
      await audited(scenario.tenant);
    });
  }

  const doneBeforeCrash: Record<string, (params: RotationParams) => Promise<unknown>> = {
    create: async (params) => createKeySuccessor(env, params),
    deliver: async (params) => deliverHandoff(env, await createKeySuccessor(env, params), params.now),
    test: async (params) => testKeySuccessor(env, params, await createKeySuccessor(env, params)),
    promote: async (params) => promoteKeySuccessor(env, params, await createKeySuccessor(env, params)),
  };
  for (const [step, work] of Object.entries(doneBeforeCrash)) {
    it(`a crash after "${step}" committed but before the engine recorded it converges on the same state`, async () => {
      const scenario = await dueKey(`crash after ${step}`);
      const tick = scenario.due + TICK_AFTER_DUE;
      const params: RotationParams = {
        runId: scenario.runId,
        tenantId: scenario.tenant.id,
        subjectType: "key",
        subjectId: scenario.key.id,
        now: tick,
      };
      // The claim the cron makes, then the work of every step up to this one, as a crashed instance left it.
      const db = database(env.DB);
      await db.batch([claimRunStatement(db, { ...params, id: params.runId, trigger: "schedule" })]);
      await env.DB.prepare("UPDATE api_keys SET next_rotation_at = NULL WHERE id = ?")
        .bind(scenario.key.id)
        .run();
      expect(await beginKeyRotation(env, params)).toBe(true);
      await work(params);

      await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, scenario.runId);
      await instance.modify(async (m) => {
        await m.disableRetryDelays();
      });
      await env.KEY_ROTATION.create({ id: scenario.runId, params });
      await instance.waitForStepResult({ name: "promote" });
      await runRotationTick(env, tick + OVERLAP_MS);
      await instance.waitForStatus("complete");
      expect(await finalState(scenario)).toEqual(await baseline);
      await audited(scenario.tenant);
    });
  }
});

describe("duplicate cron ticks (threat model case 21)", () => {
  it("two cron invocations with the same scheduled time cause exactly one rotation", async () => {
    const scenario = await dueKey("duplicate cron");
    const tick = scenario.due + TICK_AFTER_DUE;
    await using workflows = await introspectWorkflow(env.KEY_ROTATION);
    await using instance = await introspectWorkflowInstance(env.KEY_ROTATION, scenario.runId);
    await instance.modify(async (m) => {
      await m.disableRetryDelays();
    });
    await Promise.all([runRotationTick(env, tick), runRotationTick(env, tick)]);
    await runRotationTick(env, tick);
    const instances = await workflows.get();
    expect(instances).toHaveLength(1);
    await instance.waitForStepResult({ name: "promote" });
    const successors = await env.DB.prepare("SELECT count(*) AS n FROM api_keys WHERE rotated_from_id = ?")
      .bind(scenario.key.id)
      .first<{ n: number }>();
    expect(successors?.n).toBe(1);
    const runs = await env.DB.prepare("SELECT id FROM rotation_runs WHERE subject_id = ?")
      .bind(scenario.key.id)
      .all();
    expect(runs.results).toEqual([{ id: scenario.runId }]);
    expect(await verify(scenario.tenant, scenario.key.key)).toMatchObject({
      valid: true,
      replaced_by: expect.any(String),
    });
  });
});
