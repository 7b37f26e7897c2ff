// The scheduler stage (issue 9; issue 13's scale): 1,000,000 keys and 100,000 credentials with a rotation schedule,
// 10,000 keys and 1,000 credentials of them due (the drain's length does not depend on what is stored, only due).
// Fires the worker's cron handler once and measures that tick (D1 calls, workerd CPU, wall time), then fires
// further ticks, each one cron interval later by its scheduled time, until every due item has a Workflow
// instance, and checks the result: one rotation run per due item, one instance per run, nothing else touched.
// Runs alone with BENCH_ONLY=scheduler. See bench/README.md, "The rotation scheduler".
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startInstance } from "./instance.mjs";
import { randomBase62 } from "./keys.mjs";
import { table } from "./report.mjs";
import { cpuSeconds, log, sleep } from "./system.mjs";

const DAY_MS = 86_400_000;

export const SCHEDULER_SETTINGS = {
  keys: Number(process.env.BENCH_SCALE_KEYS ?? 1_000_000),
  credentials: Number(process.env.BENCH_SCALE_CREDENTIALS ?? 100_000),
  /**
   * Due at the first tick: as many as when 100,000 keys and 10,000 credentials were stored with 10% due, so the
   * drain keeps its length and the larger tables show as what they cost the tick's claims (index range scans on
   * next_rotation_at: rows stored but not due should cost nothing).
   */
  dueKeys: 10_000,
  dueCredentials: 1_000,
  /** Every item rotates every 90 days; the schedule is spread as if the cron had been down for the last 9 days. */
  rotationDays: 90,
  /** src/lifecycle/scheduler.ts SCHEDULER_CHUNK and SCHEDULER_MAX_CHUNKS: the expected ceiling per tick. */
  chunk: 100,
  maxChunks: 50,
  /**
   * Workflows' documented creation rate on Workers Paid: 100 instances per second per workflow (300 per account);
   * above it the service answers 429. The recorder does not enforce it: the report compares each tick's rate.
   */
  createRatePerWorkflow: 100,
  /** A safety stop: the drain must end well before this (the bench fails if it does not). */
  maxTicks: 20,
};

/** The cron interval in seconds, from wrangler.toml's `crons` (the `*\/N * * * *` form this project uses). */
export function cronInterval(root) {
  const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
  const cron = /^crons\s*=\s*\[\s*"([^"]+)"\s*\]/m.exec(toml)?.[1];
  const minutes = /^\*\/(\d+) \* \* \* \*$/.exec(cron ?? "")?.[1];
  if (!minutes) throw new Error(`wrangler.toml: expected one cron of the form "*/N * * * *", found ${cron}`);
  return { cron, seconds: Number(minutes) * 60 };
}

/** Waits until workerd has used (almost) no CPU for 200 ms. */
async function settle(pid) {
  for (let i = 0; i < 100; i++) {
    const before = cpuSeconds(pid);
    await sleep(200);
    if (cpuSeconds(pid) - before <= 0.01) return;
  }
  throw new Error("workerd did not become idle within 20 s");
}

/**
 * Puts every stored key on a 90-day schedule: exactly `due` of them (chosen by their random hash) became due
 * in the 9 days before `t0` (as if the cron had been down that long), the others come due between 1 hour and 81
 * days after it.
 */
async function scheduleKeys(host, t0, due) {
  const { rotationDays } = SCHEDULER_SETTINGS;
  const pastSpan = Math.round(rotationDays * 0.1 * DAY_MS) - 60_000;
  const futureSpan = Math.round(rotationDays * 0.9 * DAY_MS) - 3_600_000;
  await host.call({
    cmd: "query",
    args: {
      sql: `UPDATE api_keys SET rotation_days = ${rotationDays},
              next_rotation_at = CASE WHEN id IN (SELECT id FROM api_keys ORDER BY hash LIMIT ${due})
                THEN ${t0 - 60_000} - abs(random() % ${pastSpan})
                ELSE ${t0 + 3_600_000} + abs(random() % ${futureSpan}) END`,
    },
  });
}

/**
 * `count` credentials, copies of the one the API stored (same tenant and shape, new ids), each with a
 * "provider" rotation of the services that have a provider rotator; `due` of them due before `t0`. None is due
 * for a live re-test during the stage (next_test_at a day out), so the tick's re-test enqueue finds nothing.
 */
