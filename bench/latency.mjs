// The latency stage (issue 13, part 2): verify with a fixed latency injected into every D1 call, under a
// realistic mix, and revocation propagation between two locations. `BENCH_ONLY=latency npm run bench`, or after
// stage 2 of the full bench. See bench/README.md, "Latency with D1 far away".
//
// One instance of the build with 1,000,000 keys stored and two workers on the same D1 (bench/host.mjs
// `secondWorker`), both behind bench/latency-entry.mjs (the injected delay, and per request whether the response
// waited for D1). Every restart is a fresh workerd: empty isolate caches, with D1 and the Cache API persisted on
// disk (a location's cache outlives its isolates).
//
// 1. Cold location, 100 ms injected: a fresh sequence of the mix sent with no warm-up (what a location that has
//    seen none of the keys waits for).
// 2. Warm location: the measured sequence is generated first (its own seed), then every DISTINCT key of it is
//    verified once (closed loop, 0 ms injected, not measured): the location has answered every key the measured
//    traffic uses, a long-lived location's steady state. Then for each injected delay (100, 20, 0 ms) workerd
//    restarts with the delay and the sequence is replayed at RATE req/s, paced (bench/paced-load.mjs), every
//    answer checked.
// Every measured run is two paced segments with a workerd restart between them (the isolate's LRU emptied
// mid-run; the restart itself falls between the segments, since requests sent to a process that is restarting
// fail, where a deployment starts the new isolate beside the old one).
// 3. Revocation propagation (after the warm runs at 100 and 0 ms): keys verified in a loop on the second
//    worker, revoked on the first.
//
// The mix: 93% stored keys by Zipf(s = 1) rank over the seeded keys, 5% well-formed keys never stored, by
// Zipf(s = 1) rank over their own pool, 2% a stored key (by the same Zipf) with its checksum broken.
import { join } from "node:path";
import { startInstance } from "./instance.mjs";
import { forkWorker } from "./ipc.mjs";
import { breakChecksum, generateKey } from "./keys.mjs";
import { percentile, table } from "./report.mjs";
import { seededRandom } from "./seeded-random.mjs";
import { cpuSeconds, log, machineBusySeconds, pinToCpu, sleep, stopChild } from "./system.mjs";
import { scatter, zipf } from "./zipf.mjs";

