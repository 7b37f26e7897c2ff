// Entry module the harness loads in front of the built worker (copied next to the bundle as
// bench-entry.mjs). The only thing it changes is the two ratelimit bindings, and only when
// BENCH_LEAN_RATELIMIT is "1":
//
// Miniflare simulates a ratelimit binding as a SQLite-backed Durable Object reached through two fetch
// hops, with a row write per call. On this machine that simulator costs several times more than the
// whole verify handler, so it would make the harness the bottleneck. Production's binding keeps its
// counters in memory on the same machine. This stand-in does the same: a fixed-window counter in the
// isolate, with the (huge) limit the harness was configured with. The app's code path is unchanged:
// it still awaits `limit()` and checks `success` on every authenticated request.
//
// It also answers two paths itself, without the app, to measure what workerd alone costs per
// request: `GET /__bench/raw` (a fixed JSON answer, like /healthz) and `POST /__bench/raw` (reads a
// JSON body first, like verify). Their difference is the least a body-carrying verify can cost more
// than /healthz, whatever the app does. `/__bench/raw-headers` answers the same with every header the
// app's own answers carry (copied from one /healthz answer of the app, so the list is never restated
// here): what workerd spends on sending them is part of the floor too. `POST /__bench/raw-digests/1` and
// `/2` add the SHA-256 digests an authenticated verify cannot avoid (the caller's key; and the verified
// key). `GET /__bench/raw-headers-id` adds a fresh request id to each answer, as the app does. `GET /__bench/hono` is a one-route Hono app with the app's edge middleware and /healthz's prepared
// answer (bench/hono-floor.ts), to compare the full app's dispatch with. These exist only in
// the bench, which is never deployed.
import { HONO_FLOOR_PATH, honoFloor } from "./hono-floor.mjs";
import worker from "./index.js";

export * from "./index.js";

class InIsolateRatelimit {
  constructor(limit, periodSeconds) {
    this.limit_ = limit;
    this.periodMs = periodSeconds * 1000;
    this.window = -1;
    this.counts = new Map();
  }

  async limit({ key = "" } = {}) {
    const window = Math.floor(Date.now() / this.periodMs);
    if (window !== this.window) {
      this.window = window;
      this.counts.clear();
    }
    const count = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, count);
    return { success: count <= this.limit_ };
  }
}

const leanEnvs = new WeakMap();

function leanEnv(env) {
  let lean = leanEnvs.get(env);
  if (!lean) {
    const limit = Number(env.BENCH_RATELIMIT_LIMIT);
    lean = {
      ...env,
      TENANT_RATE_LIMITER: new InIsolateRatelimit(limit, 60),
      AUTH_FAILURE_LIMITER: new InIsolateRatelimit(limit, 60),
    };
    leanEnvs.set(env, lean);
  }
  return lean;
}

const RAW_PATH = "/__bench/raw";
const RAW_HEADERS_PATH = "/__bench/raw-headers";
const RAW_HEADERS_ID_PATH = "/__bench/raw-headers-id";
const JSON_HEADERS = { "content-type": "application/json" };
let appHeaders;

/** The headers of the app's own /healthz answer, with the API's no-store, built once. */
async function appAnswerHeaders(env, ctx) {
  if (!appHeaders) {
    const answer = await worker.fetch(new Request("http://bench.invalid/healthz"), env, ctx);
    appHeaders = new Headers(answer.headers);
    appHeaders.delete("x-request-id");
    appHeaders.set("cache-control", "no-store");
  }
  return appHeaders;
}

const RAW_DIGESTS_PATH = "/__bench/raw-digests";
const encoder = new TextEncoder();

/**
 * `digests` SHA-256 digests of the bearer key (0, 1 or 2): a bad-checksum verify must hash the caller's
 * key to authenticate it, a warm one also the key it verifies; no app can skip them.
 */
async function rawAnswer(request, headers, digests = 0) {
  if (request.method === "GET") return new Response('{"status":"ok"}', { headers });
  const body = await request.json();
  const bearer = encoder.encode(request.headers.get("authorization") ?? "");
  if (digests > 0) await crypto.subtle.digest("SHA-256", bearer);
  if (digests > 1) await crypto.subtle.digest("SHA-256", encoder.encode(body.key ?? ""));
  return new Response('{"valid":false,"code":"INVALID_FORMAT"}', { headers });
}

export default {
  fetch(request, env, ctx) {
    if (request.url.endsWith(RAW_PATH)) return rawAnswer(request, JSON_HEADERS);
    if (request.url.endsWith(RAW_HEADERS_ID_PATH)) {
      return appAnswerHeaders(env, ctx).then((headers) =>
        rawAnswer(request, headers).then((response) => {
          // A fresh request id on every answer, set as the app sets it (src/http/security-headers.ts).
          response.headers.set("x-request-id", crypto.randomUUID());
          return response;
        }),
      );
    }
    if (request.url.endsWith(HONO_FLOOR_PATH)) return honoFloor.fetch(request, env, ctx);
    if (request.url.endsWith(RAW_HEADERS_PATH)) {
      return appHeaders
        ? rawAnswer(request, appHeaders)
        : appAnswerHeaders(env, ctx).then((headers) => rawAnswer(request, headers));
    }
    const digestsAt = request.url.indexOf(RAW_DIGESTS_PATH);
    if (digestsAt >= 0) {
      const digests = Number(request.url.slice(digestsAt + RAW_DIGESTS_PATH.length + 1));
      return appAnswerHeaders(env, ctx).then((headers) => rawAnswer(request, headers, digests));
    }
    return worker.fetch(request, env.BENCH_LEAN_RATELIMIT === "1" ? leanEnv(env) : env, ctx);
  },
  scheduled(controller, env, ctx) {
    return worker.scheduled(controller, env, ctx);
  },
};
