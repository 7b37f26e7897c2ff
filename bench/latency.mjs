// The latency stage (issue 13, part 2): verify with a fixed latency injected into every D1 call, under a
// realistic mix, and revocation propagation between two locations. `BENCH_ONLY=latency npm run bench`, or after
// stage 2 of the full bench. See bench/README.md, "Latency with D1 far away".
//
// One instance of the build with 1,000,000 keys stored and two workers on the same D1 (bench/host.mjs
// `secondWorker`), both behind bench/latency-entry.mjs (the injected delay, and per request whether the response
// waited for D1). For each injected delay (100, 20, 0 ms, in that order):
//
// 1. workerd restarts with the delay (fresh isolates: empty isolate caches; D1 and the Cache API persist on
//    disk, as a location's cache outlives its isolates);
// 2. warm-up: WARMUP_REQUESTS requests of the mix, closed loop;
// 3. measured: MEASURED_SECONDS at RATE req/s, paced (bench/paced-load.mjs), every answer checked;
// 4. revocation propagation (at 100 and 0 ms): keys verified in a loop on the second worker, revoked on the first.
//
// The mix, drawn from one seeded stream for the whole stage: 93% stored keys by Zipf(s = 1) rank over the
// seeded keys, 5% well-formed keys never stored, by Zipf(s = 1) rank over their own pool, 2% a stored key (by
// the same Zipf) with its checksum broken.
import { join } from "node:path";
import { startInstance } from "./instance.mjs";
import { forkWorker } from "./ipc.mjs";
import { breakChecksum, generateKey } from "./keys.mjs";
import { percentile, table } from "./report.mjs";
import { cpuSeconds, log, machineBusySeconds, pinToCpu, sleep, stopChild } from "./system.mjs";
import { scatter, seededRandom, zipf } from "./zipf.mjs";

export const LATENCY_SETTINGS = {
  /** Keys stored (the tenant's admin key, the warm key and the probe among them); BENCH_LATENCY_KEYS. */
  keys: Number(process.env.BENCH_LATENCY_KEYS ?? 1_000_000),
  /** Well-formed keys never stored, the unknown class's own pool. */
  unknownPool: 50_000,
  share: { valid: 0.93, unknown: 0.05, malformed: 0.02 },
  /** Injected D1 latencies, in the order they run (the headline first: the fewest requests before it). */
  delaysMs: [100, 20, 0],
  /** Paced rate of the measured runs (req/s) and how long they last. */
  rate: Number(process.env.BENCH_LATENCY_RATE ?? 100),
  measuredSeconds: Number(process.env.BENCH_LATENCY_SECONDS ?? 30),
  warmupRequests: Number(process.env.BENCH_LATENCY_WARMUP ?? 8_000),
  /** workerd alone (POST /__bench/raw, no app) alongside each measured run: req/s, over its own connections. */
  probeRate: 20,
  /** Keep-alive connections of the paced runs (at most this many requests in flight) and of the warm-ups. */
  connections: 64,
  seed: 13,
  revocation: {
    delaysMs: [100, 0],
    keys: 5,
    /** Second worker's verify loop: one request every this many ms (the next leaves when the last answered). */
    everyMs: 20,
    /** Verifying before the revoke: at least this long, plus a random 0..phaseMs, so revokes land anywhere in
     * the second worker's feed poll cycle (about 5 s). */
    warmMs: 1_500,
    phaseMs: 6_000,
    timeoutMs: 60_000,
  },
};

const VERIFY_PATH = "/api/v1/keys/verify";
const VALID = (id) => ({ status: 200, prefix: `{"valid":true,"code":"VALID","key_id":"${id}"` });
const NOT_FOUND = { status: 200, body: '{"valid":false,"code":"NOT_FOUND"}' };
const INVALID_FORMAT = { status: 200, body: '{"valid":false,"code":"INVALID_FORMAT"}' };
const CLASSES = ["valid", "unknown", "malformed"];

/**
 * The request stream: each call to next() draws one request of the mix. `seen` holds every key sent so far in
 * the stage, so each request knows whether it is the first sight of its key (at this location: the Cache API
 * keeps what any earlier request of the stage put there).
 */
