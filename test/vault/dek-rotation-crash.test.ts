/**
 * Crash matrix of the DEK rotation (threat model case 20): a tenant spanning several re-encryption chunks has
 * a fault injected at every step, and separately a crash after each step's commit, then the run resumes; the
 * end state equals the fault-free run's. Runs are started directly (never through the cron).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ROTATION_RETRY_MS } from "../../src/lifecycle/rotation-steps";
import {
  beginDekRotation,
  beginRetireWait,
  createSuccessorDek,
  type DekRotationParams,
  reencryptChunk,
  retireOldDeks,
} from "../../src/vault/dek-rotation";
import { forgetKeys } from "../../src/vault/keyring";
import { WIZARD_MAX_AGE_MS } from "../../src/wizard/wizard-session";
import { callJson, createTenant } from "../helpers/api";
import { storeCredential, stripeTestKey } from "../lifecycle/credential-rotation-fixtures";
import {
  claimDekRun,
  dataKeysOf,
  dekAudit,
  dekRuns,
  type OpenedRow,
  runDekWorkflow,
  sealedPlaintexts,
  sealedTenant,
  T0,
} from "./dek-rotation-fixtures";

/** 8 sealed rows (3 credential versions and one row of every other sealed table) in chunks of 3. */
const CHUNK = 3;

interface Scenario {
  tenantId: string;
  adminKey: string;
  before: Map<string, OpenedRow>;
  params: DekRotationParams;
}

async function scenario(name: string): Promise<Scenario> {
  const { tenant } = await sealedTenant(name);
  return {
    tenantId: tenant.id,
    adminKey: tenant.adminKey,
    before: await sealedPlaintexts(tenant.id),
    params: await claimDekRun(tenant.id, T0, CHUNK),
  };
}

/** What a rotation leaves behind, comparable across tenants: keys, every field's version and plaintext, run, audit. */
async function finalState({ tenantId, adminKey, before }: Scenario) {
  const after = await sealedPlaintexts(tenantId);
  const fields = [...after].map(([key, row]) => ({
    table: key.split(":")[0],
    dekVersion: row.dekVersion,
    plaintextUnchanged: JSON.stringify(row.values) === JSON.stringify(before.get(key)?.values),
  }));
  fields.sort((a, b) => String(a.table).localeCompare(String(b.table)));
  const chain = await callJson<{ ok: boolean }>("GET", "/api/v1/audit/verify", { key: adminKey });
  return {
    keys: (await dataKeysOf(tenantId)).map(({ created_at: _created, ...row }) => row),
    rows: before.size,
    fields,
    runs: (await dekRuns(tenantId)).map(({ id: _id, ...run }) => run),
    audit: (await dekAudit(tenantId)).map(({ action, detail }) => ({ action, ...detail, run_id: "run" })),
    chainOk: chain.body.ok,
  };
}

const baseline = (async () => {
  const fresh = await scenario("dek fault-free");
  expect(await runDekWorkflow(fresh.params)).toBe("completed");
  return finalState(fresh);
})();

