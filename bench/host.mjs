// The harness, run as its own process (forked by run.mjs): Miniflare starts workerd with the built
// worker and its bindings, and hands back a direct socket to the worker. The load generator talks to
// workerd on that socket, so no Node code and no Miniflare entry worker (request logging, pretty
// errors, cf injection) sits in the request path. This process only answers set-up commands over IPC.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { applyMigrations, insertKeyRows, insertRows } from "./seed.mjs";

let mf;
let config;

/** Names of the two workers when an instance runs a second one (`secondWorker`); see miniflareOptions. */
const WORKER_A = "keywarden";
const WORKER_B = "keywarden-b";

function miniflareOptions(config) {
  const { persistDir, inspectorPort, secondWorker } = config;
  const shared = {
    host: "127.0.0.1",
    port: 0,
    logRequests: false,
    telemetry: { enabled: false },
    inspectorPort,
    resourcePersistencePath: persistDir,
  };
  if (!secondWorker) return convertV4MiniflareOptions({ ...shared, ...workerOptions(config) });
  // The "other location" of the latency stage's revocation test (bench/latency.mjs): the same bundle and
  // entry on the same D1 database, in an isolate of its own with its own direct socket. It uses the first
  // worker's Durable Objects (one deployment), and runs no Workflows and no queue consumer, which a deployment
  // runs once whatever the location. BENCH_LOCATION tells the entry which location it is (its Cache API).
  const b = workerOptions({ ...config, vars: { ...config.vars, BENCH_LOCATION: "b" } });
  for (const [binding, object] of Object.entries(b.durableObjects)) {
    b.durableObjects[binding] = { ...object, scriptName: WORKER_A };
  }
  delete b.workflows;
  delete b.queueConsumers;
  return convertV4MiniflareOptions({
    ...shared,
    workers: [
      { name: WORKER_A, ...workerOptions({ ...config, vars: { ...config.vars, BENCH_LOCATION: "a" } }) },
      { name: WORKER_B, ...b },
    ],
  });
}

/** One worker's options: the bundle behind a bench entry, with every binding wrangler.toml declares. */
function workerOptions({
  buildDir,
  worker,
  secrets,
  leanRatelimit,
  ratelimitLimit,
  entry = "bench-entry.mjs",
  vars = {},
}) {
  const ratelimit = (namespaceId) => ({
    namespace_id: namespaceId,
    simple: { limit: ratelimitLimit, period: 60 },
  });
  return {
    modulesRoot: buildDir,
    modules: [
      { type: "ESModule", path: join(buildDir, entry) },
      { type: "ESModule", path: join(buildDir, "index.js") },
      // The other bench modules copied next to the bundle (d1-counter.mjs, the other entries), importable by the entry.
      ...readdirSync(buildDir)
        .filter((file) => file.endsWith(".mjs") && file !== entry)
        .map((file) => ({ type: "ESModule", path: join(buildDir, file) })),
    ],
    compatibilityDate: worker.compatibilityDate,
    compatibilityFlags: worker.compatibilityFlags,
    d1Databases: { DB: "keywarden-bench" },
    durableObjects: {
      KEY_LIMITER: { className: "KeyLimiter", useSQLite: true },
      WIZARD_SESSION: { className: "WizardSession", useSQLite: true },
      AUDIT_CHAIN: { className: "AuditChain", useSQLite: true },
    },
    // As wrangler.toml declares them. The scheduler stage answers the two rotation Workflows and the queue from its
    // own entry (bench/scheduler-entry.mjs); the keyring stage runs DEK_ROTATION and KEK_REWRAP for real
    // (bench/keyring.mjs). See bench/README.md.
    workflows: {
      KEY_ROTATION: { name: "keywarden-key-rotation", className: "KeyRotationWorkflow" },
      CREDENTIAL_ROTATION: { name: "keywarden-credential-rotation", className: "CredentialRotationWorkflow" },
      DEK_ROTATION: { name: "keywarden-dek-rotation", className: "DataKeyRotationWorkflow" },
      KEK_REWRAP: { name: "keywarden-kek-rewrap", className: "KekRewrapWorkflow" },
    },
    queueProducers: { RETEST_QUEUE: { queueName: "keywarden-retests" } },
    queueConsumers: {
      "keywarden-retests": {
        maxBatchSize: 10,
        maxBatchTimeout: 5,
        maxRetries: 3,
        deadLetterQueue: "keywarden-retests-dlq",
      },
    },
    // Both limiters get a limit no benchmark can reach; see bench-entry.mjs for the in-isolate variant.
    // AUTH_ATTEMPT_LIMITER guards sign-in and bootstrap only (never a verify): Miniflare's simulator answers it.
    ratelimits: {
      TENANT_RATE_LIMITER: ratelimit("1001"),
      AUTH_FAILURE_LIMITER: ratelimit("1002"),
      AUTH_ATTEMPT_LIMITER: ratelimit("1003"),
    },
    bindings: {
      ...worker.vars,
      ...secrets,
      BENCH_LEAN_RATELIMIT: leanRatelimit ? "1" : "0",
      BENCH_RATELIMIT_LIMIT: String(ratelimitLimit),
      // A stage's own settings (the alerts stage: USAGE_ANALYTICS=off on one of its instances).
      ...vars,
    },
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  };
}