function requestStream(instance, seed) {
  const { share, unknownPool } = LATENCY_SETTINGS;
  const random = seededRandom(seed);
  const stored = instance.seeded;
  const validRank = zipf({ n: stored.length, seed: seed + 1 });
  const place = scatter(stored.length, seed + 2);
  const unknownRank = zipf({ n: unknownPool, seed: seed + 3 });
  const unknownKeys = Array.from({ length: unknownPool }, () => generateKey(instance.prefix));
  /** Every key sent so far in the stage, with the seq of its last request. */
  const seen = new Map();
  let seq = 0;
  return {
    next() {
      const u = random();
      let cls;
      let key;
      let expect;
      if (u < share.valid) {
        const stored1 = stored[place(validRank.next())];
        cls = "valid";
        key = stored1.key;
        expect = VALID(stored1.row.id);
      } else if (u < share.valid + share.unknown) {
        cls = "unknown";
        key = unknownKeys[unknownRank.next()];
        expect = NOT_FOUND;
      } else {
        cls = "malformed";
        key = breakChecksum(stored[place(validRank.next())].key);
        expect = INVALID_FORMAT;
      }
      seq++;
      const previousSeq = seen.get(key);
      seen.set(key, seq);
      return {
        cls,
        firstSight: previousSeq === undefined,
        /** Requests sent since this key's last one (a hint of how far it may have fallen out of an LRU). */
        gap: previousSeq === undefined ? null : seq - previousSeq,
        seq,
        body: JSON.stringify({ key }),
        headers: { "x-bench-seq": String(seq) },
        expect,
      };
    },
    take(count) {
      return Array.from({ length: count }, () => this.next());
    },
  };
}

/** Waits until workerd has been idle for 200 ms (background work of earlier traffic done), at most 20 s. */
async function idle(pid) {
  for (let i = 0; i < 100; i++) {
    const before = cpuSeconds(pid);
    await sleep(200);
    if (cpuSeconds(pid) - before <= 0.01) return;
  }
}

const getJson = async (url) => (await fetch(url)).json();

/** Percentiles, D1 wait share and first-sight share of a subset of the measured requests. */
function describeSubset(requests, latencies, waited, pick) {
  const picked = [];
  let waits = 0;
  let first = 0;
  requests.forEach((request, i) => {
    if (!pick(request)) return;
    picked.push(latencies[i]);
    if (waited.has(request.seq)) waits++;
    if (request.firstSight) first++;
  });
  const sorted = Float64Array.from(picked).sort();
  return {
    requests: picked.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    waitShare: picked.length ? waits / picked.length : Number.NaN,
    firstSightShare: picked.length ? first / picked.length : Number.NaN,
  };
}

