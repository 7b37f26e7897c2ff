import { describe, expect, it } from "vitest";
import { call, callJson, createKey, createTenant, verify } from "../helpers/api";

describe("issued key lifecycle", () => {
  it("creates, verifies, lists, updates, rotates, revokes and deletes a key", async () => {
    const tenant = await createTenant();
    const created = await createKey(tenant, { scopes: ["orders:read"], environment: "test" });
    expect(created.key).toMatch(/^kw_test_[0-9A-Za-z]{28}$/);

    expect(await verify(tenant, created.key)).toMatchObject({
      valid: true,
      code: "VALID",
      key_id: created.id,
    });

    const list = await callJson<{ items: { id: string }[] }>("GET", "/api/v1/keys", { key: tenant.adminKey });
    expect(list.body.items.map((k) => k.id)).toContain(created.id);
    expect(JSON.stringify(list.body)).not.toContain(created.key);

    const patched = await callJson("PATCH", `/api/v1/keys/${created.id}`, {
      key: tenant.adminKey,
      body: { name: "renamed" },
    });
    expect(patched.body).toMatchObject({ name: "renamed" });

    const rotated = await callJson<{ id: string; key: string; previous: { id: string } }>(
      "POST",
      `/api/v1/keys/${created.id}/rotate`,
      { key: tenant.adminKey, body: { grace_seconds: 60 } },
    );
    expect(rotated.status).toBe(201);
    expect(await verify(tenant, created.key)).toMatchObject({ valid: true, replaced_by: rotated.body.id });
    expect(await verify(tenant, rotated.body.key)).toMatchObject({ valid: true, key_id: rotated.body.id });

    const revoked = await call("POST", `/api/v1/keys/${rotated.body.id}/revoke`, { key: tenant.adminKey });
    expect(revoked.status).toBe(200);
    expect(await verify(tenant, rotated.body.key)).toMatchObject({ valid: false, code: "DISABLED" });

    const deleted = await call("DELETE", `/api/v1/keys/${created.id}`, { key: tenant.adminKey });
    expect(deleted.status).toBe(204);
    expect(await verify(tenant, created.key)).toEqual({ valid: false, code: "NOT_FOUND" });
  });
});
