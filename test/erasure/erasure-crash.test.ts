/**
 * Crash matrix of the tenant erasure: every step may throw or the instance may crash after a step committed;
 * the run resumes and ends exactly as a fault-free one (no row left, the same receipt counts). Tenants span
 * several chunks of every table they use (chunk size 2). A late row written while the Workflow settles is
 * taken by the final sweep.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  closeAuditChain,
  completeErasure,
  type ErasureParams,
  eraseChunk,
  markStep,
  shredDataKeys,
} from "../../src/erasure/tenant-erasure";
import { TENANT_TABLES } from "../../src/erasure/tenant-tables";
import { flushUsage } from "../../src/monitoring/usage-recorder";
import { callJson, createKey, createTenant } from "../helpers/api";
import { storeCredential, stripeTestKey } from "../lifecycle/credential-rotation-fixtures";
import { type ErasureRun, eraseThroughWorkflow, receiptCall, tenantRowCounts } from "./erasure-fixtures";

const CHUNK = 2;

/** A small tenant: three credentials, three keys (one rate-limited and used), their usage and audit rows. */
async function smallTenant(name: string): Promise<{ tenantId: string; before: Record<string, number> }> {
  const tenant = await createTenant(name);
  for (let i = 0; i < 3; i++) await storeCredential(tenant, "stripe", { secret_key: stripeTestKey() });
  await createKey(tenant, { name: "plain" });
  const limited = await createKey(tenant, { name: "limited", ratelimit: { limit: 50, window_ms: 60_000 } });
  const verified = await callJson<{ valid: boolean }>("POST", "/api/v1/keys/verify", {
    key: tenant.adminKey,
    body: { key: limited.key },
  });
  expect(verified.body.valid).toBe(true);
  await flushUsage(env.DB);
  return { tenantId: tenant.id, before: await tenantRowCounts(tenant.id) };
}

const small = (params: ErasureParams): ErasureParams => ({ ...params, chunk: CHUNK });

/**
 * What an erasure leaves, comparable across tenants: rows left, and the receipt's counts against what the
 * tenant held before (how many origins a tenant's requests record depends on the test addresses drawn).
 * The request and the shredding each append an audit row before the log is deleted; `extra` adds late rows.
 */
async function finalState(
  tenantId: string,
  before: Record<string, number>,
  extra: Record<string, number> = {},
) {
  const { body } = await receiptCall(tenantId);
  const { data_keys: dataKeys = 0, ...held } = before;
  const expected: Record<string, number> = { ...held, audit_log: (held.audit_log ?? 0) + 2 };
  for (const [table, n] of Object.entries(extra)) expected[table] = (expected[table] ?? 0) + n;
  const tables = new Set([...Object.keys(expected), ...Object.keys(body.rows_deleted)]);
  return {
    leftover: Object.entries(await tenantRowCounts(tenantId)).filter(([, n]) => n > 0),
    state: body.state,
    step: body.step,
    dataKeysDestroyed: body.data_keys_destroyed === dataKeys,
    miscounted: [...tables].filter((table) => (body.rows_deleted[table] ?? 0) !== (expected[table] ?? 0)),
    objectsCleared: body.objects_cleared,
    auditHeadSeq: (body.audit_chain_head?.seq ?? 0) - (held.audit_log ?? 0),
    intact: body.receipt_intact,
  };
}

async function erase(name: string, run: ErasureRun = {}, extra: Record<string, number> = {}) {
  const { tenantId, before } = await smallTenant(name);
  const { output } = await eraseThroughWorkflow(tenantId, { ...run, chunk: CHUNK });
  return { output, state: await finalState(tenantId, before, extra) };
}

const baseline = (async () => {
  const { output, state } = await erase("erasure fault-free");
  expect(output).toBe("completed");
  return state;
})();

describe("crash matrix: a tenant erasure resumes at every step and ends as a fault-free one", () => {
  it("ends a fault-free erasure with no row left and every deletion counted", async () => {
    const state = await baseline;
    expect(state).toEqual({
      leftover: [],
      state: "completed",
      step: "completed",
      dataKeysDestroyed: true,
      miscounted: [],
      objectsCleared: { key_limiters: 1, wizard_sessions: 0, audit_chain: 1 },
      auditHeadSeq: 2,
      intact: true,
    });
  });

  const steps = [
    "begin",
    "shred",
    "rows:remaining",
    "rows:credential_versions:1",
    "rows:api_keys:1",
    "rows:audit_log:2",
    "rows:tenants:0",
    "rows-2:remaining",
    "settling",
    "sweep:remaining",
    "receipt",
  ];
  for (const step of steps) {
    it(`a "${step}" step that throws once is retried, and the erasure ends exactly as a fault-free one`, async () => {
      const { output, state } = await erase(`erasure throws in ${step}`, {
        modify: async (m) => {
          await m.mockStepError({ name: step }, new Error(`injected fault in ${step}`), 1);
        },
      });
      expect(output).toBe("completed");
      expect(state).toEqual(await baseline);
    });
  }

  /** The work a crashed instance committed before the engine recorded its step, for each boundary. */
  const allChunks = async (params: ErasureParams) => {
    await closeAuditChain(env, params);
    for (const spec of TENANT_TABLES) {
      while ((await eraseChunk(env, small(params), spec, "rows")).deleted > 0) {}
    }
  };
  const committedBeforeCrash: Record<string, (params: ErasureParams) => Promise<void>> = {
    shred: async (params) => {
      await shredDataKeys(env, params);
    },
    "shred and three chunks": async (params) => {
      await shredDataKeys(env, params);
      await closeAuditChain(env, params);
      const [first, second] = TENANT_TABLES.filter((spec) => spec.table.startsWith("credential"));
      for (const spec of [first, first, second]) if (spec) await eraseChunk(env, small(params), spec, "rows");
    },
    "every chunk": async (params) => {
      await shredDataKeys(env, params);
      await allChunks(params);
      await markStep(env, params, "settling");
    },
    "the receipt": async (params) => {
      await shredDataKeys(env, params);
      await allChunks(params);
      await markStep(env, params, "settling");
      await completeErasure(env, params);
    },
  };
  for (const [boundary, work] of Object.entries(committedBeforeCrash)) {
    it(`a crash after "${boundary}" committed converges on the same state when the run starts again`, async () => {
      const { output, state } = await erase(`erasure crash after ${boundary}`, { before: work });
      expect(output).toBe("completed");
      expect(state).toEqual(await baseline);
    });
  }
});

describe("rows that arrive late", () => {
  it("are taken by the sweep after the settle wait, and counted on the receipt", async () => {
    const late = {
      whileSettling: async (params: ErasureParams) => {
        expect(Object.values(await tenantRowCounts(params.tenantId)).every((n) => n === 0)).toBe(true);
        // A verification counted just before the erasure began, flushed after the rows were deleted.
        await env.DB.prepare(
          "INSERT INTO usage_counts (tenant_id, key_id, bucket, start, valid) VALUES (?, 'key_late', 'hour', 0, 1)",
        )
          .bind(params.tenantId)
          .run();
      },
    };
    const { output, state } = await erase("erasure late row", late, { usage_counts: 1 });
    expect(output).toBe("completed");
    expect(state).toEqual(await baseline);
  });
});
