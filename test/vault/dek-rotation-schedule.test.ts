/** The cron starts DEK rotations: on the 90-day schedule, and at once when the encryption counter crosses its bound. */
import { introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { runRotationTick } from "../../src/lifecycle/scheduler";
import { DEK_ROTATION_ENCRYPTIONS, DEK_ROTATION_MS } from "../../src/vault/data-keys";
import { WIZARD_MAX_AGE_MS } from "../../src/wizard/wizard-session";
import { callJson, createTenant, type TestTenant } from "../helpers/api";
import { storeCredential, stripeTestKey } from "../lifecycle/credential-rotation-fixtures";
import { dataKeysOf, dekAudit, dekRuns, rowsBelow } from "./dek-rotation-fixtures";

async function reveal(tenant: TestTenant, id: string) {
  const response = await callJson<{ fields: Record<string, string> }>(
    "POST",
    `/api/v1/credentials/${id}/reveal`,
    { key: tenant.adminKey, body: {} },
  );
  expect(response.status).toBe(200);
  return response.body.fields;
}

async function dekVersionOf(credentialId: string) {
  const row = await env.DB.prepare("SELECT dek_version FROM credential_versions WHERE credential_id = ?")
    .bind(credentialId)
    .first<{ dek_version: number }>();
  return row?.dek_version;
}

describe("the cron rotates a tenant's DEK on its schedule", () => {
  it("is due 90 days after creation; new writes use the new DEK at once, older fields move to it, and the old DEK is deleted once the retire wait ends", async () => {
    const tenant = await createTenant("dek schedule");
    const value = stripeTestKey();
    const old = await storeCredential(tenant, "stripe", { secret_key: value });
    const [v1] = await dataKeysOf(tenant.id);
    expect(v1).toMatchObject({ version: 1, status: "active" });
    const due = v1?.next_rotation_at as number;
    expect(due).toBe((v1?.created_at as number) + DEK_ROTATION_MS);

    const tick = due + 60_000;
    const runId = `${tenant.id}-${due}`;
    await using instance = await introspectWorkflowInstance(env.DEK_ROTATION, runId);
    await instance.modify(async (m) => {
      await m.disableRetryDelays();
    });
    expect((await runRotationTick(env, tick - 120_000)).started).toBe(0);
    expect((await runRotationTick(env, tick)).started).toBe(1);
    expect(await instance.waitForStepResult({ name: "create" })).toBe(2);

    // The switch is one batch: from then on every write is sealed under v2.
    const laterValue = stripeTestKey();
    const later = await storeCredential(tenant, "stripe", { secret_key: laterValue });
    expect(await dekVersionOf(later)).toBe(2);

    expect(await instance.waitForStepResult({ name: "overlap" })).toBe(tick + WIZARD_MAX_AGE_MS);
    expect(await rowsBelow(tenant.id, 2)).toBe(0);
    expect(await dekVersionOf(old)).toBe(2);
    expect(await dataKeysOf(tenant.id)).toMatchObject([
      { version: 1, status: "retiring", retire_after: tick + WIZARD_MAX_AGE_MS, next_rotation_at: null },
      { version: 2, status: "active", retire_after: null, next_rotation_at: tick + DEK_ROTATION_MS },
    ]);
    expect(await dekRuns(tenant.id)).toMatchObject([
      { id: runId, state: "in_progress", step: "overlap", successor_id: "2" },
    ]);

    // A minute before retire_after the old DEK stays (a wizard may still hold a blob under it).
    await runRotationTick(env, tick + WIZARD_MAX_AGE_MS - 60_000);
    expect((await dekRuns(tenant.id))[0]?.step).toBe("overlap");
    await runRotationTick(env, tick + WIZARD_MAX_AGE_MS);
    await instance.waitForStatus("complete");
    expect(await instance.getOutput()).toBe("completed");

    expect((await dataKeysOf(tenant.id)).map(({ version, status }) => ({ version, status }))).toEqual([
      { version: 2, status: "active" },
    ]);
    expect(await reveal(tenant, old)).toEqual({ secret_key: value });
    expect(await reveal(tenant, later)).toEqual({ secret_key: laterValue });
    expect(await dekRuns(tenant.id)).toMatchObject([{ state: "completed", successor_id: "2", error: null }]);
    expect(await dekAudit(tenant.id)).toEqual([
      {
        action: "data_key.rotate",
        detail: expect.objectContaining({ version: 2, retiring_version: 1, run_id: runId }),
      },
      {
        action: "data_key.retire",
        detail: { versions: ["1"], active_version: 2, run_id: runId },
      },
    ]);
    const chain = await callJson<{ ok: boolean }>("GET", "/api/v1/audit/verify", { key: tenant.adminKey });
    expect(chain.body.ok).toBe(true);
  });
});

describe("the encryption counter makes a DEK due at once", () => {
  it("leaves the schedule alone below DEK_ROTATION_ENCRYPTIONS, and the write that crosses it starts a rotation on the next tick", async () => {
    const tenant = await createTenant("dek counter");
    await env.DB.prepare("UPDATE data_keys SET encryption_count = ? WHERE tenant_id = ?")
      .bind(DEK_ROTATION_ENCRYPTIONS - 2, tenant.id)
      .run();
    const [scheduled] = await dataKeysOf(tenant.id);
    await storeCredential(tenant, "stripe", { secret_key: stripeTestKey() });
    expect((await dataKeysOf(tenant.id))[0]).toMatchObject({
      encryption_count: DEK_ROTATION_ENCRYPTIONS - 1,
      next_rotation_at: scheduled?.next_rotation_at,
    });

    const before = Date.now();
    const value = stripeTestKey();
    const credential = await storeCredential(tenant, "stripe", { secret_key: value });
    const [crossed] = await dataKeysOf(tenant.id);
    expect(crossed?.encryption_count).toBe(DEK_ROTATION_ENCRYPTIONS);
    const due = crossed?.next_rotation_at as number;
    expect(due).toBeGreaterThanOrEqual(before);
    expect(due).toBeLessThanOrEqual(Date.now());

    const tick = due + 60_000;
    await using instance = await introspectWorkflowInstance(env.DEK_ROTATION, `${tenant.id}-${due}`);
    await instance.modify(async (m) => {
      await m.disableRetryDelays();
    });
    expect((await runRotationTick(env, tick)).started).toBe(1);
    expect(await instance.waitForStepResult({ name: "create" })).toBe(2);
    await instance.waitForStepResult({ name: "overlap" });
    // The new DEK starts counting from zero: one encryption per field it re-encrypted.
    expect((await dataKeysOf(tenant.id))[1]).toMatchObject({
      version: 2,
      status: "active",
      encryption_count: 2,
    });
    await runRotationTick(env, tick + WIZARD_MAX_AGE_MS);
    await instance.waitForStatus("complete");
    expect((await dataKeysOf(tenant.id)).map((row) => row.version)).toEqual([2]);
    expect(await reveal(tenant, credential)).toEqual({ secret_key: value });
  });
});
