// `npm run bench:isolate`: what the app itself spends on a verify, layer by layer, with HTTP out of the
// way. Runs inside workerd (the vitest plugin) and calls the Hono app's fetch in a loop, so the figures
// are the app's JavaScript and WebCrypto work only: no socket, no header parsing, no request.cf. Each
// row adds one layer to the row above; /healthz is the baseline. See bench/README.md.
import { env } from "cloudflare:workers";
import type { Context } from "hono";
import { expect, it } from "vitest";
import { type AppEnv, buildApp } from "../../src/app";
import { requireScope } from "../../src/auth/authenticate";
import { createKey, createTenant } from "../../test/helpers/api";

const ROUNDS = 5;
const REQUESTS_PER_ROUND = 3_000;
const INVALID = { valid: false, code: "INVALID_FORMAT" };

/** Same as bench/worker-entry.mjs: limits that never bite, answered in the isolate; no usage writes. */
const leanEnv = {
  ...env,
  TENANT_RATE_LIMITER: { limit: async () => ({ success: true }) },
  AUTH_FAILURE_LIMITER: { limit: async () => ({ success: true }) },
  USAGE_FLUSH_MS: String(60 * 60 * 1000),
} as unknown as typeof env;
const executionContext = {
  waitUntil() {},
  passThroughOnException() {},
  props: {},
} as unknown as ExecutionContext;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] ?? Number.NaN;
}

it("prints the app's own cost per verify, layer by layer, against /healthz", async () => {
  const app = buildApp();
  // Bench-only routes on this app instance: the /api middleware alone, then with caller authentication.
  const readBodyThenAnswer = async (c: Context<AppEnv>) => {
    await c.req.json();
    return c.json(INVALID);
  };
  app.post("/api/bench/json", readBodyThenAnswer);
  app.post("/api/bench/authenticated", requireScope("keys:verify", { cachedAuth: true }), readBodyThenAnswer);

  const tenant = await createTenant();
  const warm = await createKey(tenant, { name: "warm" });
  const badChecksum = `${warm.key.slice(0, -1)}${warm.key.endsWith("A") ? "B" : "A"}`;
  const post = (path: string, key: string) => {
    const body = JSON.stringify({ key });
    // content-length as a real client sends it, so Hono's body limit takes its header path.
    const headers = {
      authorization: `Bearer ${tenant.adminKey}`,
      "content-type": "application/json",
      "content-length": String(body.length),
    };
    return () => new Request(`https://keywarden.test${path}`, { method: "POST", headers, body });
  };
  // workerd alone, as bench/worker-entry.mjs answers `/__bench/raw`: the floor any route stands on.
  const raw = {
    async fetch(request: Request) {
      if (request.method === "POST") {
        await request.json();
        return new Response(JSON.stringify(INVALID), { headers: { "content-type": "application/json" } });
      }
      return new Response('{"status":"ok"}', { headers: { "content-type": "application/json" } });
    },
  };
  type Target = {
    fetch(request: Request, env: typeof leanEnv, ctx: ExecutionContext): Response | Promise<Response>;
  };
  const layers: [string, () => Request, (body: Record<string, unknown>) => void, Target?][] = [
    [
      "workerd alone: GET, no app",
      () => new Request("https://keywarden.test/__bench/raw"),
      (b) => expect(b).toEqual({ status: "ok" }),
      raw,
    ],
    [
      "workerd alone: POST reading JSON, no app",
      post("/__bench/raw", badChecksum),
      (b) => expect(b).toEqual(INVALID),
      raw,
    ],
    [
      "/healthz (baseline)",
      () => new Request("https://keywarden.test/healthz"),
      (b) => expect(b).toEqual({ status: "ok" }),
    ],
    [
      "+ POST body through the /api middleware",
      post("/api/bench/json", badChecksum),
      (b) => expect(b).toEqual(INVALID),
    ],
    [
      "+ caller authentication (key, cache, budget)",
      post("/api/bench/authenticated", badChecksum),
      (b) => expect(b).toEqual(INVALID),
    ],
    [
      "= verify, bad checksum (+ zod, route)",
      post("/api/v1/keys/verify", badChecksum),
      (b) => expect(b).toEqual(INVALID),
    ],
    [
      "= verify, valid key, warm cache",
      post("/api/v1/keys/verify", warm.key),
      (b) => expect(b).toMatchObject({ valid: true, key_id: warm.id }),
    ],
  ];

  const microseconds = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, request, check, target = app] of layers) {
      check(await (await target.fetch(request(), leanEnv, executionContext)).json());
      // Building the Request is this harness's work (workerd does it natively for real traffic): timed
      // on its own and taken out.
      const building = performance.now();
      for (let i = 0; i < REQUESTS_PER_ROUND; i++) request();
      const built = performance.now();
      for (let i = 0; i < REQUESTS_PER_ROUND; i++) {
        await (await target.fetch(request(), leanEnv, executionContext)).arrayBuffer();
      }
      const served = performance.now();
      const perRequest = ((served - built - (built - building)) * 1000) / REQUESTS_PER_ROUND;
      microseconds.set(label, [...(microseconds.get(label) ?? []), perRequest]);
    }
  }

  const baseline = median(microseconds.get("/healthz (baseline)") ?? []);
  let previous = baseline;
  const rows = layers.map(([label]) => {
    const us = median(microseconds.get(label) ?? []);
    const row = `${label.padEnd(46)} ${us.toFixed(1).padStart(7)} us  ${(us - previous).toFixed(1).padStart(6)} us  ${(baseline / us).toFixed(2)}x`;
    previous = us;
    return row;
  });
  console.log(
    [
      `App cost per request inside workerd (median of ${ROUNDS} rounds of ${REQUESTS_PER_ROUND})`,
      `${"layer".padEnd(46)} ${"per req".padStart(10)}  ${"added".padStart(9)}  vs baseline`,
      ...rows,
    ].join("\n"),
  );
  for (const [, values] of microseconds) expect(median(values)).toBeGreaterThan(0);
}, 300_000);
