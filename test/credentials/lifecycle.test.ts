import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { call, callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { dumpDatabase, snapshotTenantRows } from "../helpers/db";
import { stripeKey } from "./samples";

interface Credential {
  id: string;
  version: number;
  fields: Record<string, string>;
  versions: { version: number }[];
  status: string;
}

async function storeStripe(tenant: TestTenant, secret = stripeKey()) {
  const response = await callJson<Credential>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service: "stripe", environment: "development", fields: { secret_key: secret } },
  });
  if (response.status !== 201) throw new Error(JSON.stringify(response.body));
  return { ...response, secret };
}

async function reveal(tenant: TestTenant, id: string, version?: number) {
  return callJson<{ fields: Record<string, string> }>("POST", `/api/v1/credentials/${id}/reveal`, {
    key: tenant.adminKey,
    body: version ? { version } : {},
  });
}

describe("credential lifecycle", () => {
  let tenant: TestTenant;
  beforeAll(async () => {
    tenant = await createTenant("vault");
  });

  it("stores a credential encrypted and returns it masked, then reveals it with no-store and an audit row", async () => {
    const { body, headers, secret } = await storeStripe(tenant);
    expect(body.fields.secret_key).not.toContain(secret.slice(8, 20));
    expect(body.fields.secret_key).toMatch(/…/);
    expect(headers.get("etag")).toBe(`"${body.id}.r1"`);
    const revealed = await reveal(tenant, body.id);
    expect(revealed.status).toBe(200);
    expect(revealed.headers.get("cache-control")).toBe("no-store");
    expect(revealed.body.fields).toEqual({ secret_key: secret });
    const audit = await env.DB.prepare("SELECT action FROM audit_log WHERE tenant_id = ? AND target_id = ?")
      .bind(tenant.id, body.id)
      .all<{ action: string }>();
    expect(audit.results.map((r) => r.action)).toEqual(["credential.create", "credential.reveal"]);
    const stored = await env.DB.prepare(
      "SELECT sealed_fields FROM credential_versions WHERE credential_id = ?",
    )
      .bind(body.id)
      .first<{ sealed_fields: string }>();
    expect(stored?.sealed_fields).not.toContain(secret);
    expect(JSON.parse(stored?.sealed_fields ?? "{}").secret_key).toMatch(/^[A-Za-z0-9+/]+=*$/);
  });

  it("refuses malformed, placeholder and mismatched-environment credentials without echoing them", async () => {
    for (const [environment, secret] of [
      ["development", "sk_test_short"],
      ["development", "sk_test_4eC39HqLyjWDarjtT1zdp7dc"],
      ["production", stripeKey("test")],
    ] as const) {
      const response = await callJson<{ code: string }>("POST", "/api/v1/credentials", {
        key: tenant.adminKey,
        body: { service: "stripe", environment, fields: { secret_key: secret } },
      });
      expect(response.status).toBe(422);
      expect(response.body.code).toBe("VALIDATION_FAILED");
      expect(JSON.stringify(response.body)).not.toContain(secret);
    }
  });

  it("versions updates behind If-Match, keeps the last 10, and rolls back", async () => {
    const { body: created, secret: first } = await storeStripe(tenant);
    let etag = `"${created.id}.r1"`;
    const missing = await callJson("PATCH", `/api/v1/credentials/${created.id}`, {
      key: tenant.adminKey,
      body: { fields: { secret_key: stripeKey() } },
    });
    expect(missing.status).toBe(428);
    let latest = "";
    for (let i = 0; i < 11; i++) {
      latest = stripeKey();
      const updated = await callJson<Credential>("PATCH", `/api/v1/credentials/${created.id}`, {
        key: tenant.adminKey,
        body: { fields: { secret_key: latest } },
        headers: { "if-match": etag },
      });
      expect(updated.status).toBe(200);
      etag = updated.headers.get("etag") as string;
    }
    const stale = await callJson("PATCH", `/api/v1/credentials/${created.id}`, {
      key: tenant.adminKey,
      body: { fields: { secret_key: stripeKey() } },
      headers: { "if-match": `"${created.id}.r1"` },
    });
    expect(stale.status).toBe(412);
    const detail = await callJson<Credential>("GET", `/api/v1/credentials/${created.id}`, {
      key: tenant.adminKey,
    });
    expect(detail.body.version).toBe(12);
    expect(detail.body.versions.map((v) => v.version)).toEqual([12, 11, 10, 9, 8, 7, 6, 5, 4, 3]);
    expect((await reveal(tenant, created.id, 1)).status).toBe(404);
    expect((await reveal(tenant, created.id)).body.fields.secret_key).toBe(latest);

    const v3 = await reveal(tenant, created.id, 3);
    const rolledBack = await callJson<Credential>("POST", `/api/v1/credentials/${created.id}/rollback`, {
      key: tenant.adminKey,
      body: { version: 3 },
      headers: { "if-match": etag },
    });
    expect(rolledBack.status).toBe(200);
    expect(rolledBack.body.version).toBe(13);
    expect((await reveal(tenant, created.id)).body.fields).toEqual(v3.body.fields);
    expect(v3.body.fields.secret_key).not.toBe(first);
  });

  it("soft-deletes, hides and restores a credential", async () => {
    const { body: created, headers } = await storeStripe(tenant);
    const deletion = await call("DELETE", `/api/v1/credentials/${created.id}`, {
      key: tenant.adminKey,
      headers: { "if-match": headers.get("etag") as string },
    });
    expect(deletion.status).toBe(204);
    expect(
      (await callJson("GET", `/api/v1/credentials/${created.id}`, { key: tenant.adminKey })).status,
    ).toBe(404);
    const deleted = await callJson<{ items: Credential[] }>("GET", "/api/v1/credentials?status=deleted", {
      key: tenant.adminKey,
    });
    expect(deleted.body.items.map((c) => c.id)).toContain(created.id);
    const restored = await callJson<Credential>("POST", `/api/v1/credentials/${created.id}/restore`, {
      key: tenant.adminKey,
    });
    expect(restored.body.status).toBe("active");
    // Deleting and restoring are changes a client can see: two revisions on.
    expect(restored.headers.get("etag")).toBe(`"${created.id}.r3"`);
    expect((await reveal(tenant, created.id)).status).toBe(200);
  });
});