describe("crash matrix: a DEK rotation resumes at every chunk boundary (threat model case 20)", () => {
  it("ends a fault-free rotation with every field under the one new DEK, decrypting to its plaintext", async () => {
    const state = await baseline;
    expect(state.rows).toBe(8);
    expect(state.keys).toEqual([
      {
        version: 2,
        status: "active",
        encryption_count: 8,
        next_rotation_at: T0 + 90 * 86_400_000,
        retire_after: null,
      },
    ]);
    expect(state.fields).toHaveLength(8);
    expect(state.fields.every((field) => field.dekVersion === 2 && field.plaintextUnchanged)).toBe(true);
    expect(state.runs).toEqual([
      {
        state: "completed",
        step: "overlap",
        successor_id: "2",
        overlap_ends_at: T0 + WIZARD_MAX_AGE_MS,
        error: null,
      },
    ]);
    expect(state.audit.map((row) => row.action)).toEqual(["data_key.rotate", "data_key.retire"]);
    expect(state.chainOk).toBe(true);
  });

  const steps = [
    "begin",
    "create",
    "reencrypt-0",
    "reencrypt-1",
    "reencrypt-2",
    "reencrypt-3",
    "overlap",
    "sweep-0",
    "retire",
  ];
  for (const step of steps) {
    it(`a "${step}" step that throws once is retried, and the rotation ends exactly as a fault-free one`, async () => {
      const run = await scenario(`dek throws in ${step}`);
      const output = await runDekWorkflow(run.params, async (m) => {
        await m.mockStepError({ name: step }, new Error(`injected fault in ${step}`), 1);
      });
      expect(output).toBe("completed");
      expect(await finalState(run)).toEqual(await baseline);
    });
  }

  /** The work a crashed instance committed before the engine recorded its step, for each step boundary. */
  const committedBeforeCrash: Record<string, (params: DekRotationParams) => Promise<void>> = {
    create: async (params) => {
      await createSuccessorDek(env, params);
    },
    ...Object.fromEntries(
      [1, 2, 3].map((chunks) => [
        `reencrypt chunk ${chunks}`,
        async (params: DekRotationParams) => {
          const version = await createSuccessorDek(env, params);
          for (let i = 0; i < chunks; i++) await reencryptChunk(env, params.tenantId, version, CHUNK);
        },
      ]),
    ),
    overlap: async (params) => {
      const version = await createSuccessorDek(env, params);
      while ((await reencryptChunk(env, params.tenantId, version, CHUNK)).found > 0) {}
      await beginRetireWait(env, params, version);
    },
    retire: async (params) => {
      const version = await createSuccessorDek(env, params);
      while ((await reencryptChunk(env, params.tenantId, version, CHUNK)).found > 0) {}
      await beginRetireWait(env, params, version);
      expect(await retireOldDeks(env, params, version, T0 + WIZARD_MAX_AGE_MS)).toEqual([1]);
    },
  };
  for (const [boundary, work] of Object.entries(committedBeforeCrash)) {
    it(`a crash after "${boundary}" committed converges on the same state when the run starts again`, async () => {
      const run = await scenario(`dek crash after ${boundary}`);
      expect(await beginDekRotation(env, run.params)).toBe(true);
      await work(run.params);
      const output = await runDekWorkflow(run.params);
      // A run that had already finished is not started twice.
      expect(output).toBe(boundary === "retire" ? "skipped" : "completed");
      expect(await finalState(run)).toEqual(await baseline);
    });
  }
});

describe("a DEK rotation that fails", () => {
  it("keeps the new DEK when a re-encryption chunk keeps failing: the run fails, the old DEK stays retiring and every field still decrypts", async () => {
    const run = await scenario("dek chunk keeps failing");
    const output = await runDekWorkflow(run.params, async (m) => {
      await m.mockStepError({ name: "reencrypt-1" }, new Error("D1 unavailable"), 6);
    });
    expect(output).toBe("failed");
    expect((await dataKeysOf(run.tenantId)).map(({ version, status }) => ({ version, status }))).toEqual([
      { version: 1, status: "retiring" },
      { version: 2, status: "active" },
    ]);
    expect(await dekRuns(run.tenantId)).toMatchObject([
      { state: "failed", step: "reencrypt", successor_id: "2", error: "D1 unavailable" },
    ]);
    const after = await sealedPlaintexts(run.tenantId);
    for (const [key, row] of after) expect(row.values, key).toEqual(run.before.get(key)?.values);
    expect((await dekAudit(run.tenantId)).map((row) => row.action)).toEqual([
      "data_key.rotate",
      "data_key.rotation_failed",
    ]);
  });

  it("creates no new DEK for a tenant whose DEK does not unwrap: the run fails and the DEK is due again later (threat model case 7)", async () => {
    const tenant = await createTenant("dek corrupted");
    await storeCredential(tenant, "stripe", { secret_key: stripeTestKey() });
    const stored = (await env.DB.prepare("SELECT wrapped_key FROM data_keys WHERE tenant_id = ?")
      .bind(tenant.id)
      .first<{ wrapped_key: string }>()) as { wrapped_key: string };
    const flipped = `${stored.wrapped_key.slice(0, 10)}${stored.wrapped_key[10] === "A" ? "B" : "A"}${stored.wrapped_key.slice(11)}`;
    await env.DB.prepare("UPDATE data_keys SET wrapped_key = ? WHERE tenant_id = ?")
      .bind(flipped, tenant.id)
      .run();
    forgetKeys();
    const params = await claimDekRun(tenant.id);
    expect(await runDekWorkflow(params)).toBe("failed");
    expect(await dataKeysOf(tenant.id)).toMatchObject([
      { version: 1, status: "active", next_rotation_at: T0 + ROTATION_RETRY_MS },
    ]);
    expect(await dekRuns(tenant.id)).toMatchObject([
      {
        state: "failed",
        step: "create",
        successor_id: null,
        error: expect.stringContaining("The active data key does not unwrap."),
      },
    ]);
  });
});
