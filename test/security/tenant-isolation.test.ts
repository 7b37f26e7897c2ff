import { beforeAll, describe, expect, it } from "vitest";
import { callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";
import { snapshotTenantRows } from "../helpers/db";

const withoutRequestId = (body: Record<string, unknown>) => ({ ...body, request_id: undefined });

describe("tenant isolation (threat model case 1)", () => {
  let a: TestTenant;
  let b: TestTenant;
  let bKey: { id: string; key: string };

  beforeAll(async () => {
    a = await createTenant("A");
    b = await createTenant("B");
    bKey = await createKey(b, { scopes: ["orders:read"] });
  });

  const attempts: [string, string, (id: string) => string, unknown][] = [
    ["GET", "get", (id) => `/api/v1/keys/${id}`, undefined],
    ["PATCH", "update", (id) => `/api/v1/keys/${id}`, { name: "hijacked" }],
    ["DELETE", "delete", (id) => `/api/v1/keys/${id}`, undefined],
    ["POST", "rotate", (id) => `/api/v1/keys/${id}/rotate`, { grace_seconds: 0 }],
    ["POST", "revoke", (id) => `/api/v1/keys/${id}/revoke`, undefined],
    ["GET", "read usage of", (id) => `/api/v1/keys/${id}/usage`, undefined],
  ];

  for (const [method, verb, path, body] of attempts) {
    it(`answers 404, identical to a never-existing id, when tenant A tries to ${verb} tenant B's key`, async () => {
      const before = await snapshotTenantRows(b.id);
      const foreign = await callJson(method, path(bKey.id), { key: a.adminKey, body });
      const missing = await callJson(method, path("key_0000000000000000000000"), { key: a.adminKey, body });
      expect(foreign.status).toBe(404);
      expect(foreign.headers.get("content-type")).toBe("application/problem+json");
      expect(withoutRequestId(foreign.body)).toEqual(withoutRequestId(missing.body));
      expect(await snapshotTenantRows(b.id)).toBe(before);
    });
  }

  it("reports another tenant's key as NOT_FOUND on verify, exactly like an unknown key", async () => {
    expect(await verify(a, bKey.key)).toEqual({ valid: false, code: "NOT_FOUND" });
    expect(await verify(b, bKey.key)).toMatchObject({ valid: true, key_id: bKey.id });
  });

  it("never lists another tenant's keys", async () => {
    const list = await callJson<{ items: { id: string }[] }>("GET", "/api/v1/keys?limit=100", {
      key: a.adminKey,
    });
    expect(list.body.items.map((k) => k.id)).not.toContain(bKey.id);
    expect(list.body.items.map((k) => k.id)).toContain(a.adminKeyId);
  });
});

describe("tenant id smuggling (threat model case 2)", () => {
  let a: TestTenant;
  let b: TestTenant;

  beforeAll(async () => {
    a = await createTenant("A2");
    b = await createTenant("B2");
  });

  it("ignores a tenant id in headers and the query string: keys are created in the caller's own tenant", async () => {
    const created = await callJson<{ id: string }>(
      "POST",
      `/api/v1/keys?tenant_id=${b.id}&tenantId=${b.id}`,
      {
        key: a.adminKey,
        body: { name: "smuggled" },
        headers: { "x-tenant-id": b.id, "x-keywarden-tenant": b.id },
      },
    );
    expect(created.status).toBe(201);
    const inA = await callJson("GET", `/api/v1/keys/${created.body.id}`, { key: a.adminKey });
    const inB = await callJson("GET", `/api/v1/keys/${created.body.id}`, { key: b.adminKey });
    expect(inA.status).toBe(200);
    expect(inB.status).toBe(404);
  });

  it("rejects a tenant id in the body with 422 and creates nothing", async () => {
    const before = await snapshotTenantRows(b.id);
    const response = await callJson<{ code: string; errors: { path: string }[] }>("POST", "/api/v1/keys", {
      key: a.adminKey,
      body: { name: "smuggled", tenant_id: b.id },
    });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe("VALIDATION_FAILED");
    expect(await snapshotTenantRows(b.id)).toBe(before);
  });

  it("lists only the caller's keys whatever tenant the query names", async () => {
    const list = await callJson<{ items: { id: string }[] }>("GET", `/api/v1/keys?tenant_id=${b.id}`, {
      key: a.adminKey,
    });
    expect(list.status).toBe(200);
    expect(list.body.items.map((k) => k.id)).not.toContain(b.adminKeyId);
  });
});
