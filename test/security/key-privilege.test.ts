import { env } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { ROLES, scopesBeyondGrant } from "../../src/auth/scopes";
import { database } from "../../src/db/client";
import { apiKeys, securityPolicies } from "../../src/db/schema";
import { commitKeyChange, LAST_ADMIN_KEY_DETAIL, revocationOf } from "../../src/keys/key-lifecycle";
import { adminActor, call, callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";
import { snapshotTenantRows } from "../helpers/db";

type Problem = { code: string; status: number; detail: string };
type KeyBody = { id: string; key: string; scopes: string[]; enabled: boolean };

/** Every attempt a `keys:write` caller can make on a key, as (label, method, path, body). */
const MUTATIONS: [string, string, (id: string) => string, unknown][] = [
  ["re-scopes", "PATCH", (id) => `/api/v1/keys/${id}`, { scopes: ["keys:read"] }],
  ["disables", "PATCH", (id) => `/api/v1/keys/${id}`, { enabled: false }],
  ["renames", "PATCH", (id) => `/api/v1/keys/${id}`, { name: "hijacked" }],
  ["rotates", "POST", (id) => `/api/v1/keys/${id}/rotate`, { grace_seconds: 0 }],
  ["revokes", "POST", (id) => `/api/v1/keys/${id}/revoke`, undefined],
  ["deletes", "DELETE", (id) => `/api/v1/keys/${id}`, undefined],
];

async function keyRow(id: string) {
  return env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(id).first<Record<string, unknown>>();
}

/** The admin key row as stored, minus last_used_at (authenticating with a key legitimately touches it). */
async function storedAdminRow(id: string): Promise<string> {
  const { last_used_at: _touchedByAuthentication, ...row } = (await keyRow(id)) ?? {};
  return JSON.stringify(row);
}

/** Working admin keys as the safety net defines them: enabled, not revoked, not expired, holding `admin`. */
async function workingAdminKeys(tenantId: string): Promise<number> {
  const row = await env.DB.prepare(
    `SELECT count(*) AS n FROM api_keys WHERE tenant_id = ? AND enabled = 1 AND revoked_at IS NULL
       AND (expires_at IS NULL OR expires_at > ?)
       AND EXISTS (SELECT 1 FROM json_each(scopes) WHERE value = 'admin')`,
  )
    .bind(tenantId, Date.now())
    .first<{ n: number }>();
  return row?.n ?? 0;
}

async function expectAdminStillWorks(tenant: TestTenant) {
  expect(await verify(tenant, tenant.adminKey)).toMatchObject({ valid: true, key_id: tenant.adminKeyId });
  expect((await call("GET", "/api/v1/keys", { key: tenant.adminKey })).status).toBe(200);
}

describe("key management needs every Keywarden scope of the target key (threat model case 25)", () => {
  let tenant: TestTenant;
  let writer: KeyBody;

  beforeAll(async () => {
    tenant = await createTenant("key privilege");
    writer = (await createKey(tenant, { role: "read_write" })) as KeyBody;
  });

  for (const [what, method, path, body] of MUTATIONS) {
    it(`refuses a read_write key that ${what} the admin key with 403, leaving it byte-for-byte unchanged and working`, async () => {
      const adminBefore = await storedAdminRow(tenant.adminKeyId);
      const tenantBefore = await snapshotTenantRows(tenant.id);

      const response = await callJson<Problem>(method, path(tenant.adminKeyId), { key: writer.key, body });

      expect(response.status).toBe(403);
      expect(response.body).toMatchObject({ code: "FORBIDDEN", status: 403 });
      expect(response.body.detail).toContain("admin");
      expect(JSON.stringify(response.body)).not.toMatch(/kw_(live|test)_[0-9A-Za-z]{20,}/);
      expect(await storedAdminRow(tenant.adminKeyId)).toBe(adminBefore);
      expect(await snapshotTenantRows(tenant.id)).toBe(tenantBefore);
      await expectAdminStillWorks(tenant);
    });
  }

  it("refuses a read_write key that creates an admin-scoped key, by role or by scope, with no side effects", async () => {
    const before = await snapshotTenantRows(tenant.id);
    for (const body of [
      { name: "escalate", role: "admin" },
      { name: "escalate", scopes: ["admin"] },
    ]) {
      const response = await callJson<Problem>("POST", "/api/v1/keys", { key: writer.key, body });
      expect(response.status).toBe(403);
      expect(response.body).toMatchObject({ code: "FORBIDDEN" });
    }
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });

  it("refuses a read_write key on a non-admin key that holds a Keywarden scope it lacks (credentials:reveal)", async () => {
    const revealer = await createKey(tenant, { name: "revealer", scopes: ["credentials:reveal"] });
    const before = await snapshotTenantRows(tenant.id);
    for (const [, method, path, body] of MUTATIONS) {
      const response = await callJson<Problem>(method, path(revealer.id), { key: writer.key, body });
      expect(response.status).toBe(403);
      expect(response.body.detail).toContain("credentials:reveal");
    }
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });

  it("lets a read_write key fully manage keys within its own scopes; tenant custom scopes do not count", async () => {
    const own = await callJson<KeyBody>("POST", "/api/v1/keys", {
      key: writer.key,
      body: { name: "service", scopes: ["keys:verify", "orders:read"] },
    });
    expect(own.status).toBe(201);
    // Created by the admin, but every Keywarden scope on it is one the writer holds.
    const peer = await createKey(tenant, { name: "peer", role: "read_write", scopes: ["billing:write"] });

    for (const target of [own.body, peer]) {
      const renamed = await callJson("PATCH", `/api/v1/keys/${target.id}`, {
        key: writer.key,
        body: { name: "renamed", enabled: false },
      });
      expect(renamed.status).toBe(200);
      expect(
        (await callJson("PATCH", `/api/v1/keys/${target.id}`, { key: writer.key, body: { enabled: true } }))
          .status,
      ).toBe(200);
      const rotated = await callJson<KeyBody & { previous: { id: string } }>(
        "POST",
        `/api/v1/keys/${target.id}/rotate`,
        { key: writer.key, body: { grace_seconds: 0 } },
      );
      expect(rotated.status).toBe(201);
      expect(rotated.body.previous.id).toBe(target.id);
      const revoked = await call("POST", `/api/v1/keys/${rotated.body.id}/revoke`, { key: writer.key });
      expect(revoked.status).toBe(200);
      expect((await call("DELETE", `/api/v1/keys/${target.id}`, { key: writer.key })).status).toBe(204);
    }
  });

  it("gives a rotation's successor exactly its source's scopes, never more than the caller may grant", async () => {
    const source = await createKey(tenant, { name: "narrow", scopes: ["keys:read", "orders:read"] });
    const rotated = await callJson<KeyBody>("POST", `/api/v1/keys/${source.id}/rotate`, {
      key: writer.key,
      body: { grace_seconds: 60 },
    });
    expect(rotated.status).toBe(201);
    expect(rotated.body.scopes).toEqual(["keys:read", "orders:read"]);
    expect(scopesBeyondGrant(rotated.body.scopes, new Set(ROLES.read_write))).toEqual([]);
    expect(await verify(tenant, rotated.body.key, { scopes: ["admin"] })).toMatchObject({
      valid: false,
      code: "INSUFFICIENT_SCOPES",
    });
  });

  it("leaves the tenant a working admin key after every mutation a non-admin key can attempt, on every key", async () => {
    const own = await tenantOfItsOwn();
    // Each non-admin role tries every mutation on every key it can list, its own key included, twice over:
    // the second round runs against whatever the first round left behind.
    for (let round = 0; round < 2; round++) {
      for (const actor of [own.writer, own.readOnly]) {
        const listed = await callJson<{ items: { id: string }[] }>("GET", "/api/v1/keys?limit=100", {
          key: own.tenant.adminKey,
        });
        for (const { id } of listed.body.items) {
          for (const [, method, path, body] of MUTATIONS) {
            await call(method, path(id), { key: actor, body });
          }
          await call("PATCH", `/api/v1/keys/${id}`, { key: actor, body: { role: "admin" } });
        }
        await call("POST", "/api/v1/keys", { key: actor, body: { name: "x", role: "admin" } });
      }
    }
    expect(await workingAdminKeys(own.tenant.id)).toBeGreaterThanOrEqual(1);
    await expectAdminStillWorks(own.tenant);
  });
});

async function tenantOfItsOwn() {
  const tenant = await createTenant("sequence");
  return {
    tenant,
    writer: (await createKey(tenant, { name: "writer", role: "read_write" })).key,
    readOnly: (await createKey(tenant, { name: "reader", role: "read_only" })).key,
  };
}

describe("the tenant's last working admin key cannot be removed, even by an admin (threat model case 25)", () => {
  const removals: [string, string, (id: string) => string, unknown][] = [
    ["revoke", "POST", (id) => `/api/v1/keys/${id}/revoke`, undefined],
    ["disable", "PATCH", (id) => `/api/v1/keys/${id}`, { enabled: false }],
    ["down-scope", "PATCH", (id) => `/api/v1/keys/${id}`, { role: "read_write" }],
    ["delete", "DELETE", (id) => `/api/v1/keys/${id}`, undefined],
  ];

  for (const [what, method, path, body] of removals) {
    it(`answers 409 when an admin tries to ${what} the last working admin key, with no side effects`, async () => {
      const tenant = await createTenant(`last admin ${what}`);
      const before = await snapshotTenantRows(tenant.id);
      const response = await callJson<Problem>(method, path(tenant.adminKeyId), {
        key: tenant.adminKey,
        body,
      });
      expect(response.status).toBe(409);
      expect(response.body).toMatchObject({ code: "CONFLICT", detail: LAST_ADMIN_KEY_DETAIL });
      expect(await snapshotTenantRows(tenant.id)).toBe(before);
      await expectAdminStillWorks(tenant);
    });
  }

  it("allows removing an admin key while another working admin key remains, then protects the survivor", async () => {
    const tenant = await createTenant("two admins");
    const second = await createKey(tenant, { name: "second admin", role: "admin" });
    const revoked = await call("POST", `/api/v1/keys/${tenant.adminKeyId}/revoke`, { key: second.key });
    expect(revoked.status).toBe(200);
    const lastOne = await callJson<Problem>("DELETE", `/api/v1/keys/${second.id}`, { key: second.key });
    expect(lastOne.status).toBe(409);
    expect(await workingAdminKeys(tenant.id)).toBe(1);
  });

  it("does not count a disabled or expired admin key as a working one", async () => {
    const tenant = await createTenant("stale admins");
    const disabled = await createKey(tenant, { name: "disabled admin", role: "admin" });
    const expired = await createKey(tenant, { name: "expired admin", role: "admin" });
    await env.DB.prepare("UPDATE api_keys SET enabled = 0 WHERE id = ?").bind(disabled.id).run();
    await env.DB.prepare("UPDATE api_keys SET expires_at = ? WHERE id = ?").bind(1_000, expired.id).run();
    const response = await callJson<Problem>("POST", `/api/v1/keys/${tenant.adminKeyId}/revoke`, {
      key: tenant.adminKey,
    });
    expect(response.status).toBe(409);
  });

  it("is exact under a race: a revocation planned while two admin keys worked fails if the other one went first", async () => {
    const tenant = await createTenant("admin race");
    const other = await createKey(tenant, { name: "other admin", role: "admin" });
    const db = database(env.DB);
    const row = await db.select().from(apiKeys).where(eq(apiKeys.id, tenant.adminKeyId)).get();
    if (!row) throw new Error("admin key row missing");
    // Planned from a read that saw two working admin keys ...
    const { statements, events } = revocationOf(db, row, Date.now());
    // ... while a concurrent request revokes the other one and commits first.
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(Date.now(), other.id).run();
    const before = await snapshotTenantRows(tenant.id);

    const actor = adminActor(tenant, "race");
    await expect(commitKeyChange(env, actor, statements, events)).rejects.toMatchObject({
      code: "CONFLICT",
      detail: LAST_ADMIN_KEY_DETAIL,
    });
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
    await expectAdminStillWorks(tenant);
  });
});

describe("minting or rotating an admin-capable key needs step-up (threat model case 26)", () => {
  it("refuses an admin key of a tenant requiring 2FA (not enrolled) to mint or rotate an admin key, and nothing else", async () => {
    const tenant = await createTenant("step-up");
    const adminTwin = await createKey(tenant, { name: "admin twin", role: "admin" });
    await database(env.DB).insert(securityPolicies).values({
      tenantId: tenant.id,
      securityLevel: "basic",
      environment: "production",
      rotationPolicy: "never",
      rotationDays: null,
      ipAllowlist: [],
      countryAllowlist: [],
      require2fa: true,
      compliance: [],
      wizardId: "wiz_test",
      updatedAt: Date.now(),
    });
    const before = await snapshotTenantRows(tenant.id);

    const mint = await callJson<Problem>("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: { name: "new admin", role: "admin" },
    });
    const rotate = await callJson<Problem>("POST", `/api/v1/keys/${adminTwin.id}/rotate`, {
      key: tenant.adminKey,
      body: { grace_seconds: 0 },
    });
    for (const refused of [mint, rotate]) {
      expect([401, 403]).toContain(refused.status);
      expect(JSON.stringify(refused.body)).not.toMatch(/kw_(live|test)_[0-9A-Za-z]{20,}/);
    }
    expect(await snapshotTenantRows(tenant.id)).toBe(before);

    // A key that is not admin-capable needs no step-up.
    const plain = await callJson<KeyBody>("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: { name: "plain", role: "read_write" },
    });
    expect(plain.status).toBe(201);
    const rotated = await call("POST", `/api/v1/keys/${plain.body.id}/rotate`, {
      key: tenant.adminKey,
      body: { grace_seconds: 0 },
    });
    expect(rotated.status).toBe(201);
  });
});
