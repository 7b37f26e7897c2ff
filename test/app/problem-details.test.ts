import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { ERROR_STATUS } from "../../src/errors";
import { call, callJson, createTenant } from "../helpers/api";

describe("errors are RFC 9457 problem+json", () => {
  it("renders an unknown route as 404 problem+json with a stable code and the request id", async () => {
    const response = await call("GET", "/api/v1/nope");
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    const body = await response.json<Record<string, unknown>>();
    expect(body).toMatchObject({ status: 404, code: "NOT_FOUND", title: "Not found" });
    expect(body.type).toMatch(/^https:\/\/keywarden\.dev\/problems\/not-found$/);
    expect(body.request_id).toBe(response.headers.get("x-request-id"));
  });

  it("lists validation failures by path without echoing the submitted values", async () => {
    const tenant = await createTenant();
    const secretish = "sk_live_should_never_come_back_123456";
    const response = await callJson<{ code: string; errors: { path: string }[] }>("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: { name: secretish, prefix: secretish, ip_allowlist: [secretish] },
    });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe("VALIDATION_FAILED");
    expect(response.body.errors.map((e) => e.path)).toEqual(
      expect.arrayContaining(["prefix", "ip_allowlist.0"]),
    );
    expect(JSON.stringify(response.body)).not.toContain(secretish);
  });

  it("answers invalid JSON with 400 BAD_REQUEST", async () => {
    const tenant = await createTenant();
    const response = await callJson("POST", "/api/v1/keys", { key: tenant.adminKey, body: "{not json" });
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ code: "BAD_REQUEST" });
  });

  it("refuses text with a lone surrogate instead of storing it altered", async () => {
    const tenant = await createTenant();
    const response = await callJson<{ code: string; errors: { path: string }[] }>("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: '{"name":"bad \\ud800 name"}',
    });
    expect(response.status).toBe(422);
    expect(response.body.errors[0]?.path).toBe("name");
  });

  it("answers a non-JSON content type with 415", async () => {
    const tenant = await createTenant();
    const response = await callJson("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: "name=x",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(response.status).toBe(415);
    expect(response.body).toMatchObject({ code: "UNSUPPORTED_MEDIA_TYPE" });
  });

  it("answers a body over 64 KiB with 413", async () => {
    const tenant = await createTenant();
    const response = await callJson("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: { name: "x".repeat(70_000) },
    });
    expect(response.status).toBe(413);
    expect(response.body).toMatchObject({ code: "PAYLOAD_TOO_LARGE" });
  });

  it("turns an unexpected failure into a generic 500 that leaks nothing", async () => {
    const tenant = await createTenant();
    const spy = vi.spyOn(env.DB, "prepare").mockImplementation(() => {
      throw new Error("SQLITE_CORRUPT: secret table layout kw_live_leak");
    });
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      const response = await callJson("GET", "/api/v1/audit", { key: tenant.adminKey });
      expect(response.status).toBe(500);
      expect(response.body).toMatchObject({ code: "INTERNAL", status: 500 });
      expect(JSON.stringify(response.body)).not.toMatch(/SQLITE|kw_live_leak/);
    } finally {
      spy.mockRestore();
      errors.mockRestore();
    }
  });

  it("maps every error code to a 4xx or 5xx status", () => {
    for (const status of Object.values(ERROR_STATUS)) expect(status).toBeGreaterThanOrEqual(400);
  });
});

describe("edge basics", () => {
  it("answers /healthz without touching storage", async () => {
    const spy = vi.spyOn(env.DB, "prepare");
    const response = await callJson("GET", "/healthz");
    expect(response.body).toEqual({ status: "ok" });
    expect(spy).not.toHaveBeenCalled();
    spy.mockRestore();
  });

  it("sends secure headers and a request id on every response", async () => {
    const response = await call("GET", "/healthz");
    expect(response.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    expect(response.headers.get("strict-transport-security")).toContain("max-age=");
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("serves the OpenAPI 3.1 document with every key route", async () => {
    const { body } = await callJson<{ openapi: string; paths: Record<string, unknown> }>(
      "GET",
      "/api/openapi.json",
    );
    expect(body.openapi).toBe("3.1.0");
    expect(Object.keys(body.paths)).toEqual(
      expect.arrayContaining([
        "/api/v1/tenants",
        "/api/v1/keys",
        "/api/v1/keys/{id}",
        "/api/v1/keys/{id}/rotate",
        "/api/v1/keys/{id}/revoke",
        "/api/v1/keys/verify",
        "/api/v1/auth/session",
        "/api/v1/audit/verify",
        "/healthz",
      ]),
    );
  });

  it("documents 401, 403 and 429 on every operation that takes a key or a session", async () => {
    type Operation = { security?: Record<string, string[]>[]; responses: Record<string, unknown> };
    const { body } = await callJson<{ paths: Record<string, Record<string, Operation>> }>(
      "GET",
      "/api/openapi.json",
    );
    const authenticated = Object.entries(body.paths).flatMap(([path, operations]) =>
      Object.entries(operations)
        .filter(([, operation]) => operation.security?.some((scheme) => "bearerKey" in scheme))
        .map(([method, operation]) => ({ route: `${method.toUpperCase()} ${path}`, operation })),
    );
    expect(authenticated.length).toBeGreaterThan(30);
    const undocumented = authenticated
      .filter(({ operation }) => !["401", "403", "429"].every((status) => status in operation.responses))
      .map(({ route }) => route);
    expect(undocumented).toEqual([]);
  });
});