export const LATENCY_SETTINGS = {
  /** Keys stored (the tenant's admin key, the warm key and the probe among them); BENCH_LATENCY_KEYS. */
  keys: Number(process.env.BENCH_LATENCY_KEYS ?? 1_000_000),
  /** Well-formed keys never stored, the unknown class's own pool. */
  unknownPool: 50_000,
  share: { valid: 0.93, unknown: 0.05, malformed: 0.02 },
  /** Injected D1 latencies, in the order they run (the headline first: the fewest requests before it). */
  delaysMs: [100, 20, 0],
  /** Paced rate of the measured runs (req/s) and how long they last (a workerd restart at half time). */
  rate: Number(process.env.BENCH_LATENCY_RATE ?? 100),
  measuredSeconds: Number(process.env.BENCH_LATENCY_SECONDS ?? 40),
  /** Requests in the first second after a restart: the fresh isolate loads the feed and its entry key. */
  isolateStartMs: 1_000,
  /** workerd alone (POST /__bench/raw, no app) alongside each measured run: req/s, over its own connections. */
  probeRate: 20,
  /** Keep-alive connections of the paced runs (at most this many requests in flight) and of the warm-ups. */
  connections: 64,
  seed: 13,
  /** The cold location's sequence (its own seed: none of its keys was sent before). */
  coldSeed: 1313,
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
 * A request stream: each call to next() draws one request of the mix. Its requests are numbered from 1 and
 * carry their key, so a replay can tell first sights apart against whatever the stage sent before (see mark).
 */
function requestStream(instance, seed) {
  const { share, unknownPool } = LATENCY_SETTINGS;
  const random = seededRandom(seed);
  const stored = instance.seeded;
  const validRank = zipf({ n: stored.length, seed: seed + 1 });
  const place = scatter(stored.length, seed + 2);
  const unknownRank = zipf({ n: unknownPool, seed: seed + 3 });
  const unknownKeys = Array.from({ length: unknownPool }, () => generateKey(instance.prefix));
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
      return {
        cls,
        key,
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

/**
 * Marks each request of a run with whether it is the first sight of its key at this location: `seen` holds
 * every key the stage sent before (warm-ups and earlier runs), and is updated with this run's keys.
 */
function mark(requests, seen) {
  return requests.map((request) => {
    const firstSight = !seen.has(request.key);
    seen.add(request.key);
    return { ...request, firstSight };
  });
}

/** The run's distinct keys, once each, in the order of their first request (the warm-up of a location). */
function distinctKeys(requests) {
  const byKey = new Map();
  for (const request of requests) {
    if (!byKey.has(request.key)) byKey.set(request.key, { ...request, headers: {} });
  }
  return [...byKey.values()];
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

/**
 * Percentiles, D1 wait shares and first-sight share of a subset of the measured requests (`i` is the index in
 * the run). A request counts as waiting for D1 when the entry saw one of its own D1 calls settle before its
 * response (`ownCall`) or, with a delay injected, when it took at least that delay: a request that awaits a read
 * another request started (the tiers' single flight, a fresh isolate's feed load) makes no call of its own, so
 * the entry alone would miss it. `waitShare` is that union, the conservative figure.
 */
function describeSubset(requests, latencies, waited, delayMs, pick) {
  const picked = [];
  let waits = 0;
  let ownCalls = 0;
  let first = 0;
  requests.forEach((request, i) => {
    if (!pick(request, i)) return;
    picked.push(latencies[i]);
    const own = waited.has(request.seq);
    if (own) ownCalls++;
    if (own || (delayMs > 0 && latencies[i] >= delayMs)) waits++;
    if (request.firstSight) first++;
  });
  const sorted = Float64Array.from(picked).sort();
  return {
    requests: picked.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    waitShare: picked.length ? waits / picked.length : Number.NaN,
    ownCallShare: picked.length ? ownCalls / picked.length : Number.NaN,
    firstSightShare: picked.length ? first / picked.length : Number.NaN,
  };
}

/** Restarts workerd with `delayMs` injected, re-pins it, and waits for it to go idle. */
async function restartWith(instance, delayMs, pin) {
  await instance.restart({ vars: { BENCH_D1_LATENCY_MS: String(delayMs) } });
  pin();
  await idle(instance.workerdPid);
}

/** Warms the location: every distinct key of `requests` verified once, closed loop, at 0 ms injected. */
async function warmLocation(instance, load, spec, requests, pin) {
  const keys = distinctKeys(requests);
  log(`latency: warming the location, ${keys.length} distinct keys of the measured sequence, 0 ms injected`);
  await restartWith(instance, 0, pin);
  const warmed = await load.call({ spec: { ...spec, requests: keys, rate: null } });
  await sleep(1_200); // the usage recorder's flush (1 s after the last request)
  await idle(instance.workerdPid);
  return { keys: keys.length, bad: warmed.bad, samples: warmed.samples, rps: keys.length / warmed.seconds };
}

/**
 * One measured run: workerd restarted with the delay, the requests paced in two segments with a restart
 * between them (the isolate's LRU emptied mid-run). Every answer checked.
 */
async function measureRun(instance, load, spec, requests, delayMs, pin, label) {
  const s = LATENCY_SETTINGS;
  const half = Math.ceil(requests.length / 2);
  const segments = [requests.slice(0, half), requests.slice(half)];
  const latencies = new Float64Array(requests.length);
  const waited = new Set();
  const raw = [];
  const segmentStarts = [];
  let bad = 0;
  let samples = [];
  let counted = 0;
  let workerdSeconds = 0;
  let machineSeconds = 0;
  let seconds = 0;
  let maxSendLagMs = 0;
  let offset = 0;
  for (const [n, segment] of segments.entries()) {
    log(
      `latency ${label}: ${n === 0 ? "restarting" : "restarting mid-run"} workerd with ${delayMs} ms injected, ` +
        `then ${segment.length} requests at ${s.rate} req/s`,
    );
    await restartWith(instance, delayMs, pin);
    await getJson(new URL("/__bench/d1-waits?reset=1", instance.url));
    const segmentSeconds = segment.length / s.rate;
    const probe = {
      path: "/__bench/raw",
      rate: s.probeRate,
      requests: Array.from({ length: Math.round(segmentSeconds * s.probeRate) }, () => ({
        body: segment[0].body,
        headers: {},
        expect: INVALID_FORMAT,
      })),
    };
    const before = { workerd: cpuSeconds(instance.workerdPid), machine: machineBusySeconds() };
    const result = await load.call({ spec: { ...spec, requests: segment, rate: s.rate, probe } });
    workerdSeconds += cpuSeconds(instance.workerdPid) - before.workerd;
    machineSeconds += machineBusySeconds() - before.machine;
    const waits = await getJson(new URL("/__bench/d1-waits?seqs=1", instance.url));
    for (const seq of waits.waitedSeqs) waited.add(seq);
    counted += waits.requests;
    latencies.set(result.latencies, offset);
    raw.push(...result.probe.latencies);
    bad += result.bad + result.probe.bad;
    samples = [...samples, ...result.samples, ...result.probe.samples].slice(0, 5);
    seconds += result.seconds;
    maxSendLagMs = Math.max(maxSendLagMs, result.maxSendLagMs);
    segmentStarts.push(offset);
    offset += segment.length;
  }
  const startRequests = Math.round((s.isolateStartMs / 1000) * s.rate);
  const inIsolateStart = (i) => segmentStarts.some((start) => i >= start && i < start + startRequests);
  const subset = (pick) => describeSubset(requests, latencies, waited, delayMs, pick);
  const rawSorted = Float64Array.from(raw).sort();
  const figure = {
    label,
    delayMs,
    all: subset(() => true),
    byClass: Object.fromEntries(CLASSES.map((cls) => [cls, subset((r) => r.cls === cls)])),
    firstSight: subset((r) => r.firstSight),
    /** The segment after the mid-run restart: a fresh isolate's LRU, the location's Cache API. */
    afterRestart: subset((_, i) => i >= half),
    /** The first second after each restart (a fresh isolate loads the feed and its entry key), and the rest. */
    isolateStart: subset((_, i) => inIsolateStart(i)),
    steady: subset((_, i) => !inIsolateStart(i)),
    /** workerd answering without the app, in the same seconds: the delays the process itself adds (its one
     * thread also runs the D1 and Cache API simulators and the usage flush). */
    raw: { requests: rawSorted.length, p50: percentile(rawSorted, 50), p99: percentile(rawSorted, 99) },
    counted,
    sent: requests.length,
    bad,
    samples,
    seconds,
    /** workerd's CPU time per measured request (worker, D1 and Cache API simulators), and its share of a core. */
    cpuMsPerRequest: (workerdSeconds / requests.length) * 1000,
    workerdBusy: workerdSeconds / seconds,
    /** Everything else on the machine (other processes, the load generator), in cores. */
    othersBusy: Math.max(0, machineSeconds - workerdSeconds) / seconds,
    maxSendLagMs,
  };
  log(
    `latency ${label}: p50 ${ms(figure.all.p50)} ms, p99 ${ms(figure.all.p99)} ms, D1 waits ` +
      `${pct(figure.all.waitShare)} (own call ${pct(figure.all.ownCallShare)}), first sight ` +
      `${pct(figure.all.firstSightShare)}; after the mid-run restart ${figure.afterRestart.requests} requests, p99 ` +
      `${ms(figure.afterRestart.p99)} ms; past each isolate's first second p99 ${ms(figure.steady.p99)} ms, waits ` +
      `${pct(figure.steady.waitShare)}; workerd alone p99 ${ms(figure.raw.p99)} ms; wrong ${figure.bad}; workerd ` +
      `${pct(figure.workerdBusy)} busy (${figure.cpuMsPerRequest.toFixed(2)} ms CPU/request), others ` +
      `${figure.othersBusy.toFixed(2)} cores`,
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
    const spec = {
      url: instance.url,
      path: VERIFY_PATH,
      headers: { authorization: `Bearer ${instance.adminKey}`, "content-type": "application/json" },
      connections: s.connections,
    };
    const runLength = Math.round(s.rate * s.measuredSeconds);
    /** Every key the stage has sent to the first worker so far. */
    const seen = new Set();
    const random = seededRandom(s.seed + 100);
    const revocations = [];
    // Cold location first, while the location has seen nothing.
    const cold = await measureRun(
      instance,
      load,
      spec,
      mark(requestStream(instance, s.coldSeed).take(runLength), seen),
      100,
      pin,
      "100 ms, cold location",
    );
    // The warm sequence is generated before anything is sent, then the location answers each of its keys once.
    const sequence = requestStream(instance, s.seed).take(runLength);
    const warmup = await warmLocation(instance, load, spec, sequence, pin);
    for (const request of sequence) seen.add(request.key);
    const measured = mark(sequence, seen);
    const delays = [];
    for (const delayMs of s.delaysMs) {
      delays.push(await measureRun(instance, load, spec, measured, delayMs, pin, `${delayMs} ms`));
      if (s.revocation.delaysMs.includes(delayMs))
        revocations.push(await revocationRun(instance, delayMs, random));
    }
    return {
      keys: instance.storedCount,
      seeded: instance.seeded.length,
      seedSeconds: instance.seedSeconds,
      cold,
      warmup,
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

export function latencyReport({ keys, seeded, seedSeconds, cold, warmup, delays, revocations }) {
  const s = LATENCY_SETTINGS;
  const runs = [cold, ...delays];
  const byClass = (d) => CLASSES.map((c) => `${c} ${pct(d.byClass[c].waitShare)}`).join(", ");
  const lines = [
    `Verify with D1 far away: ${count(keys)} keys stored (seeded straight into D1 in ${seedSeconds.toFixed(0)} s), a fixed latency`,
    `injected before every D1 call. Mix: ${pct(s.share.valid)} stored keys by Zipf(s=1) rank over the ${count(seeded)} seeded ones,`,
    `${pct(s.share.unknown)} unknown keys by Zipf(s=1) rank over their own pool of ${count(s.unknownPool)}, ${pct(s.share.malformed)} bad checksums.`,
    `Each run: ${count(cold.sent)} requests at ${s.rate} req/s, paced (open loop, up to ${s.connections} connections), in two segments`,
    "with a workerd restart before each (fresh isolates, empty LRU; D1 and the Cache API stay on disk). Warm location:",
    `the measured sequence generated first, its ${count(warmup.keys)} distinct keys verified once (0 ms, not measured), then`,
    "replayed at each delay. Cold location: a fresh sequence, no warm-up. waited = the response waited for D1 (its own",
    "D1 call settled before it, or it took at least the injected delay)",
    table(
      [
        "run",
        "p50",
        "p99",
        "waited",
        "own call",
        "first sight",
        "after restart",
        "p99",
        "1st s: waited",
        "rest: p99",
        "alone: p99",
        "workerd",
        "CPU ms/req",
        "others",
        "wrong",
      ],
      runs.map((d) => [
        d.label,
        ms(d.all.p50),
        ms(d.all.p99),
        pct(d.all.waitShare),
        pct(d.all.ownCallShare),
        pct(d.all.firstSightShare),
        count(d.afterRestart.requests),
        ms(d.afterRestart.p99),
        pct(d.isolateStart.waitShare),
        ms(d.steady.p99),
        ms(d.raw.p99),
        pct(d.workerdBusy),
        d.cpuMsPerRequest.toFixed(2),
        d.othersBusy.toFixed(2),
        d.bad + (d.counted === d.sent ? "" : ` (entry counted ${d.counted} of ${d.sent})`),
      ]),
    ),
    ...runs.map((d) => `  ${d.label}: waited by class: ${byClass(d)}`),
    '  "after restart": requests after the mid-run restart, and their p99; "1st s": the requests of the first second',
    '  after each of the run\'s two restarts (a fresh isolate loads the feed and its entry key); "rest": the others;',
    `  "alone": workerd answering POST /__bench/raw without the app, ${s.probeRate} req/s in the same seconds (the delays`,
    '  the process adds by itself: its one thread also runs the D1 and Cache API simulators); "workerd": its share of',
    '  a core during the measured run, "others": every other process, in cores',
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
    ...(warmup.bad > 0
      ? [
          `! latency warm-up: ${warmup.bad} wrong answers${warmup.samples.map((x) => `\n    e.g. ${x}`).join("")}`,
        ]
      : []),
    ...runs
      .filter((d) => d.bad > 0 || d.counted !== d.sent)
      .map(
        (d) =>
          `! latency ${d.label}: ${d.bad} wrong answers, the entry counted ${d.counted} of ${d.sent} requests` +
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
  const byRun = (d) => ({
    // Over every request of the run (warm location: every key answered once before; two restarts in it).
    ...figures(d.all),
    d1_wait_share_own_call: round3(d.all.ownCallShare),
    first_sight_share: round3(d.all.firstSightShare),
    requests: d.sent,
    requests_after_restart: d.afterRestart.requests,
    after_restart: figures(d.afterRestart),
    isolate_first_second: figures(d.isolateStart),
    past_isolate_first_second: figures(d.steady),
    workerd_alone_p99_ms: round3(d.raw.p99),
    d1_wait_share_by_class: Object.fromEntries(CLASSES.map((c) => [c, round3(d.byClass[c].waitShare)])),
  });
  const summary = Object.fromEntries(delays.map((d) => [`latency_${d.delayMs}ms`, byRun(d)]));
  // No warm-up, a fresh sequence: what a location that has seen none of the keys waits for.
  summary.latency_100ms_cold_location = byRun(cold);
  const at = (delayMs) => revocations.find((r) => r.delayMs === delayMs);
  const headline = at(100);
  Object.assign(summary, {
    latency_seed_keys_seconds: Math.round(seedSeconds),
    latency_wrong_responses: runs.reduce((total, d) => total + d.bad, 0) + warmup.bad,
    // The bound at 100 ms injected; null when a key was still served after the timeout.
    revocation_propagation_s: headline && headline.failures === 0 ? round3(headline.max) : null,
    revocation_propagation_median_s: headline ? round3(headline.median) : null,
    revocation_propagation_0ms_s: at(0) && at(0).failures === 0 ? round3(at(0).max) : null,
    revocation_failures: revocations.reduce((total, r) => total + r.failures, 0),
  });
  return { lines, summary };
}