async function seedCredentials(host, t0, count, due) {
  const [template] = await host.call({ cmd: "query", args: { sql: "SELECT * FROM credentials LIMIT 1" } });
  const services = ["aws-s3", "twilio-api-key", "sendgrid"];
  const { rotationDays } = SCHEDULER_SETTINGS;
  const spread = (from, span) => from + Math.floor(Math.random() * span);
  const credentials = [];
  const rotations = [];
  for (let i = 0; i < count; i++) {
    const id = `cred_${randomBase62(22)}`;
    const service = services[i % services.length];
    credentials.push({
      ...template,
      id,
      service_id: service,
      environment: "production",
      name: `bench-${service}-${i}`,
      next_test_at: spread(t0 + DAY_MS, DAY_MS),
    });
    rotations.push({
      credential_id: id,
      tenant_id: template.tenant_id,
      method: "provider",
      rotation_days: rotationDays,
      overlap_seconds: 86_400,
      next_rotation_at:
        i < due
          ? spread(t0 - rotationDays * 0.1 * DAY_MS, rotationDays * 0.1 * DAY_MS - 60_000)
          : spread(t0 + 3_600_000, rotationDays * 0.9 * DAY_MS - 3_600_000),
      last_rotated_at: null,
      rotator_credential_id: template.id,
      settings: "{}",
      endpoint_url: null,
      sealed_endpoint_secret: null,
      created_at: t0 - rotationDays * DAY_MS,
      updated_at: t0 - rotationDays * DAY_MS,
    });
  }
  for (const [table, rows] of [
    ["credentials", credentials],
    ["credential_rotations", rotations],
  ]) {
    for (let i = 0; i < rows.length; i += 20_000) {
      await host.call({ cmd: "insert", args: { table, rows: rows.slice(i, i + 20_000) } });
    }
  }
}

/** The run id (`<subject>-<next_rotation_at>`) of every due item, as the scheduler must name them. */
async function expectedRuns(host, t0) {
  const query = async (sql) => (await host.call({ cmd: "query", args: { sql } })).map((row) => row.run);
  return {
    key: await query(
      `SELECT id || '-' || next_rotation_at AS run FROM api_keys WHERE next_rotation_at < ${t0}`,
    ),
    credential: await query(
      `SELECT credential_id || '-' || next_rotation_at AS run FROM credential_rotations WHERE next_rotation_at < ${t0}`,
    ),
  };
}

/** The faster of the two workflows' creation rates over the tick's wall time, in instances per second. */
const peakRate = (tick) =>
  Math.max(...Object.values(tick.workflows).map((w) => w.created), 0) / (tick.wallMs / 1000);

const createdIn = (tick, binding) => tick.workflows[binding]?.created ?? 0;

/** Compares two id lists as sets; returns a description of the difference, or "" when equal. */
function difference(label, actual, expected) {
  const want = new Set(expected);
  const got = new Set(actual);
  const missing = expected.filter((id) => !got.has(id));
  const extra = actual.filter((id) => !want.has(id));
  const repeated = actual.length - got.size;
  if (!missing.length && !extra.length && !repeated) return "";
  return `${label}: ${missing.length} missing (e.g. ${missing.slice(0, 2)}), ${extra.length} unexpected (e.g. ${extra.slice(0, 2)}), ${repeated} repeated`;
}

async function checkDrained(instance, host, expected, lastTime) {
  const query = (sql) => host.call({ cmd: "query", args: { sql } });
  const runs = await query("SELECT id, subject_type, subject_id, state, step FROM rotation_runs");
  const ofType = (type) => runs.filter((run) => run.subject_type === type).map((run) => run.id);
  const stats = await (await fetch(new URL("/__bench/scheduler?ids=1", instance.url))).json();
  const [{ n: stillDue }] = await query(
    `SELECT (SELECT count(*) FROM api_keys WHERE next_rotation_at <= ${lastTime})
          + (SELECT count(*) FROM credential_rotations WHERE next_rotation_at <= ${lastTime}) AS n`,
  );
  const [{ n: subjects }] = await query("SELECT count(DISTINCT subject_id) AS n FROM rotation_runs");
  const problems = [
    difference("rotation_runs of keys", ofType("key"), expected.key),
    difference("rotation_runs of credentials", ofType("credential"), expected.credential),
    difference("KEY_ROTATION instances", stats.created.KEY_ROTATION, expected.key),
    difference("CREDENTIAL_ROTATION instances", stats.created.CREDENTIAL_ROTATION, expected.credential),
    subjects === runs.length ? "" : `${runs.length} runs for ${subjects} subjects`,
    stillDue === 0 ? "" : `${stillDue} items still due after the drain`,
    runs.every((run) => run.state === "in_progress" && run.step === "queued")
      ? ""
      : "a run is not in_progress/queued",
  ].filter(Boolean);
  if (problems.length) throw new Error(`scheduler stage: the drain is wrong:\n  ${problems.join("\n  ")}`);
  return {
    runs: runs.length,
    instances: stats.created.KEY_ROTATION.length + stats.created.CREDENTIAL_ROTATION.length,
  };
}