/** The workerd process Miniflare spawned (a child of this process). */
function workerdPid() {
  const children = readdirSync(`/proc/${process.pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${process.pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean),
  );
  return children.map(Number).find((pid) => readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "workerd");
}

/** The worker's direct URL (and the second worker's, `urlB`, when there is one) and the workerd pid. */
async function describe() {
  if (!config.secondWorker) return { url: (await mf.unsafeGetDirectURL()).href, workerdPid: workerdPid() };
  return {
    url: (await mf.unsafeGetDirectURL(WORKER_A)).href,
    urlB: (await mf.unsafeGetDirectURL(WORKER_B)).href,
    workerdPid: workerdPid(),
  };
}

const commands = {
  async start(options) {
    config = options;
    mf = new Miniflare(miniflareOptions(config));
    await mf.ready;
    const migrations = await applyMigrations(await mf.getD1Database("DB"), options.migrationsDir);
    return { ...(await describe()), migrations };
  },
  /** Restarts workerd (a fresh isolate, so empty in-isolate caches); D1 data persists on disk. */
  async restart(changes) {
    config = { ...config, ...changes };
    await mf.setOptions(miniflareOptions(config));
    await mf.ready;
    return describe();
  },
  async seed({ rows }) {
    await insertKeyRows(await mf.getD1Database("DB"), rows);
    return rows.length;
  },
  /** Rows of any table (objects keyed by column name), inserted straight into D1. */
  async insert({ table, rows }) {
    await insertRows(await mf.getD1Database("DB"), table, rows);
    return rows.length;
  },
  /** Fires one scheduled event (the cron) at the worker and waits for it, waitUntil work included. */
  async scheduled({ scheduledTime, cron }) {
    const worker = await mf.getWorker();
    const started = performance.now();
    const result = await worker.scheduled({ scheduledTime: new Date(scheduledTime), cron });
    return { outcome: result.outcome, wallMs: performance.now() - started };
  },
  async query({ sql }) {
    const { results } = await (await mf.getD1Database("DB")).prepare(sql).all();
    return results;
  },
  async stop() {
    await mf?.dispose();
    mf = undefined;
    return true;
  },
};

process.on("message", async ({ id, cmd, args }) => {
  try {
    process.send({ id, result: await commands[cmd](args) });
  } catch (error) {
    process.send({ id, error: String(error?.stack ?? error) });
  }
});
process.on("disconnect", async () => {
  await mf?.dispose().catch(() => {});
  process.exit(0);
});
