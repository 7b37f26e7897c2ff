// `npm run bench`: builds the worker, runs it on workerd (bench/host.mjs, one process per instance),
// drives it with autocannon (bench/load.mjs, its own process) and prints verify throughput against
// /healthz, then the rotation scheduler's figures (bench/scheduler.mjs), the keyring's (bench/keyring.mjs) and the
// alert tick's (bench/alerts.mjs). The last line printed is one JSON object with the figures. BENCH_ONLY=scheduler,
// keyring or alerts runs that stage alone. See bench/README.md.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";
import { alertsReport, runAlertsStage } from "./alerts.mjs";
import { EDGE_SCENARIOS, EDGE_SPECS, edgeLines, edgeSummary } from "./edge.mjs";
import { startInstance } from "./instance.mjs";
import { forkWorker } from "./ipc.mjs";
import { keyringReport, runKeyringStage } from "./keyring.mjs";
import { generateKey, hashKey } from "./keys.mjs";
import { latencyReport, runLatencyStage } from "./latency.mjs";
import { MILLION_SETTINGS, startMillionInstance } from "./million.mjs";
import { saveProfile, startProfile, summarizeProfile } from "./profile.mjs";
import { printReport, scaleReport, summarize } from "./report.mjs";
import { roundTripsReport, runRoundTripsStage } from "./round-trips.mjs";
import { runScaleStage } from "./scale.mjs";
import { runSchedulerStage, schedulerReport } from "./scheduler.mjs";
import {
  cpuSeconds,
  log,
  machineBusySeconds,
  pinToCpu,
  readWranglerToml,
  sleep,
  stopChild,
} from "./system.mjs";

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH);
const clock = () => {
  const t = performance.now();
  return () => `${((performance.now() - t) / 1000).toFixed(0)} s`;
};

const SETTINGS = {
  connections: Number(process.env.BENCH_CONNECTIONS ?? 32),
  /** Length of one measured run. Scenarios are measured in several short runs, round-robin (below). */
  seconds: Number(process.env.BENCH_SECONDS ?? 2),
  warmupSeconds: 0.5,
  /** Rounds: each round runs every compared scenario once, so drift on this shared machine hits all alike. */
  rounds: Number(process.env.BENCH_ROUNDS ?? 5),
  /** Cold passes per store size in the 1k/1M comparison: one pass is only ~1 s, so more of them. */
  coldRounds: 2 * Number(process.env.BENCH_ROUNDS ?? 5),
  /** Rounds for the last table (Miniflare's ratelimit simulator), which is there for scale only. */
  stockRounds: 2,
  /** Far above anything a run can send, so nothing is throttled (wrangler.toml: 600 and 30 per 60 s). */
  ratelimitLimit: 1_000_000_000,
  /** src/keys/key-change-feed.ts: KEY_FEED_POLL_INTERVAL_MS and HASH_PREFIX_LENGTH (cold passes use the feed). */
  feedPollMs: 5_000,
  hashPrefixLength: 16,
  /** The worker buffers usage counters this long (USAGE_FLUSH_MS default) before one batched D1 write. */
  usageFlushMs: 1_000,
  /** Connections for the audited vault paths (reveal, store): one tenant's audit chain is written one row at a time. */
  vaultConnections: Number(process.env.BENCH_VAULT_CONNECTIONS ?? 8),
  storedSmall: 1_000,
  /** bench/million.mjs: 1,000,000 keys and 100,000 credentials (BENCH_SCALE_KEYS, BENCH_SCALE_CREDENTIALS). */
  storedLarge: MILLION_SETTINGS.keys,
};
/** BENCH_PROFILE=1: CPU-profile the worker isolate during stage 1 (slows it; for attribution only). */
const PROFILE = process.env.BENCH_PROFILE === "1";
const INSPECTOR_PORT = 9329;
/** BENCH_ONLY=scheduler or keyring: build, run that stage alone, print its figures. */
const ONLY = process.env.BENCH_ONLY;
const STAGES = ["edge", "scale", "scheduler", "keyring", "alerts", "roundtrips", "latency"];
if (ONLY !== undefined && !STAGES.includes(ONLY))
  throw new Error(`BENCH_ONLY: unknown stage "${ONLY}" (${STAGES.join(", ")})`);

