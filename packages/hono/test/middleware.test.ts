import { exports } from "cloudflare:workers";
import { Hono } from "hono";
import { beforeAll, describe, expect, it } from "vitest";
import {
  BASE,
  call,
  createKey,
  createTenant,
  freshClientIp,
  type TestTenant,
} from "../../../test/helpers/api";
import { inOneWindow } from "../../../test/setup/limiter-window";
import { type KeywardenAuthOptions, type KeywardenVariables, keywardenAuth, protectFetch } from "../src";

/** The running Keywarden worker, reached the way a service's fetch would reach it. */
const keywarden = (request: Request) => {
  const sent = new Request(request);
  sent.headers.set("cf-connecting-ip", freshClientIp());
  return exports.default.fetch(sent);
};
const unreachable = async (): Promise<Response> => {
  throw new TypeError("connect ECONNREFUSED");
};
const DAY_MS = 86_400_000;

/** A tenant's own service: one protected route that answers with what the middleware put on the context. */
function serviceApp(options: KeywardenAuthOptions) {
  let handled = 0;
  const app = new Hono<{ Variables: KeywardenVariables }>();
  app.use("/orders/*", keywardenAuth(options));
  app.get("/orders/list", (c) => {
    handled += 1;
    return c.json({ key_id: c.var.keywarden.key_id, scopes: c.var.keywarden.scopes });
  });
  const request = (key?: string, headers: Record<string, string> = {}) =>
    app.request("/orders/list", {
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    });
  return { request, handled: () => handled };
}

async function problemOf(response: Response) {
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  return (await response.json()) as { status: number; code: string; title: string; detail: string };
}

describe("@keywarden/hono: keywardenAuth against the running Keywarden", () => {
  let tenant: TestTenant;
  let rootKey: string;
  let options: KeywardenAuthOptions;
  beforeAll(async () => {
    tenant = await createTenant("hono middleware");
    rootKey = (await createKey(tenant, { name: "orders service root key", scopes: ["keys:verify"] })).key;
    options = { baseUrl: BASE, rootKey, fetch: keywarden, scopes: ["orders:read"] };
  });

  it("lets a key with the scope through, with its verdict on c.var.keywarden and the RateLimit fields", async () => {
    const { id, key } = await createKey(tenant, {
      scopes: ["orders:read"],
      ratelimit: { limit: 100, window_ms: DAY_MS },
    });
    const service = serviceApp(options);
    const response = await service.request(key);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ key_id: id, scopes: ["orders:read"] });
    expect(response.headers.get("ratelimit-policy")).toBe('"keywarden";q=100');
    const window = /^"keywarden";r=(\d+);t=(\d+)$/.exec(response.headers.get("ratelimit") ?? "");
    expect(Number(window?.[1])).toBe(99);
    expect(Number(window?.[2])).toBeGreaterThanOrEqual(0);
    expect(Number(window?.[2])).toBeLessThanOrEqual(DAY_MS / 1000);
    expect(response.headers.get("retry-after")).toBeNull();
  });

  it("answers 401 without a key, and 401 invalid_token for a malformed, unknown or revoked key", async () => {
    const service = serviceApp(options);
    const missing = await service.request();
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toBe("Bearer");
    expect(await problemOf(missing)).toMatchObject({ status: 401, code: "UNAUTHENTICATED" });

    const malformed = await service.request("not-a-keywarden-key");
    expect(malformed.status).toBe(401);
    expect(malformed.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"');
    expect((await problemOf(malformed)).code).toBe("INVALID_FORMAT");

    const other = await createTenant("hono middleware, other tenant");
    const foreign = await createKey(other, { scopes: ["orders:read"] });
    expect((await problemOf(await service.request(foreign.key))).code).toBe("NOT_FOUND");

    const revoked = await createKey(tenant, { scopes: ["orders:read"] });
    await call("POST", `/api/v1/keys/${revoked.id}/revoke`, { key: tenant.adminKey });
    const refused = await service.request(revoked.key);
    expect(refused.status).toBe(401);
    expect((await problemOf(refused)).code).toBe("DISABLED");
    expect(service.handled()).toBe(0);
  });

  it("answers 403 insufficient_scope for a key without the route's scope, and 403 for a key fenced to other addresses", async () => {
    const service = serviceApp(options);
    const unscoped = await createKey(tenant, { scopes: ["invoices:read"] });
    const response = await service.request(unscoped.key);
    expect(response.status).toBe(403);
    expect(response.headers.get("www-authenticate")).toBe(
      'Bearer error="insufficient_scope", scope="orders:read"',
    );
    expect(await problemOf(response)).toMatchObject({ status: 403, code: "INSUFFICIENT_SCOPES" });

    const fenced = await createKey(tenant, { scopes: ["orders:read"], ip_allowlist: ["203.0.113.0/24"] });
    const forbidden = await service.request(fenced.key);
    expect(forbidden.status).toBe(403);
    expect((await problemOf(forbidden)).code).toBe("FORBIDDEN");
    expect(service.handled()).toBe(0);
  });

  it("answers 429 with Retry-After and the RateLimit fields once the key's rate limit is spent", async () => {
    const service = serviceApp(options);
    const statuses = await inOneWindow(DAY_MS / 1000, async () => {
      const { key } = await createKey(tenant, {
        scopes: ["orders:read"],
        ratelimit: { limit: 2, window_ms: DAY_MS },
      });
      return [await service.request(key), await service.request(key), await service.request(key)];
    });
    expect(statuses.map((r) => r.status)).toEqual([200, 200, 429]);
    const limited = statuses[2] as Response;
    const window = /^"keywarden";r=0;t=(\d+)$/.exec(limited.headers.get("ratelimit") ?? "");
    expect(window).not.toBeNull();
    expect(limited.headers.get("ratelimit-policy")).toBe('"keywarden";q=2');
    expect(Number(limited.headers.get("retry-after"))).toBe(Math.max(1, Number(window?.[1])));
    expect(await problemOf(limited)).toMatchObject({ status: 429, code: "RATE_LIMITED" });
    expect(service.handled()).toBe(2);
  });

  it("answers 429 USAGE_EXCEEDED once the key's allowed requests are used up", async () => {
    const service = serviceApp(options);
    const { key } = await createKey(tenant, { scopes: ["orders:read"], usage_limit: { remaining: 1 } });
    expect((await service.request(key)).status).toBe(200);
    const spent = await service.request(key);
    expect(spent.status).toBe(429);
    expect((await problemOf(spent)).code).toBe("USAGE_EXCEEDED");
  });

  it("fails closed with 503 when Keywarden is unreachable or refuses the root key, never running the route", async () => {
    const { key } = await createKey(tenant, { scopes: ["orders:read"] });
    const down = serviceApp({ ...options, fetch: unreachable });
    const response = await down.request(key);
    expect(response.status).toBe(503);
    expect(await problemOf(response)).toMatchObject({ status: 503, code: "KEYWARDEN_UNAVAILABLE" });

    const readOnly = await createKey(tenant, { role: "read_only" });
    const misconfigured = serviceApp({ ...options, rootKey: readOnly.key });
    expect((await misconfigured.request(key)).status).toBe(503);
    expect(down.handled() + misconfigured.handled()).toBe(0);
  });

  it("fails closed with 503 on a 200 answer that is not a verdict (no code, an unknown code), never running the route", async () => {
    const { key } = await createKey(tenant, { scopes: ["orders:read"] });
    for (const body of [{}, { ok: true }, { valid: false, code: "KEY_QUARANTINED" }, { valid: true }]) {
      const service = serviceApp({ ...options, fetch: async () => Response.json(body) });
      const response = await service.request(key);
      expect(response.status).toBe(503);
      expect(await problemOf(response)).toMatchObject({ status: 503, code: "KEYWARDEN_UNAVAILABLE" });
      expect(service.handled()).toBe(0);
    }
  });

  it("reads the key where getKey says, takes its options from the context, and lets onError shape refusals", async () => {
    const { id, key } = await createKey(tenant, { scopes: ["orders:read"] });
    type ServiceEnv = { Bindings: { KEYWARDEN_ROOT_KEY: string } };
    const app = new Hono<ServiceEnv & { Variables: KeywardenVariables }>();
    app.use(
      "*",
      keywardenAuth<ServiceEnv>((c) => ({
        baseUrl: BASE,
        rootKey: c.env.KEYWARDEN_ROOT_KEY,
        fetch: keywarden,
        getKey: (request) => request.headers.get("x-api-key"),
        onError: (denial) => new Response(`refused: ${denial.code}`, { status: denial.status }),
      })),
    );
    app.get("/", (c) => c.text(c.var.keywarden.key_id ?? ""));
    const env = { KEYWARDEN_ROOT_KEY: rootKey };
    const ok = await app.request("/", { headers: { "x-api-key": key } }, env);
    expect(await ok.text()).toBe(id);
    const refused = await app.request("/", { headers: { authorization: `Bearer ${key}` } }, env);
    expect(refused.status).toBe(401);
    expect(await refused.text()).toBe("refused: UNAUTHENTICATED");
  });
});

