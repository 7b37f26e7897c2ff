import { describe, expect, it } from "vitest";
import { SEED_WIZARD_PATH } from "../../src/routes/seed-pages";
import { call, createKey, createTenant } from "../helpers/api";

/** Every header but the ones that differ per answer (the page is a static asset: it has its own validators). */
function securityHeaders(response: Response): Record<string, string> {
  const skip = new Set([
    "x-request-id",
    "content-type",
    "content-length",
    "cache-control",
    "retry-after",
    "etag",
    "cf-cache-status",
  ]);
  return Object.fromEntries([...response.headers].filter(([name]) => !skip.has(name)));
}

describe("response headers", () => {
  it("gives the hot routes' prepared answers exactly the headers every other answer gets", async () => {
    const tenant = await createTenant();
    const key = await createKey(tenant, { name: "headers" });
    const health = await call("GET", "/healthz");
    const verified = await call("POST", "/api/v1/keys/verify", {
      key: tenant.adminKey,
      body: { key: key.key },
    });
    const listed = await call("GET", "/api/v1/keys", { key: tenant.adminKey });
    const problem = await call("GET", "/api/v1/no-such-route");
    const page = await call("GET", SEED_WIZARD_PATH);
    for (const response of [health, verified, listed, problem]) await response.arrayBuffer();

    const expected = securityHeaders(listed);
    expect(Object.keys(expected)).toEqual(
      expect.arrayContaining(["content-security-policy", "strict-transport-security", "x-frame-options"]),
    );
    for (const response of [health, verified, problem, page])
      expect(securityHeaders(response)).toEqual(expected);
    await page.arrayBuffer();
  });

  it("marks every API answer no-store, prepared or not, and leaves /healthz cacheable", async () => {
    const tenant = await createTenant();
    const verified = await call("POST", "/api/v1/keys/verify", { key: tenant.adminKey, body: { key: "x" } });
    const listed = await call("GET", "/api/v1/keys", { key: tenant.adminKey });
    const refused = await call("GET", "/api/v1/keys");
    const health = await call("GET", "/healthz");
    for (const response of [verified, listed, refused])
      expect(response.headers.get("cache-control")).toBe("no-store");
    expect(health.headers.get("cache-control")).toBeNull();
    for (const response of [verified, listed, refused, health]) await response.arrayBuffer();
  });

  it("keeps a caller's plain request id and replaces one that is long or not plain", async () => {
    const plain = await call("GET", "/healthz", { headers: { "x-request-id": "trace-123_abc=" } });
    const long = await call("GET", "/healthz", { headers: { "x-request-id": "a".repeat(65) } });
    const odd = await call("GET", "/healthz", { headers: { "x-request-id": "a b" } });
    expect(plain.headers.get("x-request-id")).toBe("trace-123_abc=");
    expect(long.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(odd.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    for (const response of [plain, long, odd]) await response.arrayBuffer();
  });
});
