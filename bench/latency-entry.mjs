// Entry module of the latency stage only (bench/latency.mjs; copied next to the bundle as latency-entry.mjs,
// never deployed). In front of bench-entry.mjs (bench/worker-entry.mjs: the in-isolate ratelimit stand-in and
// the raw paths, unchanged), it changes two things and observes one:
//
// - DB: the real D1 binding behind bench/d1-counter.mjs's observeD1, with BENCH_D1_LATENCY_MS (0, 20, 100)
//   injected before every call that reaches D1 (a batch is one call): the network between a Worker and D1,
//   which on this machine is a Durable Object in the same process, microseconds away.
// - Per request: whether its response waited for D1. A request's D1 calls are told apart from every other
//   request's by AsyncLocalStorage (the context follows the request's awaits, and the work it hands to
//   waitUntil). A request counts as "waited" when one of its calls *settled* before its response was returned:
//   only a call that has settled can have been awaited by the code that built the response. A call still in
//   flight when the response leaves (a feed poll or a cache fill handed to waitUntil, a usage flush) did not
//   hold the response up, whenever it started. `started` counts the looser "a call started before the
//   response", for comparison. Known blind spot: a request that awaits a call another request started (one
//   shared in-flight promise) is not counted; latency.mjs cross-checks with the requests that took longer than
//   the injected delay.
// - caches.default, in the second worker of an instance (BENCH_LOCATION "b", see bench/host.mjs): Miniflare
//   gives every worker of a process the same default cache, where two locations have two. Location b's
//   caches.default is therefore its own named cache, so the revocation test's "other location" shares D1 with
//   the first worker and nothing else.
//
// `GET /__bench/d1-waits` answers { requests, waited, started } since the last `?reset=1`, and with `?seqs=1`
// the `x-bench-seq` header values of the requests that waited (the stage sends one with each request).
// `/__bench/raw` (workerd alone, from bench-entry.mjs) is neither delayed nor counted.
import { AsyncLocalStorage } from "node:async_hooks";
import benchEntry from "./bench-entry.mjs";
import { observeD1 } from "./d1-counter.mjs";

export * from "./index.js";

const requestContext = new AsyncLocalStorage();
const counts = { requests: 0, waited: 0, started: 0, waitedSeqs: [] };

function reset() {
  counts.requests = 0;
  counts.waited = 0;
  counts.started = 0;
  counts.waitedSeqs = [];
}

const observer = {
  onStart() {
    const request = requestContext.getStore();
    if (request && !request.responded) request.started = true;
  },
  onCall() {
    const request = requestContext.getStore();
    if (request && !request.responded) request.waited = true;
  },
};

const observedEnvs = new WeakMap();

function observedEnv(env) {
  let observed = observedEnvs.get(env);
  if (!observed) {
    if (env.BENCH_LOCATION === "b") giveLocationItsOwnCache("location-b");
    const delayMs = Number(env.BENCH_D1_LATENCY_MS ?? 0);
    observed = { ...env, DB: observeD1(env.DB, { ...observer, delayMs }) };
    observedEnvs.set(env, observed);
  }
  return observed;
}

/** caches.default answered by the named cache `name` (opened per call: a Cache belongs to one request). */
function giveLocationItsOwnCache(name) {
  const storage = globalThis.caches;
  const named =
    (method) =>
    async (...args) =>
      (await storage.open(name))[method](...args);
  const own = { match: named("match"), put: named("put"), delete: named("delete") };
  Object.defineProperty(globalThis, "caches", {
    configurable: true,
    value: { default: own, open: (cacheName) => storage.open(cacheName), delete: (n) => storage.delete(n) },
  });
}

const JSON_HEADERS = { "content-type": "application/json" };

function waits(url) {
  if (url.searchParams.get("reset") === "1") reset();
  const { waitedSeqs, ...totals } = counts;
  const body = url.searchParams.get("seqs") === "1" ? { ...totals, waitedSeqs } : totals;
  return new Response(JSON.stringify(body), { headers: JSON_HEADERS });
}

export default {
  async fetch(request, env, ctx) {
    if (request.url.includes("/__bench/d1-waits")) return waits(new URL(request.url));
    // workerd alone (bench-entry.mjs answers without the app): the stage's probe of the process's own delays.
    if (request.url.endsWith("/__bench/raw")) return benchEntry.fetch(request, env, ctx);
    const state = { responded: false, waited: false, started: false };
    try {
      return await requestContext.run(state, () => benchEntry.fetch(request, observedEnv(env), ctx));
    } finally {
      state.responded = true;
      counts.requests++;
      if (state.started) counts.started++;
      if (state.waited) {
        counts.waited++;
        const seq = request.headers.get("x-bench-seq");
        if (seq !== null) counts.waitedSeqs.push(Number(seq));
      }
    }
  },
  scheduled(controller, env, ctx) {
    return benchEntry.scheduled(controller, observedEnv(env), ctx);
  },
};