/** Starts its own instance, seeds it, drains the due items tick by tick, checks, stops the instance. */
export async function runSchedulerStage(shared) {
  const { root, ratelimitLimit } = shared;
  const settings = SCHEDULER_SETTINGS;
  const interval = cronInterval(root);
  const instance = await startInstance({
    ...shared,
    name: "scheduler",
    storedKeys: settings.keys,
    options: { entry: "scheduler-entry.mjs", leanRatelimit: false, ratelimitLimit },
  });
  try {
    const { host } = instance;
    // The first tick fires on a cron boundary after everything the API wrote, as a deployed cron would.
    const t0 = Math.ceil((Date.now() + 60_000) / (interval.seconds * 1000)) * interval.seconds * 1000;
    const { dueKeys, dueCredentials } = settings;
    const seeding = performance.now();
    await scheduleKeys(host, t0, dueKeys);
    await seedCredentials(host, t0, settings.credentials, dueCredentials);
    const expected = await expectedRuns(host, t0);
    if (expected.key.length !== dueKeys || expected.credential.length !== dueCredentials) {
      throw new Error(
        `seeded ${expected.key.length} due keys and ${expected.credential.length} due credentials`,
      );
    }
    const [{ n: credentialCount }] = await host.call({
      cmd: "query",
      args: { sql: "SELECT count(*) AS n FROM credential_rotations" },
    });
    const seedSeconds = {
      keys: instance.seedSeconds,
      schedule: (performance.now() - seeding) / 1000,
    };
    log(
      `scheduler: ${instance.storedCount} keys (${dueKeys} due), ${credentialCount} credentials with a provider rotation (${dueCredentials} due); ` +
        `keys seeded in ${seedSeconds.keys.toFixed(0)} s, schedules and credentials in ${seedSeconds.schedule.toFixed(0)} s`,
    );

    // Tick after tick until one starts nothing: that last one also shows a repeated tick is harmless.
    const ticks = [];
    for (let k = 0; k < settings.maxTicks && ticks.at(-1)?.started !== 0; k++) {
      const scheduledTime = t0 + k * interval.seconds * 1000;
      await settle(instance.workerdPid);
      const cpuBefore = cpuSeconds(instance.workerdPid);
      const { outcome, wallMs } = await host.call({
        cmd: "scheduled",
        args: { scheduledTime, cron: interval.cron },
      });
      await settle(instance.workerdPid);
      const cpuMs = (cpuSeconds(instance.workerdPid) - cpuBefore) * 1000;
      const stats = await (await fetch(new URL("/__bench/scheduler", instance.url))).json();
      const tick = stats.ticks[k];
      if (outcome !== "ok" || tick?.error || tick?.scheduledTime !== scheduledTime) {
        throw new Error(`scheduler tick ${k + 1}: outcome ${outcome}, ${tick?.error ?? "no tick recorded"}`);
      }
      const started = createdIn(tick, "KEY_ROTATION") + createdIn(tick, "CREDENTIAL_ROTATION");
      ticks.push({ ...tick, started, cpuMs, wallMs, offsetS: k * interval.seconds });
      log(
        `scheduler: tick ${k + 1} started ${started} rotations with ${tick.d1.calls} D1 calls, ${Math.round(cpuMs)} ms CPU, ${Math.round(wallMs)} ms`,
      );
    }
    if (ticks.at(-1).started !== 0) throw new Error(`scheduler: not drained after ${ticks.length} ticks`);
    const checked = await checkDrained(
      instance,
      host,
      expected,
      t0 + (ticks.length - 1) * interval.seconds * 1000,
    );
    const [{ n: reminders }] = await host.call({
      cmd: "query",
      args: { sql: "SELECT count(*) AS n FROM events WHERE kind = 'rotation.upcoming'" },
    });
    return {
      settings,
      interval,
      keys: instance.storedCount,
      credentials: credentialCount,
      due: { keys: dueKeys, credentials: dueCredentials },
      seedSeconds,
      ticks,
      checked,
      reminders,
    };
  } finally {
    await instance.stop();
  }
}

