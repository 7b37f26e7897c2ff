import { env } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { call, callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";
import { dumpDatabase } from "../helpers/db";

type Schema = { $ref?: string; properties?: Record<string, Schema>; items?: Schema; [k: string]: unknown };

/** Property names that would mean secret material is part of a response contract. */
const SECRET_NAMES =
  /^(hash|key_hash|wrapped_key|wrapped_dek|ciphertext|sealed_fields|sealed_secrets|iv|nonce|check_value|master_key)$/;
/** The only responses allowed to carry a full key: the ones that create it, and the one-time pickup of a rotated one. */
const KEY_BEARING = new Set([
  "CreatedKey",
  "RotatedKey",
  "PickedUpKey",
  "POST /api/v1/tenants 201",
  "POST /api/wizard/api-keys/generate 201",
]);

function propertyNames(schema: Schema, schemas: Record<string, Schema>, seen = new Set<string>()): string[] {
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop() as string;
    if (seen.has(name)) return [];
    seen.add(name);
    return propertyNames(schemas[name] as Schema, schemas, seen);
  }
  const names: string[] = [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    names.push(name, ...propertyNames(child, schemas, seen));
  }
  for (const part of ["items", "anyOf", "oneOf", "allOf", "additionalProperties"]) {
    const value = schema[part];
    for (const child of Array.isArray(value) ? value : value && typeof value === "object" ? [value] : []) {
      names.push(...propertyNames(child as Schema, schemas, seen));
    }
  }
  return names;
}

describe("no response exposes secret material (threat model case 15)", () => {
  it("has no ciphertext, IV, wrapped key or hash in any response schema, and a full key only where one is created", async () => {
    const { body } = await callJson<{
      paths: Record<
        string,
        Record<string, { responses: Record<string, { content?: Record<string, { schema: Schema }> }> }>
      >;
      components: { schemas: Record<string, Schema> };
    }>("GET", "/api/openapi.json");
    const schemas = body.components.schemas;
    let checked = 0;
    for (const [path, operations] of Object.entries(body.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        for (const [status, response] of Object.entries(operation.responses)) {
          for (const { schema } of Object.values(response.content ?? {})) {
            const label = `${method.toUpperCase()} ${path} ${status}`;
            const refName = schema.$ref?.split("/").pop() ?? "";
            const names = propertyNames(schema, schemas);
            checked++;
            expect(
              names.filter((name) => SECRET_NAMES.test(name)),
              label,
            ).toEqual([]);
            const carriesKey = names.some((name) => ["key", "admin_key", "backup_key"].includes(name));
            if (carriesKey) expect(KEY_BEARING.has(refName) || KEY_BEARING.has(label), label).toBe(true);
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(20);
  });

  it("sends Cache-Control: no-store on every response that carries a key", async () => {
    const tenant = await createTenant();
    const created = await call("POST", "/api/v1/keys", { key: tenant.adminKey, body: { name: "k" } });
    const { id } = await created.clone().json<{ id: string }>();
    const rotated = await call("POST", `/api/v1/keys/${id}/rotate`, {
      key: tenant.adminKey,
      body: { grace_seconds: 0 },
    });
    const tenantResponse = await call("POST", "/api/v1/tenants", {
      key: env.BOOTSTRAP_TOKEN,
      body: { name: "n" },
    });
    for (const response of [created, rotated, tenantResponse]) {
      expect(response.status).toBe(201);
      expect(response.headers.get("cache-control")).toBe("no-store");
    }
  });
});

describe("canary secret (threat model case 18)", () => {
  const logged: string[] = [];
  const spies: ReturnType<typeof vi.spyOn>[] = [];
  let tenant: TestTenant;
  let canary: { id: string; key: string };
  const errorBodies: string[] = [];

  beforeAll(async () => {
    for (const level of ["log", "info", "warn", "error", "debug"] as const) {
      spies.push(
        vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
          logged.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
        }),
      );
    }
    tenant = await createTenant("canary");
    canary = await createKey(tenant, { name: "canary", scopes: ["orders:read"] });
    // Exercise success and failure paths that could each leak the key.
    await verify(tenant, canary.key);
    await verify(tenant, canary.key, { scopes: ["nope"] });
    for (const [method, path, options] of [
      ["GET", "/api/v1/keys", { headers: { authorization: `Bearer ${canary.key}` } }],
      ["GET", `/api/v1/keys?cursor=${encodeURIComponent(canary.key)}`, { key: tenant.adminKey }],
      ["POST", "/api/v1/keys", { key: tenant.adminKey, body: { name: "x", prefix: canary.key } }],
      ["POST", "/api/v1/keys/verify", { key: tenant.adminKey, body: { key: canary.key, extra: canary.key } }],
      ["POST", "/api/v1/auth/session", { body: { key: canary.key } }],
      ["GET", `/api/v1/keys/${canary.key}`, { key: tenant.adminKey }],
    ] as const) {
      const response = await call(method, path, options);
      if (response.status >= 400) errorBodies.push(await response.text());
    }
    await call("POST", `/api/v1/keys/${canary.id}/rotate`, {
      key: tenant.adminKey,
      body: { grace_seconds: 0 },
    });
    await call("POST", `/api/v1/keys/${canary.id}/revoke`, { key: tenant.adminKey });
  });

  afterAll(() => {
    for (const spy of spies) spy.mockRestore();
  });

  it("never appears in captured logs", () => {
    expect(logged.join("\n")).not.toContain(canary.key);
  });

  it("never appears in error bodies", () => {
    expect(errorBodies.length).toBeGreaterThanOrEqual(5);
    for (const body of errorBodies) expect(body).not.toContain(canary.key);
  });

  it("never appears in audit rows", async () => {
    const rows = await env.DB.prepare("SELECT * FROM audit_log WHERE tenant_id = ?").bind(tenant.id).all();
    expect(rows.results.length).toBeGreaterThan(2);
    expect(JSON.stringify(rows.results)).not.toContain(canary.key);
  });

  it("never appears in a database dump", async () => {
    expect(await dumpDatabase()).not.toContain(canary.key);
  });
});

describe("bootstrap token (threat model case 24)", () => {
  it("compares the bootstrap token in constant time and rejects near misses", async () => {
    const spy = vi.spyOn(crypto.subtle, "timingSafeEqual");
    const nearMiss = `${env.BOOTSTRAP_TOKEN.slice(0, -1)}x`;
    const response = await callJson("POST", "/api/v1/tenants", { key: nearMiss, body: { name: "nope" } });
    expect(response.status).toBe(401);
    expect(spy).toHaveBeenCalled();
    spy.mockRestore();
  });

  it("refuses every tenant creation when the configured bootstrap token is too short", async () => {
    const worker = (await import("../../src/index")).default;
    const { createExecutionContext } = await import("cloudflare:test");
    const request = new Request("https://keywarden.test/api/v1/tenants", {
      method: "POST",
      headers: { authorization: "Bearer short", "content-type": "application/json" },
      body: JSON.stringify({ name: "x" }),
    });
    const response = await worker.fetch(
      request,
      { ...env, BOOTSTRAP_TOKEN: "short" },
      createExecutionContext(),
    );
    expect(response.status).toBe(401);
  });
});
