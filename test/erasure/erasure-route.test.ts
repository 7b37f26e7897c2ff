/**
 * DELETE /api/v1/tenants/{id} and GET /api/v1/tenants/{id}/erasure: operator only, refusal of the tenant at
 * once, idempotent, and the receipt.
 */
import { introspectWorkflow } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ERASURE_SETTLED, requestErasure } from "../../src/erasure/tenant-erasure";
import { cookieHeader, sessionFromSetCookie } from "../auth/jwt-forge";
import { call, callJson, createKey, createTenant, verify } from "../helpers/api";
import { erasurePath, receiptCall, requestErasureCall } from "./erasure-fixtures";

async function erasureRows(tenantId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT count(*) AS n FROM tenant_erasures WHERE tenant_id = ?")
    .bind(tenantId)
    .first<{ n: number }>();
  return row?.n ?? -1;
}

async function signIn(adminKey: string): Promise<Record<string, string>> {
  const started = await call("POST", "/api/v1/auth/session", { body: { key: adminKey } });
  expect(started.status).toBe(201);
  return cookieHeader(sessionFromSetCookie(started.headers.get("set-cookie")) as string);
}

describe("who may erase a tenant", () => {
  it("refuses a caller without the bootstrap token with 401, the tenant's own admin key included, and erases nothing", async () => {
    const tenant = await createTenant("erasure unauthenticated");
    const attempts = [
      {},
      { key: "not-the-bootstrap-token-but-long-enough-0123456789" },
      { key: tenant.adminKey },
    ];
    for (const options of attempts) {
      expect((await callJson("DELETE", erasurePath(tenant.id), options)).status).toBe(401);
      expect((await callJson("GET", `${erasurePath(tenant.id)}/erasure`, options)).status).toBe(401);
    }
    expect(await erasureRows(tenant.id)).toBe(0);
    expect((await callJson("GET", "/api/v1/keys", { key: tenant.adminKey })).status).toBe(200);
  });

  it("answers 404 for a tenant that never existed, on DELETE and GET, and records nothing", async () => {
    const missing = "ten_NeverExisted0000000000";
    const erased = await requestErasureCall(missing);
    expect(erased.status).toBe(404);
    expect(erased.body).toMatchObject({ code: "NOT_FOUND" });
    expect((await receiptCall(missing)).status).toBe(404);
    expect(await erasureRows(missing)).toBe(0);
  });

  it("answers 404 for the receipt of a tenant that was never erased", async () => {
    const tenant = await createTenant("erasure never requested");
    expect((await receiptCall(tenant.id)).status).toBe(404);
  });
});

describe("refusing an erasing tenant at once (threat model cases 11 and 29)", () => {
  it("refuses its keys and sessions on the very next call after the request alone, before any Workflow step, while another tenant's keys keep working", async () => {
    const tenant = await createTenant("erasure refusal");
    const other = await createTenant("erasure refusal bystander");
    const key = await createKey(tenant, { name: "service key" });
    const cookie = await signIn(tenant.adminKey);
    // The verify route reads its caller through the in-isolate cache: fill it first.
    expect((await verify(tenant, key.key)).valid).toBe(true);
    expect((await callJson("GET", "/api/v1/keys", { headers: cookie })).status).toBe(200);

    await requestErasure(env, tenant.id, "req-refusal", Date.now());

    const verifyCall = await callJson("POST", "/api/v1/keys/verify", {
      key: tenant.adminKey,
      body: { key: key.key },
    });
    expect(verifyCall.status).toBe(401);
    expect((await callJson("GET", "/api/v1/keys", { key: tenant.adminKey })).status).toBe(401);
    expect((await callJson("GET", "/api/v1/keys", { key: key.key })).status).toBe(401);
    expect((await callJson("GET", "/api/v1/keys", { headers: cookie })).status).toBe(401);
    expect((await call("POST", "/api/v1/auth/session", { body: { key: tenant.adminKey } })).status).toBe(401);
    // Nothing was deleted yet: the key rows are refused because step 1 disabled them.
    const keys = await env.DB.prepare("SELECT enabled, next_rotation_at FROM api_keys WHERE tenant_id = ?")
      .bind(tenant.id)
      .all<{ enabled: number; next_rotation_at: number | null }>();
    expect(keys.results.length).toBe(2);
    expect(keys.results.every((row) => row.enabled === 0 && row.next_rotation_at === null)).toBe(true);

    const bystanderKey = await createKey(other, { name: "bystander key" });
    expect((await verify(other, bystanderKey.key)).valid).toBe(true);
  });

  it("lets no key of the erasing tenant be enabled again or created, even by a write that passed authentication before the request", async () => {
    const tenant = await createTenant("erasure no re-enable");
    await requestErasure(env, tenant.id, "req-reenable", Date.now());
    await expect(
      env.DB.prepare("UPDATE api_keys SET enabled = 1 WHERE id = ?").bind(tenant.adminKeyId).run(),
    ).rejects.toThrow();
    const enabled = await env.DB.prepare("SELECT enabled FROM api_keys WHERE id = ?")
      .bind(tenant.adminKeyId)
      .first<{ enabled: number }>();
    expect(enabled?.enabled).toBe(0);
  });
});

describe("erasing through the route", () => {
  it("answers 202 with the erasure and its receipt's address; the Workflow completes it; a second DELETE answers the same erasure and starts nothing", async () => {
    const tenant = await createTenant("erasure through the route");
    await using workflows = await introspectWorkflow(env.TENANT_ERASURE);
    await workflows.modifyAll(async (m) => {
      await m.disableRetryDelays();
      await m.mockEvent({ type: ERASURE_SETTLED, payload: {} });
    });

    const first = await requestErasureCall(tenant.id);
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ tenant_id: tenant.id, state: "erasing" });
    expect(first.body.erasure_id).toMatch(/^era_[0-9A-Za-z]{22}$/);
    expect(first.headers.get("location")).toBe(`/api/v1/tenants/${tenant.id}/erasure`);
    const again = await requestErasureCall(tenant.id);
    expect(again.status).toBe(202);
    expect(again.body.erasure_id).toBe(first.body.erasure_id);

    const instances = await workflows.get();
    expect(instances).toHaveLength(1);
    await instances[0]?.waitForStatus("complete");

    const receipt = await receiptCall(tenant.id);
    expect(receipt.status).toBe(200);
    expect(receipt.body).toMatchObject({
      erasure_id: first.body.erasure_id,
      tenant_id: tenant.id,
      state: "completed",
      data_keys_destroyed: 1,
      receipt_intact: true,
    });
    expect(receipt.body.rows_deleted).toMatchObject({ tenants: 1, api_keys: 1 });

    const afterwards = await requestErasureCall(tenant.id);
    expect(afterwards.status).toBe(202);
    expect(afterwards.body).toMatchObject({ erasure_id: first.body.erasure_id, state: "completed" });
    expect(await workflows.get()).toHaveLength(1);
    expect(await erasureRows(tenant.id)).toBe(1);
  });
});
