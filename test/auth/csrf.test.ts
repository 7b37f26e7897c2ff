/**
 * Wizard-session CSRF (docs/threat-model.md, "wizard session"): a cookie-authenticated
 * unsafe request must carry an Origin equal to the request's own origin. Anything else is 403
 * and changes nothing. Bearer-authenticated calls never depend on Origin.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { BASE, call, createKey, createTenant, type TestTenant } from "../helpers/api";
import { cookieHeader, sessionFromSetCookie } from "./jwt-forge";

let tenant: TestTenant;
let cookie: Record<string, string>;

async function countKeys(tenantId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT count(*) AS n FROM api_keys WHERE tenant_id = ?")
    .bind(tenantId)
    .first<{ n: number }>();
  return row?.n ?? -1;
}

async function countAudit(tenantId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE tenant_id = ?")
    .bind(tenantId)
    .first<{ n: number }>();
  return row?.n ?? -1;
}

beforeAll(async () => {
  tenant = await createTenant("CSRF tenant");
  const started = await call("POST", "/api/v1/auth/session", { body: { key: tenant.adminKey } });
  expect(started.status).toBe(201);
  const token = sessionFromSetCookie(started.headers.get("set-cookie"));
  expect(token).toBeTruthy();
  cookie = cookieHeader(token as string);
});

const ownOrigin = new URL(BASE).origin;

const refusedOrigins: [label: string, headers: Record<string, string>][] = [
  ["no Origin header", {}],
  ["no Origin but a same-origin Referer", { referer: `${ownOrigin}/wizard` }],
  ["a foreign Origin", { origin: "https://evil.example" }],
  ["Origin: null (sandboxed iframe, data: URL)", { origin: "null" }],
  ["a sibling subdomain", { origin: "https://wizard.keywarden.test" }],
  ["a suffix-extended host", { origin: `${ownOrigin}.evil.example` }],
  ["the same host over http", { origin: ownOrigin.replace("https:", "http:") }],
  ["the same host on another port", { origin: `${ownOrigin}:8443` }],
  ["the origin with a trailing slash", { origin: `${ownOrigin}/` }],
  ["an empty Origin", { origin: "" }],
];

describe("cookie-authenticated unsafe requests need a same-origin Origin", () => {
  it.each(refusedOrigins)("POST /api/v1/keys with %s is 403 and creates nothing", async (_label, headers) => {
    const keysBefore = await countKeys(tenant.id);
    const auditBefore = await countAudit(tenant.id);
    const response = await call("POST", "/api/v1/keys", {
      body: { name: "csrf attempt" },
      headers: { ...cookie, ...headers },
    });
    expect(response.status).toBe(403);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(await response.json()).toMatchObject({ code: "FORBIDDEN", status: 403 });
    expect(await countKeys(tenant.id)).toBe(keysBefore);
    expect(await countAudit(tenant.id)).toBe(auditBefore);
  });

  it("PATCH, DELETE and revoke with a foreign Origin are 403 and leave the key untouched", async () => {
    const victim = await createKey(tenant, { name: "victim" });
    const snapshot = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(victim.id).first();
    const headers = { ...cookie, origin: "https://evil.example" };
    const attempts = [
      await call("PATCH", `/api/v1/keys/${victim.id}`, { body: { enabled: false }, headers }),
      await call("DELETE", `/api/v1/keys/${victim.id}`, { headers }),
      await call("POST", `/api/v1/keys/${victim.id}/revoke`, { headers }),
      await call("POST", `/api/v1/keys/${victim.id}/rotate`, { body: { grace_seconds: 0 }, headers }),
    ];
    for (const response of attempts) expect(response.status).toBe(403);
    expect(await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(victim.id).first()).toEqual(
      snapshot,
    );
  });

  it("the origin check runs before the token is even looked at (a forged cookie from a foreign origin is 403)", async () => {
    const response = await call("POST", "/api/v1/keys", {
      body: { name: "x" },
      headers: { cookie: "__Host-kw_session=garbage", origin: "https://evil.example" },
    });
    expect(response.status).toBe(403);
  });

  it("with Origin equal to the request's own origin the same POST works", async () => {
    const keysBefore = await countKeys(tenant.id);
    const response = await call("POST", "/api/v1/keys", {
      body: { name: "same origin" },
      headers: { ...cookie, origin: ownOrigin },
    });
    expect(response.status).toBe(201);
    expect(await response.json()).toMatchObject({ name: "same origin" });
    expect(await countKeys(tenant.id)).toBe(keysBefore + 1);
    const actor = await env.DB.prepare(
      "SELECT actor_type FROM audit_log WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
    )
      .bind(tenant.id)
      .first<{ actor_type: string }>();
    expect(actor?.actor_type).toBe("session");
  });

  it("safe methods with a cookie are not origin-checked (GET works cross-origin; SameSite=Strict guards it)", async () => {
    const response = await call("GET", "/api/v1/keys", {
      headers: { ...cookie, origin: "https://evil.example" },
    });
    expect(response.status).toBe(200);
  });
});

describe("Bearer-authenticated requests are unaffected by Origin", () => {
  it.each([
    ["no Origin", {}],
    ["a foreign Origin", { origin: "https://evil.example" }],
    ["Origin: null", { origin: "null" }],
    ["the same origin", { origin: ownOrigin }],
  ] as [string, Record<string, string>][])(
    "POST /api/v1/keys with a Bearer key and %s is 201",
    async (_l, headers) => {
      const before = await countKeys(tenant.id);
      const response = await call("POST", "/api/v1/keys", {
        key: tenant.adminKey,
        body: { name: "bearer" },
        headers,
      });
      expect(response.status).toBe(201);
      expect(await countKeys(tenant.id)).toBe(before + 1);
    },
  );

  it("a Bearer key wins over a cookie, so a foreign Origin does not block it", async () => {
    const response = await call("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: { name: "bearer and cookie" },
      headers: { ...cookie, origin: "https://evil.example" },
    });
    expect(response.status).toBe(201);
  });
});