const int = (n) => Math.round(n).toLocaleString("en-US");

/** The printed table and the JSON fields of the scheduler stage. */
export function schedulerReport(result) {
  const { ticks, interval, due } = result;
  const productive = ticks.filter((tick) => tick.started > 0);
  const last = productive.at(-1);
  const first = ticks[0];
  const drainSeconds = productive.length * interval.seconds + last.wallMs / 1000;
  const fromFirstTick = (productive.length - 1) * interval.seconds + last.wallMs / 1000;
  const subrequests = (tick) =>
    tick.d1.calls +
    Object.values(tick.workflows).reduce((total, w) => total + w.createBatch + w.create + w.get, 0) +
    tick.queue.calls;
  const lines = [
    `Rotation scheduler (issue 9): ${int(result.keys)} keys and ${int(result.credentials)} credentials on a ${result.settings.rotationDays}-day schedule, ` +
      `${int(due.keys)} keys and ${int(due.credentials)} credentials due; cron "${interval.cron}" (${interval.seconds} s);`,
    "one tick = the worker's scheduled handler (rotation claims, re-test enqueue, purges, the alert tick) with the event's time as now;",
    "Workflows and the re-test queue are recorders in the isolate (bench/scheduler-entry.mjs); CPU = workerd process (worker + D1 simulator)",
    table(
      [
        "tick",
        "at",
        "keys started",
        "credentials started",
        "D1 calls",
        "statements",
        "createBatch",
        "subrequests",
        "CPU ms",
        "wall ms",
        "instances/s",
      ],
      ticks.map((tick, i) => [
        String(i + 1),
        `+${tick.offsetS} s`,
        int(createdIn(tick, "KEY_ROTATION")),
        int(createdIn(tick, "CREDENTIAL_ROTATION")),
        int(tick.d1.calls),
        int(tick.d1.statements),
        int(Object.values(tick.workflows).reduce((total, w) => total + w.createBatch, 0)),
        int(subrequests(tick)),
        int(tick.cpuMs),
        int(tick.wallMs),
        int(peakRate(tick)),
      ]),
    ),
    "",
    "Tick 1's D1 calls by kind (a batch is one call)",
    table(
      ["kind", "calls", "statements", "wall ms"],
      Object.entries(first.d1.byKind)
        .sort(([, a], [, b]) => b.ms - a.ms)
        .map(([kind, k]) => [kind, int(k.calls), int(k.statements), int(k.ms)]),
    ),
    `Drain: ${productive.length} tick(s) start a Workflow for all ${int(due.keys + due.credentials)} due items; the last ends ` +
      `${fromFirstTick.toFixed(1)} s after the first tick fires, ${drainSeconds.toFixed(1)} s after the items fell due at worst ` +
      "(just after a tick: one more interval)",
    `Checked: ${int(result.checked.runs)} rotation runs, one per due item, named <item>-<due time>; ${int(result.checked.instances)} ` +
      "Workflow instances, one per run; nothing left due; a further tick starts nothing",
    `Workflow creation: up to ${int(Math.max(...ticks.map(peakRate)))} instances/s for one workflow in a tick; ` +
      `the documented limit is ${result.settings.createRatePerWorkflow}/s per workflow (429 above it), not enforced here`,
    `Tick 1 also recorded ${int(result.reminders)} rotation.upcoming reminders (items due within 7 days, first tick after seeding)`,
    `Seeded straight into D1: ${int(result.keys)} keys in ${result.seedSeconds.keys.toFixed(0)} s, their schedules and ` +
      `${int(result.credentials)} credentials with rotations in ${result.seedSeconds.schedule.toFixed(0)} s`,
  ];
  const summary = {
    scheduler_tick_queries: first.d1.calls,
    scheduler_tick_cpu_ms: Math.round(first.cpuMs),
    scheduler_drain_seconds: Math.round(drainSeconds * 10) / 10,
    scheduler_tick_statements: first.d1.statements,
    scheduler_tick_subrequests: subrequests(first),
    scheduler_tick_wall_ms: Math.round(first.wallMs),
    scheduler_tick_started: first.started,
    scheduler_ticks_to_drain: productive.length,
    scheduler_peak_create_rate_per_s: Math.round(Math.max(...ticks.map(peakRate))),
    scheduler_keys: result.keys,
    scheduler_credentials: result.credentials,
    scheduler_due: due.keys + due.credentials,
  };
  return { lines, summary };
}
