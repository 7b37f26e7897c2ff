import { beforeAll, describe, expect, it } from "vitest";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { snapshotTenantRows } from "../helpers/db";

describe("role-based access (threat model case 13)", () => {
  let tenant: TestTenant;
  let readOnly: string;
  let target: { id: string };

  beforeAll(async () => {
    tenant = await createTenant("rbac");
    readOnly = (await createKey(tenant, { role: "read_only" })).key;
    target = await createKey(tenant, { scopes: ["orders:read"] });
  });

  const writes: [string, string, (id: string) => string, unknown][] = [
    ["create a key", "POST", () => "/api/v1/keys", { name: "x" }],
    ["update a key", "PATCH", (id) => `/api/v1/keys/${id}`, { name: "x" }],
    ["rotate a key", "POST", (id) => `/api/v1/keys/${id}/rotate`, { grace_seconds: 0 }],
    ["revoke a key", "POST", (id) => `/api/v1/keys/${id}/revoke`, undefined],
    ["delete a key", "DELETE", (id) => `/api/v1/keys/${id}`, undefined],
    ["verify a key", "POST", () => "/api/v1/keys/verify", { key: "kw_live_x" }],
    ["start a wizard session", "POST", () => "/api/v1/auth/session", undefined],
  ];

  for (const [what, method, path, body] of writes) {
    it(`gives a read-only key 403 with no side effects when it tries to ${what}`, async () => {
      const before = await snapshotTenantRows(tenant.id);
      const response =
        what === "start a wizard session"
          ? await callJson(method, path(target.id), { body: { key: readOnly } })
          : await callJson(method, path(target.id), { key: readOnly, body });
      expect(response.status).toBe(403);
      expect(response.body).toMatchObject({ code: "FORBIDDEN", status: 403 });
      expect(await snapshotTenantRows(tenant.id)).toBe(before);
    });
  }

  it("lets a read-only key read", async () => {
    const response = await callJson("GET", `/api/v1/keys/${target.id}`, { key: readOnly });
    expect(response.status).toBe(200);
  });

  it("denies by default: a key with only custom scopes can call nothing", async () => {
    const customer = (await createKey(tenant, { scopes: ["orders:read"] })).key;
    for (const path of ["/api/v1/keys", "/api/v1/audit", `/api/v1/keys/${target.id}`]) {
      expect((await callJson("GET", path, { key: customer })).status).toBe(403);
    }
  });

  it("never lets a key grant scopes it does not hold", async () => {
    const writer = (await createKey(tenant, { role: "read_write" })).key;
    const before = await snapshotTenantRows(tenant.id);
    const escalate = await callJson("POST", "/api/v1/keys", {
      key: writer,
      body: { name: "x", role: "admin" },
    });
    expect(escalate.status).toBe(403);
    const viaScopes = await callJson("POST", "/api/v1/keys", {
      key: writer,
      body: { name: "x", scopes: ["credentials:reveal"] },
    });
    expect(viaScopes.status).toBe(403);
    const viaPatch = await callJson("PATCH", `/api/v1/keys/${target.id}`, {
      key: writer,
      body: { scopes: ["admin"] },
    });
    expect(viaPatch.status).toBe(403);
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
    const allowed = await callJson("POST", "/api/v1/keys", {
      key: writer,
      body: { name: "x", scopes: ["keys:read"] },
    });
    expect(allowed.status).toBe(201);
  });

  it("answers 401 with one uniform body for missing, malformed, unknown and revoked keys", async () => {
    const revoked = await createKey(tenant);
    await callJson("POST", `/api/v1/keys/${revoked.id}/revoke`, { key: tenant.adminKey });
    const bodies = new Set<string>();
    for (const headers of [
      {} as Record<string, string>,
      { authorization: `Bearer ${revoked.key}` },
      { authorization: "Bearer kw_live_unknownkeyAAAAAAAAAAAAAAAAAAAA" },
      { authorization: "Basic abc" },
    ]) {
      const response = await callJson<Record<string, unknown>>("GET", "/api/v1/keys", { headers });
      expect(response.status).toBe(401);
      bodies.add(JSON.stringify({ ...response.body, request_id: undefined, detail: undefined }));
    }
    expect(bodies.size).toBe(1);
  });
});
