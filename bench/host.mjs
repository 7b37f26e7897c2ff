// The harness, run as its own process (forked by run.mjs): Miniflare starts workerd with the built
// worker and its bindings, and hands back a direct socket to the worker. The load generator talks to
// workerd on that socket, so no Node code and no Miniflare entry worker (request logging, pretty
// errors, cf injection) sits in the request path. This process only answers set-up commands over IPC.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { applyMigrations, insertKeyRows } from "./seed.mjs";

let mf;
let config;

function miniflareOptions({
  buildDir,
  persistDir,
  worker,
  secrets,
  leanRatelimit,
  ratelimitLimit,
  inspectorPort,
}) {
  const ratelimit = (namespaceId) => ({
    namespace_id: namespaceId,
    simple: { limit: ratelimitLimit, period: 60 },
  });
  return convertV4MiniflareOptions({
    host: "127.0.0.1",
    port: 0,
    logRequests: false,
    telemetry: { enabled: false },
    inspectorPort,
    resourcePersistencePath: persistDir,
    modulesRoot: buildDir,
    modules: [
      { type: "ESModule", path: join(buildDir, "bench-entry.mjs") },
      { type: "ESModule", path: join(buildDir, "index.js") },
    ],
    compatibilityDate: worker.compatibilityDate,
    compatibilityFlags: worker.compatibilityFlags,
    d1Databases: { DB: "keywarden-bench" },
    durableObjects: {
      KEY_LIMITER: { className: "KeyLimiter", useSQLite: true },
      WIZARD_SESSION: { className: "WizardSession", useSQLite: true },
      AUDIT_CHAIN: { className: "AuditChain", useSQLite: true },
    },
    // Both limiters get a limit no benchmark can reach; see bench-entry.mjs for the in-isolate variant.
    ratelimits: { TENANT_RATE_LIMITER: ratelimit("1001"), AUTH_FAILURE_LIMITER: ratelimit("1002") },
    bindings: {
      ...worker.vars,
      ...secrets,
      BENCH_LEAN_RATELIMIT: leanRatelimit ? "1" : "0",
      BENCH_RATELIMIT_LIMIT: String(ratelimitLimit),
    },
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  });
}

/** The workerd process Miniflare spawned (a child of this process). */
function workerdPid() {
  const children = readdirSync(`/proc/${process.pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${process.pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean),
  );
  return children.map(Number).find((pid) => readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "workerd");
}

async function describe() {
  return { url: (await mf.unsafeGetDirectURL()).href, workerdPid: workerdPid() };
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
