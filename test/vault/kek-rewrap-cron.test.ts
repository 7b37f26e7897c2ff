/**
 * How the cron starts the KEK re-wrap (startKekRewrap): a cheap check every tick, one run at a time, a run
 * whose Workflow was never created started again, and a run that met a corrupt wrapped key failing with the
 * key named while every other key moves, then tried again an hour later.
 *
 * Project `kek-master-2` (after the switch to master:2); the keys are made before it (`MASTER_1_ONLY`).
 */
import { introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { sql } from "drizzle-orm";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import { rotationRunId } from "../../src/lifecycle/rotation-runs";
import { ROTATION_RETRY_MS } from "../../src/lifecycle/rotation-steps";
import { QUEUED_RESTART_MS } from "../../src/lifecycle/scheduler";
import { offTargetQuery, startKekRewrap } from "../../src/vault/kek-rewrap";
import { forgetKeys } from "../../src/vault/keyring";
import {
  claimRewrap,
  createSystemKeysWith,
  createTenantWith,
  envWith,
  expectAllReveal,
  keksInUse,
  MASTER_1_ONLY,
  type StoredCredential,
  storeWith,
} from "./kek-fixtures";

/** Far from any real time: nothing here depends on the wall clock. */
const T0 = Date.UTC(2031, 0, 1);
const MINUTE = 60_000;
const MASTER_2_ONLY = envWith({ MASTER_KEY: undefined });

beforeEach(() => forgetKeys());

async function runs() {
  const { results } = await env.DB.prepare(
    "SELECT id, state, step, error FROM rotation_runs WHERE subject_type = 'keyring' ORDER BY started_at",
  ).all<{ id: string; state: string; step: string; error: string | null }>();
  return results;
}

/** Moves every key back under master:1 as it was made, so each test starts with the whole re-wrap ahead. */
let madeUnderMaster1: { tenant_id: string; version: number; wrapped_key: string }[];
let systemKeysUnderMaster1: { purpose: string; wrapped_key: string }[];
const credentials: StoredCredential[] = [];

beforeAll(async () => {
  await createSystemKeysWith(MASTER_1_ONLY);
  for (let i = 0; i < 3; i++) {
    const tenant = await createTenantWith(MASTER_1_ONLY, `cron ${i}`);
    credentials.push(await storeWith(MASTER_1_ONLY, tenant));
  }
  madeUnderMaster1 = (
    await env.DB.prepare("SELECT tenant_id, version, wrapped_key FROM data_keys ORDER BY tenant_id").all<{
      tenant_id: string;
      version: number;
      wrapped_key: string;
    }>()
  ).results;
  systemKeysUnderMaster1 = (
    await env.DB.prepare("SELECT purpose, wrapped_key FROM system_keys").all<{
      purpose: string;
      wrapped_key: string;
    }>()
  ).results;
});

async function restoreMaster1Keys(): Promise<void> {
  await env.DB.batch([
    ...madeUnderMaster1.map((row) =>
      env.DB.prepare(
        "UPDATE data_keys SET kek_provider = 'master', kek_version = 1, wrapped_key = ? WHERE tenant_id = ? AND version = ?",
      ).bind(row.wrapped_key, row.tenant_id, row.version),
    ),
    ...systemKeysUnderMaster1.map((row) =>
      env.DB.prepare(
        "UPDATE system_keys SET kek_provider = 'master', kek_version = 1, wrapped_key = ? WHERE purpose = ?",
      ).bind(row.wrapped_key, row.purpose),
    ),
  ]);
}

describe("the cron's re-wrap check", () => {
  it("looks for off-target keys with index seeks on data_keys_kek_idx, never a scan of data_keys", async () => {
    const plan = await database(env.DB).all<{ detail: string }>(
      sql`EXPLAIN QUERY PLAN ${offTargetQuery({ provider: "master", version: 2 })}`,
    );
    const onDataKeys = plan.map((row) => row.detail).filter((detail) => /\bdata_keys\b/.test(detail));
    // kek_version below and above the target, and the other provider.
    expect(onDataKeys).toHaveLength(3);
    for (const detail of onDataKeys)
      expect(detail).toMatch(/^SEARCH data_keys USING COVERING INDEX data_keys_kek_idx/);
  });
});

describe("starting the re-wrap", () => {
  it("starts again a run whose tick died before creating its Workflow, and claims no second run meanwhile", async () => {
    await restoreMaster1Keys();
    // A tick claimed the run, then died before `create`.
    const params = await claimRewrap(T0);
    expect(await startKekRewrap(env, T0 + MINUTE)).toBeNull();
    expect(await runs()).toEqual([{ id: params.runId, state: "in_progress", step: "queued", error: null }]);

    await using instance = await introspectWorkflowInstance(env.KEK_REWRAP, params.runId);
    expect(await startKekRewrap(env, T0 + QUEUED_RESTART_MS + MINUTE)).toBeNull();
    await instance.waitForStatus("complete");
    expect(await instance.getOutput()).toBe("completed");
    expect(await runs()).toEqual([{ id: params.runId, state: "completed", step: "rewrap", error: null }]);
    expect(await keksInUse()).toEqual({ "master:2": 3 + 2 });
  });

  it("fails a run that meets a corrupt wrapped key, naming it, moves every other key, and tries again after ROTATION_RETRY_MS", async () => {
    await env.DB.prepare("DELETE FROM rotation_runs").run();
    await restoreMaster1Keys();
    const [corrupt] = madeUnderMaster1;
    if (!corrupt) throw new Error("no data key");
    const name = `${corrupt.tenant_id}:${corrupt.version}`;
    const payload = corrupt.wrapped_key;
    const flipped = `${payload.slice(0, 20)}${payload[20] === "A" ? "B" : "A"}${payload.slice(21)}`;
    await env.DB.prepare("UPDATE data_keys SET wrapped_key = ? WHERE tenant_id = ? AND version = ?")
      .bind(flipped, corrupt.tenant_id, corrupt.version)
      .run();

    const first = rotationRunId("keyring", T0);
    await using failing = await introspectWorkflowInstance(env.KEK_REWRAP, first);
    expect(await startKekRewrap(env, T0)).toBe(first);
    await failing.waitForStatus("complete");
    expect(await failing.getOutput()).toBe("failed");
    const [failed] = await runs();
    expect(failed).toMatchObject({ id: first, state: "failed", step: "rewrap" });
    expect(failed?.error).toBe(
      `1 wrapped key(s) failed authentication and stay under their old KEK: ${name}.`,
    );
    expect(await keksInUse()).toEqual({ "master:1": 1, "master:2": 2 + 2 });

    // Within the hour nothing is claimed; after it, a new run starts and, the key repaired, finishes.
    expect(await startKekRewrap(env, T0 + 10 * MINUTE)).toBeNull();
    await env.DB.prepare("UPDATE data_keys SET wrapped_key = ? WHERE tenant_id = ? AND version = ?")
      .bind(payload, corrupt.tenant_id, corrupt.version)
      .run();
    const retry = rotationRunId("keyring", T0 + ROTATION_RETRY_MS + MINUTE);
    await using retried = await introspectWorkflowInstance(env.KEK_REWRAP, retry);
    expect(await startKekRewrap(env, T0 + ROTATION_RETRY_MS + MINUTE)).toBe(retry);
    await retried.waitForStatus("complete");
    expect(await retried.getOutput()).toBe("completed");
    expect(await keksInUse()).toEqual({ "master:2": 3 + 2 });
    forgetKeys();
    await expectAllReveal(MASTER_2_ONLY, credentials);
  });
});
