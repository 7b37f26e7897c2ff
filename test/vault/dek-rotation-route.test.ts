/** POST /api/v1/keyring/tenants/{tenant_id}/data-key/rotate: an operator starts a tenant's DEK rotation now. */
import { introspectWorkflow } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { OVERLAP_ENDED } from "../../src/lifecycle/rotation-params";
import { WIZARD_MAX_AGE_MS } from "../../src/wizard/wizard-session";
import { callJson, createTenant } from "../helpers/api";
import { storeCredential, stripeTestKey } from "../lifecycle/credential-rotation-fixtures";
import { claimDekRun, dataKeysOf, dekAudit, dekRuns } from "./dek-rotation-fixtures";

const rotatePath = (tenantId: string) => `/api/v1/keyring/tenants/${tenantId}/data-key/rotate`;

/** `key` null: no Authorization header. */
function rotate(tenantId: string, key: string | null = env.BOOTSTRAP_TOKEN) {
  return callJson<{ run_id?: string; code?: string }>("POST", rotatePath(tenantId), key ? { key } : {});
}

describe("rotating a tenant's DEK by hand (operator)", () => {
  it("answers 202 with the run id, and the scheduled rotation's Workflow re-encrypts the fields and retires the old DEK", async () => {
    const tenant = await createTenant("dek by hand");
    const value = stripeTestKey();
    const credential = await storeCredential(tenant, "stripe", { secret_key: value });
    await using workflows = await introspectWorkflow(env.DEK_ROTATION);
    await workflows.modifyAll(async (m) => {
      await m.disableRetryDelays();
      await m.mockEvent({ type: OVERLAP_ENDED, payload: { now: Date.now() + WIZARD_MAX_AGE_MS } });
    });

    const started = await rotate(tenant.id);
    expect(started.status).toBe(202);
    expect(started.body.run_id).toMatch(new RegExp(`^${tenant.id}-m\\d+$`));
    const instances = await workflows.get();
    expect(instances).toHaveLength(1);
    await instances[0]?.waitForStatus("complete");

    expect((await dataKeysOf(tenant.id)).map(({ version, status }) => ({ version, status }))).toEqual([
      { version: 2, status: "active" },
    ]);
    expect(await dekRuns(tenant.id)).toMatchObject([{ id: started.body.run_id, state: "completed" }]);
    const revealed = await callJson<{ fields: Record<string, string> }>(
      "POST",
      `/api/v1/credentials/${credential}/reveal`,
      { key: tenant.adminKey, body: {} },
    );
    expect(revealed.body.fields).toEqual({ secret_key: value });
    expect((await dekAudit(tenant.id)).map((row) => row.action)).toEqual([
      "data_key.rotation_requested",
      "data_key.rotate",
      "data_key.retire",
    ]);
    const operator = await env.DB.prepare(
      "SELECT actor_type, actor_id FROM audit_log WHERE tenant_id = ? AND action = 'data_key.rotation_requested'",
    )
      .bind(tenant.id)
      .first();
    expect(operator).toEqual({ actor_type: "operator", actor_id: "bootstrap" });
  });

  it("refuses a caller without the bootstrap token with 401, a tenant's admin key included, and starts nothing", async () => {
    const tenant = await createTenant("dek by hand unauthenticated");
    for (const key of [null, tenant.adminKey, `${env.BOOTSTRAP_TOKEN}x`]) {
      const refused = await rotate(tenant.id, key);
      expect(refused.status).toBe(401);
      expect(refused.body.code).toBe("UNAUTHENTICATED");
    }
    expect(await dekRuns(tenant.id)).toEqual([]);
    expect((await dataKeysOf(tenant.id)).map((row) => row.version)).toEqual([1]);
  });

  it("answers 404 for a tenant that does not exist", async () => {
    const refused = await rotate("ten_doesnotexist0000000000");
    expect(refused.status).toBe(404);
    expect(refused.body.code).toBe("NOT_FOUND");
  });

  it("answers 409 while a rotation of the tenant is in progress, and starts no second run", async () => {
    const tenant = await createTenant("dek by hand busy");
    const running = await claimDekRun(tenant.id);
    const refused = await rotate(tenant.id);
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe("CONFLICT");
    expect((await dekRuns(tenant.id)).map((run) => run.id)).toEqual([running.runId]);
    expect((await dataKeysOf(tenant.id)).map((row) => row.version)).toEqual([1]);
  });

  it("is documented in the OpenAPI document with the bootstrap token and every answer it gives", async () => {
    const { body } = await callJson<{
      paths: Record<string, Record<string, { security: unknown; responses: Record<string, unknown> }>>;
    }>("GET", "/api/openapi.json");
    const operation = body.paths["/api/v1/keyring/tenants/{tenant_id}/data-key/rotate"]?.post;
    expect(operation?.security).toEqual([{ bootstrapToken: [] }]);
    expect(Object.keys(operation?.responses ?? {})).toEqual(
      expect.arrayContaining(["202", "401", "404", "409", "429", "503"]),
    );
  });
});