async function measureDelay(instance, load, stream, delayMs, pin) {
  const s = LATENCY_SETTINGS;
  log(`latency: restarting workerd with ${delayMs} ms injected into every D1 call`);
  await instance.restart({ vars: { BENCH_D1_LATENCY_MS: String(delayMs) } });
  pin();
  await idle(instance.workerdPid);
  const spec = {
    url: instance.url,
    path: VERIFY_PATH,
    headers: { authorization: `Bearer ${instance.adminKey}`, "content-type": "application/json" },
    connections: s.connections,
  };
  const warmup = stream.take(s.warmupRequests);
  log(`latency ${delayMs} ms: warm-up, ${warmup.length} requests of the mix, closed loop`);
  const warmed = await load.call({ spec: { ...spec, requests: warmup, rate: null } });
  await sleep(1_200); // the usage recorder's flush (1 s after the last request)
  await idle(instance.workerdPid);
  await getJson(new URL("/__bench/d1-waits?reset=1", instance.url));
  const requests = stream.take(Math.round(s.rate * s.measuredSeconds));
  log(`latency ${delayMs} ms: measured, ${requests.length} requests at ${s.rate} req/s`);
  const before = { workerd: cpuSeconds(instance.workerdPid), machine: machineBusySeconds() };
  const probe = {
    path: "/__bench/raw",
    rate: s.probeRate,
    requests: Array.from({ length: s.measuredSeconds * s.probeRate }, () => ({
      body: requests[0].body,
      headers: {},
      expect: INVALID_FORMAT,
    })),
  };
  const result = await load.call({ spec: { ...spec, requests, rate: s.rate, probe } });
  const workerdSeconds = cpuSeconds(instance.workerdPid) - before.workerd;
  const machineSeconds = machineBusySeconds() - before.machine;
  const waits = await getJson(new URL("/__bench/d1-waits?seqs=1", instance.url));
  const waited = new Set(waits.waitedSeqs);
  const subset = (pick) => describeSubset(requests, result.latencies, waited, pick);
  const figure = {
    delayMs,
    all: subset(() => true),
    byClass: Object.fromEntries(CLASSES.map((cls) => [cls, subset((r) => r.cls === cls)])),
    seenBefore: subset((r) => !r.firstSight),
    seenBeforeByClass: Object.fromEntries(
      CLASSES.map((cls) => [cls, subset((r) => !r.firstSight && r.cls === cls)]),
    ),
    firstSight: subset((r) => r.firstSight),
    /** workerd answering without the app, in the same seconds: the delays the process itself adds (its one
     * thread also runs the D1 and Cache API simulators and the usage flush). */
    raw: (() => {
      const sorted = Float64Array.from(result.probe.latencies).sort();
      return { requests: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
    })(),
    /** The seen-before requests that waited for D1 anyway, with how many requests back their key was last sent. */
    seenBeforeWaits: requests
      .filter((r) => !r.firstSight && waited.has(r.seq))
      .map((r) => ({ cls: r.cls, gap: r.gap, latency: result.latencies[r.seq - requests[0].seq] })),
    started: waits.started / requests.length,
    /** Requests that took at least the injected delay: they waited for something that long, D1 or a queue. */
    slowerThanDelay:
      delayMs > 0 ? result.latencies.filter((ms) => ms >= delayMs).length / requests.length : Number.NaN,
    counted: waits.requests,
    sent: requests.length,
    bad: result.bad + warmed.bad + result.probe.bad,
    samples: [...warmed.samples, ...result.samples, ...result.probe.samples].slice(0, 5),
    seconds: result.seconds,
    /** workerd's CPU time per measured request (worker, D1 and Cache API simulators), and its share of a core. */
    cpuMsPerRequest: (workerdSeconds / requests.length) * 1000,
    workerdBusy: workerdSeconds / result.seconds,
    /** Everything else on the machine (other processes, the load generator), in cores. */
    othersBusy: Math.max(0, machineSeconds - workerdSeconds) / result.seconds,
    warmupRps: warmup.length / warmed.seconds,
    maxSendLagMs: result.maxSendLagMs,
  };
  log(
    `latency ${delayMs} ms: seen before p50 ${ms(figure.seenBefore.p50)} ms, p99 ${ms(figure.seenBefore.p99)} ms, ` +
      `D1 waits ${pct(figure.seenBefore.waitShare)}; all p50 ${ms(figure.all.p50)} ms, p99 ${ms(figure.all.p99)} ms, ` +
      `D1 waits ${pct(figure.all.waitShare)}, first sight ${pct(figure.all.firstSightShare)}; workerd alone p99 ` +
      `${ms(figure.raw.p99)} ms; wrong ${figure.bad}; ` +
      `workerd ${pct(figure.workerdBusy)} busy ` +
      `(${figure.cpuMsPerRequest.toFixed(2)} ms CPU/request), others ${figure.othersBusy.toFixed(2)} cores; ` +
      `warm-up ${Math.round(figure.warmupRps)} req/s`,
  );
  return figure;
}

/**
 * One key through the revocation test: created through the API, verified on the second worker every `everyMs`
 * until it is warm there (every tier: the last verifies before the revoke did not wait for D1), revoked through
 * the API on the first worker, and verified on the second until it answers DISABLED. Propagation = from the
 * revoke's 200 to the second worker's first DISABLED, both as received here.
 */
async function propagateOne(instance, name, extraWarmMs) {
  const { everyMs, warmMs, timeoutMs } = LATENCY_SETTINGS.revocation;
  const call = async (base, method, path, body) => {
    const response = await fetch(new URL(path, base), {
      method,
      headers: {
        authorization: `Bearer ${instance.adminKey}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, json: await response.json(), at: performance.now() };
  };
  const created = await call(instance.url, "POST", "/api/v1/keys", { name });
  if (created.status !== 201) throw new Error(`revocation: create -> ${created.status}`);
  const { id, key } = created.json;
  let seq = 0;
  const verifyB = async () => {
    seq++;
    const response = await fetch(new URL(VERIFY_PATH, instance.urlB), {
      method: "POST",
      headers: {
        authorization: `Bearer ${instance.adminKey}`,
        "content-type": "application/json",
        "x-bench-seq": String(seq),
      },
      body: JSON.stringify({ key }),
    });
    return { seq, status: response.status, code: (await response.json()).code, at: performance.now() };
  };
  await getJson(new URL("/__bench/d1-waits?reset=1", instance.urlB));
  const started = performance.now();
  let revokeAfter = started + warmMs + extraWarmMs;
  let revoke = null;
  let revokedAt = null;
  let revokeStatus = null;
  let warmChecks = 0;
  let lastWarmSeqs = [];
  let verifies = 0;
  for (;;) {
    const tick = performance.now();
    const answer = await verifyB();
    verifies++;
    if (answer.status !== 200 || (answer.code !== "VALID" && answer.code !== "DISABLED")) {
      return { ok: false, error: `second worker answered ${answer.status} ${answer.code}` };
    }
    if (answer.code === "DISABLED") {
      if (!revoke) return { ok: false, error: "DISABLED before the revoke" };
      await revoke;
      if (revokeStatus !== 200) return { ok: false, error: `the revoke answered ${revokeStatus}` };
      return {
        ok: true,
        seconds: Math.max(0, answer.at - revokedAt) / 1000,
        verifies,
        warmChecks,
        lastWarmSeqs,
      };
    }
    if (revokeStatus !== null && revokeStatus !== 200) {
      return { ok: false, error: `the revoke answered ${revokeStatus}` };
    }
    if (revokedAt !== null && answer.at - revokedAt > timeoutMs) {
      return { ok: false, error: `still VALID ${timeoutMs / 1000} s after the revoke`, timedOut: true };
    }
    if (!revoke && answer.at >= revokeAfter) {
      // Warm in every tier: none of the last 10 verifies waited for D1 (the entry's per-request record).
      const { waitedSeqs } = await getJson(new URL("/__bench/d1-waits?seqs=1", instance.urlB));
      const recent = waitedSeqs.filter((s) => s > seq - 10);
      warmChecks++;
      if (recent.length > 0 && warmChecks < 20) {
        revokeAfter = performance.now() + 500;
      } else {
        lastWarmSeqs = recent;
        revoke = call(instance.url, "POST", `/api/v1/keys/${id}/revoke`).then(
          (revoked) => {
            revokeStatus = revoked.status;
            revokedAt = revoked.at;
          },
          (error) => {
            revokeStatus = String(error);
          },
        );
      }
    }
    await sleep(Math.max(0, everyMs - (performance.now() - tick)));
  }
}

async function revocationRun(instance, delayMs, random) {
  const { keys, phaseMs } = LATENCY_SETTINGS.revocation;
  const runs = [];
  for (let i = 0; i < keys; i++) {
    const run = await propagateOne(instance, `revocation-${delayMs}ms-${i}`, random() * phaseMs);
    log(
      `latency ${delayMs} ms: revocation ${i + 1}/${keys}: ` +
        (run.ok ? `${run.seconds.toFixed(2)} s (${run.verifies} verifies on the second worker)` : run.error),
    );
    runs.push(run);
  }
  const seconds = runs
    .filter((r) => r.ok)
    .map((r) => r.seconds)
    .sort((a, b) => a - b);
  return {
    delayMs,
    runs,
    failures: runs.filter((r) => !r.ok).length,
    max: seconds.length ? seconds[seconds.length - 1] : Number.NaN,
    median: median(seconds),
    notWarm: runs.filter((r) => r.ok && r.lastWarmSeqs.length > 0).length,
  };
}

export async function runLatencyStage(shared) {
  const s = LATENCY_SETTINGS;
  const load = forkWorker(join(shared.bench, "paced-load.mjs"));
  let instance;
  try {
    instance = await startInstance({
      ...shared,
      name: "latency",
      storedKeys: s.keys,
      options: {
        entry: "latency-entry.mjs",
        leanRatelimit: true,
        ratelimitLimit: shared.ratelimitLimit,
        secondWorker: true,
        vars: { BENCH_D1_LATENCY_MS: "0" },
      },
    });
    const pin = () => {
      pinToCpu(load.child.pid, 0);
      pinToCpu(instance.workerdPid, 1);
    };
    const stream = requestStream(instance, s.seed);
    const random = seededRandom(s.seed + 100);
    const delays = [];
    const revocations = [];
    for (const delayMs of s.delaysMs) {
      delays.push(await measureDelay(instance, load, stream, delayMs, pin));
      if (s.revocation.delaysMs.includes(delayMs))
        revocations.push(await revocationRun(instance, delayMs, random));
    }
    return {
      keys: instance.storedCount,
      seeded: instance.seeded.length,
      seedSeconds: instance.seedSeconds,
      delays,
      revocations,
    };
  } finally {
    await instance?.stop();
    await stopChild(load.child);
  }
}

const ms = (n) => (Number.isNaN(n) ? "-" : n.toFixed(2));
const pct = (n) => (Number.isNaN(n) ? "-" : `${(n * 100).toFixed(1)}%`);
const round3 = (n) => (Number.isNaN(n) ? null : Math.round(n * 1000) / 1000);
const count = (n) => n.toLocaleString("en-US");

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[(sorted.length - 1) >> 1] : Number.NaN;
};

export function latencyReport({ keys, seeded, seedSeconds, delays, revocations }) {
  const s = LATENCY_SETTINGS;
  const byClass = (d, key, field) => CLASSES.map((c) => `${c} ${pct(d[key][c][field])}`).join(", ");
  const lines = [
    `Verify with D1 far away: ${count(keys)} keys stored (seeded straight into D1 in ${seedSeconds.toFixed(0)} s), a fixed latency`,
    `injected before every D1 call. Mix: ${pct(s.share.valid)} stored keys by Zipf(s=1) rank over the ${count(seeded)} seeded ones,`,
    `${pct(s.share.unknown)} unknown keys by Zipf(s=1) rank over their own pool of ${count(s.unknownPool)}, ${pct(s.share.malformed)} bad checksums. Per delay:`,
    `workerd restarted (fresh isolates; D1 and the Cache API stay on disk), a warm-up of ${count(s.warmupRequests)} requests of the mix`,
    `(closed loop), then ${s.measuredSeconds} s at ${s.rate} req/s, paced (open loop, up to ${s.connections} connections).`,
    `"warm" = the requests whose key was sent before in the stage (this location has answered it); "first sight" =`,
    `the others, what a cold location adds; "waited" = the response waited for a D1 call (bench/latency-entry.mjs)`,
    table(
      [
        "injected",
        "warm: p50",
        "p99",
        "waited",
        "all: p50",
        "p99",
        "waited",
        "first sight",
        "first: p50",
        ">= delay",
        "alone: p99",
        "workerd",
        "CPU ms/req",
        "others",
        "wrong",
      ],
      delays.map((d) => [
        `${d.delayMs} ms`,
        ms(d.seenBefore.p50),
        ms(d.seenBefore.p99),
        pct(d.seenBefore.waitShare),
        ms(d.all.p50),
        ms(d.all.p99),
        pct(d.all.waitShare),
        pct(d.all.firstSightShare),
        ms(d.firstSight.p50),
        pct(d.slowerThanDelay),
        ms(d.raw.p99),
        pct(d.workerdBusy),
        d.cpuMsPerRequest.toFixed(2),
        d.othersBusy.toFixed(2),
        d.bad + (d.counted === d.sent ? "" : ` (entry counted ${d.counted} of ${d.sent})`),
      ]),
    ),
    ...delays.flatMap((d) => [
      `  ${d.delayMs} ms: waited, all requests: ${byClass(d, "byClass", "waitShare")}; warm: ${byClass(d, "seenBeforeByClass", "waitShare")};`,
      `        first sight: ${byClass(d, "byClass", "firstSightShare")}` +
        (d.seenBeforeWaits.length
          ? `; ${d.seenBeforeWaits.length} warm requests waited (their key last sent a median ${median(d.seenBeforeWaits.map((w) => w.gap))} requests before)`
          : ""),
    ]),
    `  ">= delay": requests that took at least the injected delay, an independent check of "waited"; "alone": workerd answering`,
    `  POST /__bench/raw without the app, ${s.probeRate} req/s in the same seconds (the delays the process adds by itself: its`,
    '  one thread also runs the D1 and Cache API simulators); "workerd": its share of a core during the measured run,',
    '  "others": every other process, in cores',
    "",
    `Revocation propagation, end to end: a key verified every ${s.revocation.everyMs} ms on a second worker (same bundle, same D1, its own`,
    "isolate and Cache API) until warm there, revoked through the API on the first worker; from the revoke's 200 to the",
    `second worker's first DISABLED (${s.revocation.keys} keys per delay, revoked at a random point of the second worker's poll cycle)`,
    table(
      ["injected", "keys", "max s", "median s", "each (s)", "failures"],
      revocations.map((r) => [
        `${r.delayMs} ms`,
        r.runs.length,
        ms(r.max),
        ms(r.median),
        r.runs.map((x) => (x.ok ? x.seconds.toFixed(2) : "fail")).join(" "),
        r.failures,
      ]),
    ),
  ];
  const problems = [
    ...delays
      .filter((d) => d.bad > 0 || d.counted !== d.sent)
      .map(
        (d) =>
          `! latency ${d.delayMs} ms: ${d.bad} wrong answers, the entry counted ${d.counted} of ${d.sent} requests` +
          d.samples.map((x) => `\n    e.g. ${x}`).join(""),
      ),
    ...revocations.flatMap((r) =>
      r.runs.filter((x) => !x.ok).map((x) => `! revocation at ${r.delayMs} ms: ${x.error}`),
    ),
    ...revocations
      .filter((r) => r.notWarm > 0)
      .map((r) => `! revocation at ${r.delayMs} ms: ${r.notWarm} keys still waited for D1 before the revoke`),
  ];
  lines.push(...problems);
  const figures = (f) => ({
    p50_ms: round3(f.p50),
    p99_ms: round3(f.p99),
    d1_wait_share: round3(f.waitShare),
  });
  const byDelay = (d) => ({
    // Warm: requests for keys this location had answered before (the "once warm").
    ...figures(d.seenBefore),
    first_sight_share: round3(d.all.firstSightShare),
    all_requests: figures(d.all),
    workerd_alone_p99_ms: round3(d.raw.p99),
    d1_wait_share_by_class: Object.fromEntries(
      CLASSES.map((c) => [
        c,
        { all: round3(d.byClass[c].waitShare), warm: round3(d.seenBeforeByClass[c].waitShare) },
      ]),
    ),
  });
  const summary = Object.fromEntries(delays.map((d) => [`latency_${d.delayMs}ms`, byDelay(d)]));
  const at = (delayMs) => revocations.find((r) => r.delayMs === delayMs);
  const headline = at(100);
  Object.assign(summary, {
    latency_seed_keys_seconds: Math.round(seedSeconds),
    latency_wrong_responses: delays.reduce((total, d) => total + d.bad, 0),
    // The bound at 100 ms injected; null when a key was still served after the timeout.
    revocation_propagation_s: headline && headline.failures === 0 ? round3(headline.max) : null,
    revocation_propagation_median_s: headline ? round3(headline.median) : null,
    revocation_propagation_0ms_s: at(0) && at(0).failures === 0 ? round3(at(0).max) : null,
    revocation_failures: revocations.reduce((total, r) => total + r.failures, 0),
  });
  return { lines, summary };
}