describe("credential security (threat model cases 1, 3, 13, 18)", () => {
  let a: TestTenant;
  let b: TestTenant;
  beforeAll(async () => {
    a = await createTenant("cred A");
    b = await createTenant("cred B");
  });

  it("answers 404 for another tenant's credential on get, update, reveal, test, rollback, delete and restore, and changes nothing", async () => {
    const { body: theirs } = await storeStripe(b);
    const before = await snapshotTenantRows(b.id);
    for (const [method, path, body] of [
      ["GET", "", undefined],
      ["PATCH", "", { name: "x" }],
      ["POST", "/reveal", {}],
      ["POST", "/test", undefined],
      ["POST", "/rollback", { version: 1 }],
      ["DELETE", "", undefined],
      ["POST", "/restore", undefined],
    ] as const) {
      const foreign = await callJson<Record<string, unknown>>(
        method,
        `/api/v1/credentials/${theirs.id}${path}`,
        {
          key: a.adminKey,
          body,
          headers: { "if-match": `"${theirs.id}.r1"` },
        },
      );
      const never = await callJson<Record<string, unknown>>(
        method,
        `/api/v1/credentials/cred_0000000000000000000000${path}`,
        {
          key: a.adminKey,
          body,
          headers: { "if-match": `"cred_0000000000000000000000.r1"` },
        },
      );
      expect(foreign.status, `${method} ${path}`).toBe(404);
      expect({ ...foreign.body, request_id: 0 }).toEqual({ ...never.body, request_id: 0 });
    }
    expect(await snapshotTenantRows(b.id)).toBe(before);
  });

  it("fails to decrypt a ciphertext copied into another credential of the same tenant, with a generic error", async () => {
    const { body: source, secret } = await storeStripe(a);
    const { body: target } = await storeStripe(a);
    await env.DB.prepare(
      "UPDATE credential_versions SET sealed_fields = (SELECT sealed_fields FROM credential_versions WHERE credential_id = ?) WHERE credential_id = ?",
    )
      .bind(source.id, target.id)
      .run();
    const response = await reveal(a, target.id);
    expect(response.status).toBe(500);
    expect(response.body).toMatchObject({ code: "INTEGRITY_ERROR" });
    expect(JSON.stringify(response.body)).not.toContain(secret);
  });

  it("fails to decrypt a ciphertext copied into another tenant's credential", async () => {
    const { body: source, secret } = await storeStripe(a);
    const { body: target } = await storeStripe(b);
    await env.DB.prepare(
      "UPDATE credential_versions SET sealed_fields = (SELECT sealed_fields FROM credential_versions WHERE credential_id = ?) WHERE credential_id = ?",
    )
      .bind(source.id, target.id)
      .run();
    const response = await reveal(b, target.id);
    expect(response.status).toBe(500);
    expect(response.body).toMatchObject({ code: "INTEGRITY_ERROR" });
    expect(JSON.stringify(response.body)).not.toContain(secret);
  });

  it("gives a read-only key 403 on store, update, reveal, test and delete, with no side effects", async () => {
    const { body: created } = await storeStripe(a);
    const readOnly = (await createKey(a, { role: "read_only" })).key;
    const before = await snapshotTenantRows(a.id);
    for (const [method, path, body] of [
      [
        "POST",
        "/api/v1/credentials",
        { service: "stripe", environment: "development", fields: { secret_key: stripeKey() } },
      ],
      ["PATCH", `/api/v1/credentials/${created.id}`, { name: "x" }],
      ["POST", `/api/v1/credentials/${created.id}/reveal`, {}],
      ["POST", `/api/v1/credentials/${created.id}/test`, undefined],
      ["DELETE", `/api/v1/credentials/${created.id}`, undefined],
    ] as const) {
      const response = await callJson(method, path, {
        key: readOnly,
        body,
        headers: { "if-match": `"${created.id}.r1"` },
      });
      expect(response.status, `${method} ${path}`).toBe(403);
    }
    expect(await snapshotTenantRows(a.id)).toBe(before);
    expect((await callJson("GET", `/api/v1/credentials/${created.id}`, { key: readOnly })).status).toBe(200);
  });

  it("never lets a canary credential reach the database dump, audit rows or list responses", async () => {
    const canary = stripeKey();
    const { body } = await storeStripe(a, canary);
    await reveal(a, body.id);
    const listed = await call("GET", "/api/v1/credentials", { key: a.adminKey });
    expect(await listed.text()).not.toContain(canary);
    expect(await dumpDatabase()).not.toContain(canary);
  });
});