function build(buildDir) {
  log("building the worker (wrangler deploy --dry-run)");
  execFileSync(join(ROOT, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--outdir", buildDir], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  // The one-route Hono app the edge comparison measures beside the app (bench/hono-floor.ts), bundled alone.
  buildSync({
    entryPoints: [join(BENCH, "hono-floor.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    outfile: join(buildDir, "hono-floor.mjs"),
    logLevel: "warning",
  });
  // The entry the harness loads: imports the bundle, swaps in the in-isolate ratelimit binding.
  copyFileSync(join(BENCH, "worker-entry.mjs"), join(buildDir, "bench-entry.mjs"));
  // The scheduler stage's entry: counts D1 calls, records Workflow and Queue calls (bench/scheduler.mjs).
  copyFileSync(join(BENCH, "scheduler-entry.mjs"), join(buildDir, "scheduler-entry.mjs"));
  // The D1 call counter the bench entries share (bench/d1-counter.mjs).
  copyFileSync(join(BENCH, "d1-counter.mjs"), join(buildDir, "d1-counter.mjs"));
  // The round-trips stage's entry and its Durable Object call counter (bench/round-trips.mjs).
  copyFileSync(join(BENCH, "do-counter.mjs"), join(buildDir, "do-counter.mjs"));
  copyFileSync(join(BENCH, "counting-entry.mjs"), join(buildDir, "counting-entry.mjs"));
  // The latency stage's entry: injected D1 latency, per-request D1 waits (bench/latency.mjs).
  copyFileSync(join(BENCH, "latency-entry.mjs"), join(buildDir, "latency-entry.mjs"));
}

function reportProfile(label, profile, bundleDir) {
  const dir = join(ROOT, "bench-results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${label.replace(/[^\w]+/g, "-")}.cpuprofile`);
  saveProfile(profile, file);
  const { total, byFile, byFunction } = summarizeProfile(profile, bundleDir);
  log(`profile of "${label}": ${total} samples of the worker isolate, saved to ${file}`);
  log(
    `  self time by source file:\n${byFile.join("\n")}\n  self time by function:\n${byFunction.join("\n")}`,
  );
}

async function main(cleanup) {
  const work = mkdtempSync(join(tmpdir(), "keywarden-bench-"));
  cleanup.push(() => rmSync(work, { recursive: true, force: true }));
  const buildDir = join(work, "build");
  build(buildDir);

  const worker = readWranglerToml(ROOT);
  const secrets = {
    MASTER_KEY: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64"),
    BOOTSTRAP_TOKEN: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url"),
  };
  const shared = {
    bench: BENCH,
    root: ROOT,
    work,
    buildDir,
    worker,
    secrets,
    ratelimitLimit: SETTINGS.ratelimitLimit,
  };
  /** One stage on its own instance: run, log its duration, shape its report. */
  const timed = async (name, run, report) => {
    const took = clock();
    const result = await run();
    log(`${name} stage took ${took()}`);
    return report(result);
  };
  const schedulerStage = () => timed("scheduler", () => runSchedulerStage(shared), schedulerReport);
  if (ONLY === "scheduler") return { scheduler: await schedulerStage() };
  // The load the keyring and alerts stages put on their instances while they measure.
  const trafficSettings = {
    connections: SETTINGS.connections,
    seconds: SETTINGS.seconds,
    warmupSeconds: SETTINGS.warmupSeconds,
    rounds: SETTINGS.rounds,
  };
  const keyringStage = () =>
    timed(
      "keyring",
      () =>
        runKeyringStage({
          ...shared,
          settings: { ...trafficSettings, vaultConnections: SETTINGS.vaultConnections },
        }),
      keyringReport,
    );
  if (ONLY === "keyring") return { keyring: await keyringStage() };
  const alertsStage = () =>
    timed(
      "alerts",
      () =>
        runAlertsStage({
          ...shared,
          settings: trafficSettings,
        }),
      alertsReport,
    );
  if (ONLY === "alerts") return { alerts: await alertsStage() };
  const roundTripsStage = () => timed("roundtrips", () => runRoundTripsStage(shared), roundTripsReport);
  if (ONLY === "roundtrips") return { roundtrips: await roundTripsStage() };
  const latencyStage = () => timed("latency", () => runLatencyStage(shared), latencyReport);
  if (ONLY === "latency") return { latency: await latencyStage() };

  const load = forkWorker(join(BENCH, "load.mjs"));
  cleanup.push(() => stopChild(load.child));
  const instances = [];
  const start = async (name, storedKeys, options = {}) => {
    // The big one also stores 100,000 sealed credentials (bench/million.mjs).
    const starter = storedKeys === SETTINGS.storedLarge ? startMillionInstance : startInstance;
    const instance = await starter({
      name,
      bench: BENCH,
      root: ROOT,
      work,
      buildDir,
      worker,
      secrets,
      storedKeys,
      options: { leanRatelimit: true, ratelimitLimit: SETTINGS.ratelimitLimit, ...options },
    });
    instances.push(instance);
    cleanup.push(() => instance.stop());
    return instance;
  };
  // Two deployments of the same build, one per store size, so the 1k/1M comparison can alternate
  // between them and drift on this shared machine hits both alike.
  const small = await start("1k", SETTINGS.storedSmall, PROFILE ? { inspectorPort: INSPECTOR_PORT } : {});
  const large = ONLY === "edge" ? undefined : await start("1m", SETTINGS.storedLarge);
  /**
   * The load generator on CPU 0 and every workerd on CPU 1: otherwise the scheduler decides which
   * instance shares a core with the load generator, and the 1k/1M comparison measures that instead
   * of the table size. Re-applied after each restart (new workerd process).
   */
  const pinCpus = () => {
    if (availableParallelism() < 2) return;
    pinToCpu(load.child.pid, 0);
    for (const instance of instances) pinToCpu(instance.workerdPid, 1);
  };
  pinCpus();

  let lastLoadEnd = Number.NEGATIVE_INFINITY;
  const ourCpu = () =>
    [load.child.pid, ...instances.flatMap((i) => [i.workerdPid, i.host.child.pid])].reduce(
      (total, pid) => total + cpuSeconds(pid),
      (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    );
  const workerdCpu = () => instances.reduce((total, i) => total + cpuSeconds(i.workerdPid), 0);

  /**
   * Waits until the usage write of earlier traffic has run (it fires usageFlushMs after a request)
   * and workerd is idle, so one scenario's background work never lands in the next one's figures.
   */
  async function settle() {
    await sleep(Math.max(0, lastLoadEnd + SETTINGS.usageFlushMs + 200 - performance.now()));
    for (let i = 0; i < 50; i++) {
      const before = workerdCpu();
      await sleep(200);
      if (workerdCpu() - before <= 0.01) return;
    }
  }

  /**
   * One measured run against `instance`, after an unmeasured warm-up run of the same scenario (unless
   * `warmup` is null), starting with workerd idle. Records the CPU time workerd used during the measured
   * run (with `flushAfter`, also for the usage write the run leaves behind) and the CPU time every other
   * process on the machine used meanwhile (other sessions share these cores).
   */
  async function measure(instance, label, spec, { warmup = {}, amount, flushAfter = false } = {}) {
    log(`${instance.name}: ${label}`);
    const base = { connections: SETTINGS.connections, duration: SETTINGS.seconds, ...spec };
    await settle();
    if (warmup) await load.call({ spec: { ...base, duration: SETTINGS.warmupSeconds, ...warmup } });
    const stopProfile = PROFILE && instance.inspectorPort ? await startProfile(INSPECTOR_PORT) : undefined;
    const before = {
      workerd: cpuSeconds(instance.workerdPid),
      ours: ourCpu(),
      machine: machineBusySeconds(),
    };
    const started = performance.now();
    const result = await load.call({ spec: { ...base, amount } });
    const wall = (performance.now() - started) / 1000;
    lastLoadEnd = performance.now();
    const workerdAfterLoad = cpuSeconds(instance.workerdPid);
    if (flushAfter) await settle();
    const after = { workerd: cpuSeconds(instance.workerdPid), ours: ourCpu(), machine: machineBusySeconds() };
    if (stopProfile) reportProfile(`${instance.name} ${label}`, await stopProfile(), buildDir);
    return {
      ...result,
      wall: flushAfter ? (performance.now() - started) / 1000 : wall,
      workerdCpuSeconds: after.workerd - before.workerd,
      /** After the last response until idle: the usage write the run left behind (`flushAfter` only). */
      trailingCpuSeconds: after.workerd - workerdAfterLoad,
      otherCpuSeconds: Math.max(0, after.machine - before.machine - (after.ours - before.ours)),
    };
  }

  /**
   * One round of the vault's scenarios (stage 1's, and stage 2's on each instance): /healthz, then a reveal of
   * the API's credential and a store of a new one. Both write an audit row, so they run with the vault's
   * connections.
   */
  async function measureVault(instance, round) {
    const s = instance.specs;
    const healthz = await measure(instance, `/healthz (vault round ${round})`, s.healthz());
    const reveal = await measure(instance, `credential reveal (round ${round})`, {
      ...s.reveal(),
      connections: SETTINGS.vaultConnections,
    });
    const store = await measure(
      instance,
      `credential store (round ${round})`,
      { ...s.store(20_000), connections: SETTINGS.vaultConnections },
      { warmup: null },
    );
    return { healthz, reveal, store };
  }

  /**
   * A cold pass: each of `keys` verified exactly once, with no cache tier able to answer it. Isolate and
   * Cache API entries live a day now, so the pass first supersedes the keys' entries through the change feed
   * (a row in key_changes per key, what a change to the key writes), waits out one poll interval and sends one
   * request (another key) that starts the isolate's poll; every key of the pass is then read from D1 (and its
   * Cache API entry, found superseded, is written again), as a key first seen at a location is.
   */
  async function coldPass(instance, label, keys) {
    const now = Date.now();
    const rows = keys.map((k) => `('${hashKey(k.key).slice(0, SETTINGS.hashPrefixLength)}', ${now})`);
    await instance.host.call({
      cmd: "query",
      args: { sql: `INSERT INTO key_changes (hash_prefix, changed_at) VALUES ${rows.join(", ")}` },
    });
    await sleep(SETTINGS.feedPollMs + 500);
    await load.call({ spec: { ...instance.specs.warm(), connections: 1, amount: 1 } });
    await sleep(200);
    return measure(instance, label, instance.specs.cold(keys), {
      warmup: null,
      amount: keys.length,
      flushAfter: true,
    });
  }

  const passKeys = (instance) => instance.seeded.slice(0, SETTINGS.storedSmall - 3);
  const unknownKeys = Array.from({ length: 80_000 }, () => generateKey(small.prefix));
  const unknownWarmup = { bodies: unknownKeys.slice(60_000).map((key) => JSON.stringify({ key })) };

  // Stage 1, 1,000 keys stored: every scenario. Rounds of healthz / warm / bad checksum / cached miss,
  // each followed by a cold pass; the passes go over the same 997 keys, spaced past the cache TTL by
  // the round in between (which touches none of those keys). Distinct unknown keys go last, since
  // they fill the isolate's cache with misses.
  let took = clock();
  const s = small.specs;
  const stage1 = {
    healthz: [],
    warm: [],
    badChecksum: [],
    unknownCached: [],
    cold: [],
    rawGet: [],
    rawPost: [],
    rawGetHeaders: [],
    rawGetHeadersId: [],
    honoFloor: [],
    rawPostHeaders: [],
    rawOneDigest: [],
    rawTwoDigests: [],
  };
  /**
   * Stage 2 (bench/scale.mjs), alone with BENCH_ONLY=scale. Both start it from a fresh isolate, so the comparison
   * is of table sizes only: stage 1 left the 1k isolate with a full key cache and a bigger heap, which made it
   * the slower of the two.
   */
  const scaleStage = async () => {
    log("restarting both instances' workerd (D1 persists) so stage 2 starts from equal isolates");
    await small.restart({ inspectorPort: undefined });
    await large.restart({});
    pinCpus();
    return runScaleStage({ small, large, measure, measureVault, coldPass, passKeys, settings: SETTINGS });
  };
  if (ONLY === "scale") return { scale: scaleReport(await scaleStage(), SETTINGS) };
  if (ONLY === "edge") {
    const edgeRuns = Object.fromEntries(EDGE_SCENARIOS.map((name) => [name, []]));
    for (let round = 1; round <= SETTINGS.rounds; round++) {
      for (const name of EDGE_SCENARIOS)
        edgeRuns[name].push(await measure(small, `${name} (round ${round})`, EDGE_SPECS[name](s)));
    }
    const figures = Object.fromEntries(Object.entries(edgeRuns).map(([k, runs]) => [k, summarize(runs)]));
    const wrong = Object.values(figures).reduce((total, f) => total + f.bad, 0);
    return {
      edge: { lines: edgeLines(figures), summary: { ...edgeSummary(figures), wrong_responses: wrong } },
    };
  }
  for (let round = 1; round <= SETTINGS.rounds; round++) {
    stage1.healthz.push(await measure(small, `/healthz (round ${round})`, s.healthz()));
    stage1.rawGet.push(await measure(small, `workerd alone, GET (round ${round})`, s.rawGet()));
    stage1.rawPost.push(
      await measure(small, `workerd alone, POST with a JSON body (round ${round})`, s.rawPost()),
    );
    stage1.rawGetHeaders.push(
      await measure(small, `workerd alone, GET with the app's headers (round ${round})`, s.rawGetHeaders()),
    );
    stage1.rawGetHeadersId.push(
      await measure(
        small,
        `workerd alone, GET with the app's headers and a request id (round ${round})`,
        s.rawGetHeadersId(),
      ),
    );
    stage1.honoFloor.push(
      await measure(small, `one-route Hono app, GET with the app's headers (round ${round})`, s.honoFloor()),
    );
    stage1.rawPostHeaders.push(
      await measure(small, `workerd alone, POST with the app's headers (round ${round})`, s.rawPostHeaders()),
    );
    for (const name of ["rawOneDigest", "rawTwoDigests"])
      stage1[name].push(await measure(small, `workerd alone, ${name} (round ${round})`, EDGE_SPECS[name](s)));
    stage1.warm.push(await measure(small, `verify warm (round ${round})`, s.warm()));
    stage1.badChecksum.push(await measure(small, `verify bad checksum (round ${round})`, s.badChecksum()));
    stage1.unknownCached.push(
      await measure(small, `verify unknown, same key (round ${round})`, s.unknown([unknownKeys[0]])),
    );
    stage1.cold.push(await coldPass(small, `verify cold (round ${round})`, passKeys(small)));
  }
  const main = Object.fromEntries(Object.entries(stage1).map(([k, runs]) => [k, summarize(runs)]));
  // The vault paths (issue 3): reveal (read + decrypt) and store (validate + encrypt + write). Both
  // write an audit row per request; one tenant's audit chain takes writes one at a time, so these run
  // with fewer connections than verify.
  const vault = { healthz: [], reveal: [], store: [] };
  for (let round = 1; round <= SETTINGS.rounds; round++) {
    const runs = await measureVault(small, round);
    for (const name of Object.keys(vault)) vault[name].push(runs[name]);
  }
  const vaultSummary = Object.fromEntries(Object.entries(vault).map(([k, runs]) => [k, summarize(runs)]));
  main.unknown = summarize([
    await measure(
      small,
      "verify unknown, new key each request",
      { ...s.unknown(unknownKeys.slice(0, 60_000)), duration: SETTINGS.seconds * SETTINGS.rounds },
      { warmup: unknownWarmup },
    ),
  ]);
  log(`stage 1 took ${took()}`);
  // D1 round trips and Durable Object calls per operation, on an instance of its own (one request at a time).
  const roundtrips = await roundTripsStage();

  // Stage 2, 1,000 vs 1,000,000 keys stored (bench/scale.mjs).
  took = clock();
  const scaling = await scaleStage();
  log(`stage 2 took ${took()}`);
  // Verify with D1 far away, and revocation propagation between two locations, on an instance of its own.
  const latency = await latencyStage();

  // Stage 3: the 1k instance restarted with Miniflare's own ratelimit simulator in the request path.
  took = clock();
  await large.stop();
  instances.splice(instances.indexOf(large), 1);
  log("1k: restarting workerd with Miniflare's simulated ratelimit bindings");
  await small.restart({ leanRatelimit: false, inspectorPort: undefined });
  pinCpus();
  const stockRuns = { healthz: [], warm: [], badChecksum: [] };
  for (let round = 1; round <= SETTINGS.stockRounds; round++) {
    for (const name of Object.keys(stockRuns)) {
      stockRuns[name].push(
        await measure(small, `stock ratelimit: ${name} (round ${round})`, small.specs[name]()),
      );
    }
  }
  const stock = Object.fromEntries(Object.entries(stockRuns).map(([k, runs]) => [k, summarize(runs)]));
  log(`stage 3 took ${took()}`);

  // Stage 4: the rotation scheduler, on an instance of its own (the others are stopped first).
  await small.stop();
  const scheduler = await schedulerStage();
  // Stage 5: the keyring (KEK re-wrap and DEK re-encryption under load), on an instance of its own.
  const keyring = await keyringStage();
  // Stage 6: the alert tick over 100,000 keys' hourly counts, and verify with the usage recorder on and off.
  const alerts = await alertsStage();

  return {
    main,
    vault: vaultSummary,
    scaling,
    stock,
    smallCount: small.storedCount,
    passSize: passKeys(small).length,
    scheduler,
    keyring,
    alerts,
    roundtrips,
    latency,
  };
}

const cleanup = [];
async function runCleanup() {
  while (cleanup.length) await cleanup.pop()();
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await runCleanup();
    process.exit(130);
  });
}
try {
  const results = await main(cleanup);
  await runCleanup();
  if (ONLY !== undefined) {
    console.log(results[ONLY].lines.join("\n"));
    console.log(JSON.stringify(results[ONLY].summary));
  } else {
    printReport(results, SETTINGS, ROOT);
  }
} catch (error) {
  await runCleanup();
  console.error(error);
  process.exit(1);
}