describe("@keywarden/hono: protectFetch for a plain Workers fetch handler", () => {
  let tenant: TestTenant;
  let rootKey: string;
  beforeAll(async () => {
    tenant = await createTenant("protectFetch");
    rootKey = (await createKey(tenant, { scopes: ["keys:verify"] })).key;
  });

  const ctx = {
    waitUntil: () => {},
    passThroughOnException: () => {},
    props: {},
  } as unknown as ExecutionContext;
  const handler = protectFetch<{ KEYWARDEN_ROOT_KEY: string }>(
    (_request, _env, _ctx, verdict) => Response.json({ key_id: verdict.key_id }),
    (env) => ({ baseUrl: BASE, rootKey: env.KEYWARDEN_ROOT_KEY, fetch: keywarden, scopes: ["orders:read"] }),
  );
  const send = (key?: string) =>
    handler(
      new Request("https://orders.example/list", { headers: key ? { authorization: `bearer ${key}` } : {} }),
      { KEYWARDEN_ROOT_KEY: rootKey },
      ctx,
    );

  it("runs the handler with the verdict for a good key and adds the RateLimit fields", async () => {
    const { id, key } = await createKey(tenant, {
      scopes: ["orders:read"],
      ratelimit: { limit: 10, window_ms: DAY_MS },
    });
    const response = await send(key);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ key_id: id });
    expect(response.headers.get("ratelimit-policy")).toBe('"keywarden";q=10');
    expect(response.headers.get("ratelimit")).toMatch(/^"keywarden";r=9;t=\d+$/);
  });

  it("gives the same refusals as the middleware: 401 without a key, 403 without the scope", async () => {
    expect((await send()).status).toBe(401);
    const unscoped = await createKey(tenant, { scopes: ["invoices:read"] });
    const response = await send(unscoped.key);
    expect(response.status).toBe(403);
    expect(await problemOf(response)).toMatchObject({ code: "INSUFFICIENT_SCOPES" });
  });
});
