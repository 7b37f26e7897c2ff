// The alerts stage (issue 11), alone with BENCH_ONLY=alerts. Two parts:
//
// 1. One cron tick over 1,000,000 keys with hourly usage counts. An instance of the same build (entry
//    scheduler-entry.mjs: D1 behind a call counter, Workflows and Queues as recorders) is seeded straight into
//    D1 with SQL: every active key (ALERTS_SETTINGS.active, by default 100,000) has usage rows for the current
//    hour (so far), the last closed hour and the hour before (the one the tick folds into the baselines), and four
//    weeks of hour-of-week baselines for those three slots; the tenant has one stored rule of every counter kind; SPIKED keys carry 10x their usual volume in
//    the current hour. The worker's scheduled handler is fired once with the event's time as now (the whole
//    handler: rotation claims, re-tests, purges, the alert tick) and again one cron interval later.
//    Checked: every key's folded slot moved to the folded hour, exactly the spiked keys have a firing
//    anomaly_volume alert, nothing else fired, and the second tick folds nothing and fires nothing.
// 2. Verify with the usage recorder on and off: two instances of the same build with 1,000 keys, one with
//    USAGE_ANALYTICS=off, warm verifies alternating round by round; CPU per request includes the recorder's
//    flush after the run.
import { join } from "node:path";
import { startInstance } from "./instance.mjs";
import { forkWorker } from "./ipc.mjs";
import { summarize, table } from "./report.mjs";
import { cronInterval } from "./scheduler.mjs";
import { cpuSeconds, log, machineBusySeconds, pinToCpu, sleep, stopChild } from "./system.mjs";

const HOUR_MS = 3_600_000;
const WEEK_MS = 168 * HOUR_MS;

export const ALERTS_SETTINGS = {
  keys: Number(process.env.BENCH_SCALE_KEYS ?? 1_000_000),
  /**
   * Keys with usage rows (the first by hash): 100,000 of the million, the most the tick covers in one go (the fold
   * reads FOLD_MAX_PAGES x FOLD_PAGE = 120,000 usage rows a tick, the rule snapshot COUNTER_MAX_PAGES x
   * COUNTER_PAGE = 300,000 over two hours). With every key active (BENCH_ALERTS_ACTIVE=1000000, the worst case:
   * 3,000,000 usage rows, about 10 minutes to seed here) tick 1 made 145 D1 calls but folded only 120,000 slots,
   * and the repeat tick folded none: each tick starts the hour's pages again from the first row, so the rows past
   * the page budget are never reached. See bench/README.md, "The alert tick".
   */
  active: Number(process.env.BENCH_ALERTS_ACTIVE ?? 100_000),
  spiked: 20,
  verifyKeys: 1_000,
};

/** src/monitoring/anomaly.ts hourOfWeek: 0 = Monday 00:00 UTC; 1970-01-01 was a Thursday (hour 72). */
const hourOfWeek = (at) => (Math.floor(at / HOUR_MS) + 72) % 168;

async function settle(pid, limit = 100) {
  for (let i = 0; i < limit; i++) {
    const before = cpuSeconds(pid);
    await sleep(200);
    if (cpuSeconds(pid) - before <= 0.01) return;
  }
  throw new Error("workerd did not become idle within 20 s");
}

/** Usage rows, baselines and rules for the tick at `now` (H = the hour `now` is in), for the first `active` keys by hash. */
async function seed(host, tenantId, now, active) {
  const query = (sql) => host.call({ cmd: "query", args: { sql } });
  const current = Math.floor(now / HOUR_MS) * HOUR_MS;
  const hours = [current - 2 * HOUR_MS, current - HOUR_MS, current];
  const spiked = `SELECT id FROM api_keys WHERE +tenant_id = '${tenantId}' ORDER BY hash LIMIT ${ALERTS_SETTINGS.spiked}`;
  // The active keys are the first `active` by hash; a million rows in one statement outlasted Miniflare's proxy
  // (fetch failed), so each statement takes one sixteenth of the hash range. `+tenant_id` keeps SQLite on the hash
  // index: on the tenant index every statement scanned all million keys (260 s for 100,000 active keys).
  const [{ hash: last }] = await query(
    `SELECT hash FROM api_keys WHERE +tenant_id = '${tenantId}' ORDER BY hash LIMIT 1 OFFSET ${active - 1}`,
  );
  const digits = "0123456789abcdef";
  const ranges = [...digits].map((digit, i) =>
    i + 1 < digits.length ? `hash >= '${digit}' AND hash < '${digits[i + 1]}'` : `hash >= '${digit}'`,
  );
  const eachRange = async (sql) => {
    for (const range of ranges)
      await query(
        sql(`(SELECT tenant_id, id, service_id FROM api_keys
              WHERE +tenant_id = '${tenantId}' AND ${range} AND hash <= '${last}')`),
      );
  };
  for (const hour of hours) {
    // 200-299 verifications an hour, 0-4 failed; the current hour is a third through.
    const share = hour === current ? 3 : 1;
    await eachRange(
      (
        keys,
      ) => `INSERT INTO usage_counts (tenant_id, key_id, service_id, bucket, start, valid, invalid, rate_limited)
      SELECT tenant_id, id, service_id, 'hour', ${hour}, (200 + abs(random() % 100)) / ${share}, abs(random() % 5), 0
      FROM ${keys}`,
    );
    // Four weeks of history for the slot: mean 250, standard deviation 30, failures 2 +- 2.
    await eachRange(
      (
        keys,
      ) => `INSERT INTO key_baselines (tenant_id, key_id, hour_of_week, samples, volume_mean, volume_var, failure_mean, failure_var, last_hour)
      SELECT tenant_id, id, ${hourOfWeek(hour)}, 4, 250, 900, 2, 4, ${hour - WEEK_MS}
      FROM ${keys}`,
    );
  }
  await query(`UPDATE usage_counts SET valid = 2500 WHERE bucket = 'hour' AND start = ${current}
    AND key_id IN (${spiked})`);
  const rules = [
    ["usage_threshold", { window: "hour", threshold: 100_000 }],
    ["failure_rate", { window: "hour", threshold_percent: 50, min_requests: 20 }],
    ["anomaly_volume", {}],
    ["anomaly_failures", {}],
    ["new_origin", {}],
    ["auth_failure_burst", { threshold: 25 }],
  ];
  const at = now - 30 * 24 * HOUR_MS;
  await query(`INSERT INTO alert_rules (id, tenant_id, name, kind, service_id, settings, channel_ids, severity, cooldown_seconds, enabled, created_at, updated_at)
    VALUES ${rules
      .map(
        ([kind, settings]) =>
          `('rul_bench_${kind}', '${tenantId}', '${kind}', '${kind}', NULL, '${JSON.stringify(settings)}', '[]', 'warning', 3600, 1, ${at}, ${at})`,
      )
      .join(", ")}`);
  return { hours, spiked: (await query(spiked)).map((row) => row.id) };
}

async function fireTick(instance, scheduledTime, cron, index) {
  await settle(instance.workerdPid);
  const cpuBefore = cpuSeconds(instance.workerdPid);
  const { outcome, wallMs } = await instance.host.call({ cmd: "scheduled", args: { scheduledTime, cron } });
  await settle(instance.workerdPid);
  const cpuMs = (cpuSeconds(instance.workerdPid) - cpuBefore) * 1000;
  const stats = await (await fetch(new URL("/__bench/scheduler", instance.url))).json();
  const tick = stats.ticks[index];
  if (outcome !== "ok" || tick?.error || tick?.scheduledTime !== scheduledTime) {
    throw new Error(`alerts tick ${index + 1}: outcome ${outcome}, ${tick?.error ?? "no tick recorded"}`);
  }
  return { ...tick, cpuMs, wallMs };
}

async function runTickPart(shared) {
  const { root, ratelimitLimit } = shared;
  const interval = cronInterval(root);
  const instance = await startInstance({
    ...shared,
    name: "alerts",
    storedKeys: ALERTS_SETTINGS.keys,
    options: { entry: "scheduler-entry.mjs", leanRatelimit: false, ratelimitLimit },
  });
  try {
    const { host } = instance;
    const query = (sql) => host.call({ cmd: "query", args: { sql } });
    const [{ tenant_id: tenantId }] = await query("SELECT tenant_id FROM api_keys LIMIT 1");
    // A cron boundary 20 minutes into an hour: the three hours seeded all start after the usage the API's own
    // requests recorded (the probe verify), so the seeded rows are the only ones in them.
    const now = Math.ceil(Date.now() / HOUR_MS) * HOUR_MS + 2 * HOUR_MS + 20 * 60_000;
    const active = Math.min(ALERTS_SETTINGS.active, instance.storedCount);
    const seeding = performance.now();
    const seeded = await seed(host, tenantId, now, active);
    const usageSeedSeconds = (performance.now() - seeding) / 1000;
    const [{ n: usageRows }] = await query("SELECT count(*) AS n FROM usage_counts WHERE bucket = 'hour'");
    log(
      `alerts: ${instance.storedCount} keys (seeded in ${instance.seedSeconds.toFixed(0)} s), ${active} of them active: ` +
        `${usageRows} hourly usage rows and their baselines (seeded in ${usageSeedSeconds.toFixed(0)} s), 6 counter rules; firing the cron`,
    );
    const first = await fireTick(instance, now, interval.cron, 0);
    log(
      `alerts: tick 1: ${first.d1.calls} D1 calls, ${Math.round(first.cpuMs)} ms CPU, ${Math.round(first.wallMs)} ms`,
    );
    const repeat = await fireTick(instance, now + interval.seconds * 1000, interval.cron, 1);
    log(
      `alerts: tick 2: ${repeat.d1.calls} D1 calls, ${Math.round(repeat.cpuMs)} ms CPU, ${Math.round(repeat.wallMs)} ms`,
    );

    const folded = seeded.hours[0];
    const [{ n: foldedSlots }] = await query(
      `SELECT count(*) AS n FROM key_baselines WHERE hour_of_week = ${hourOfWeek(folded)} AND last_hour = ${folded}`,
    );
    const alerts = await query("SELECT kind, state, subject_id, fired_at FROM alerts ORDER BY subject_id");
    const problems = [
      foldedSlots === active || (active === instance.storedCount && foldedSlots === active - 1)
        ? ""
        : `${foldedSlots} slots folded for ${active} active keys`,
      alerts.every((a) => a.kind === "anomaly_volume" && a.state === "firing" && a.fired_at === now)
        ? ""
        : `unexpected alerts: ${JSON.stringify(alerts.filter((a) => a.kind !== "anomaly_volume").slice(0, 3))}`,
      JSON.stringify(alerts.map((a) => a.subject_id)) === JSON.stringify([...seeded.spiked].sort())
        ? ""
        : `${alerts.length} alerts for ${seeded.spiked.length} spiked keys`,
    ].filter(Boolean);
    if (problems.length) throw new Error(`alerts stage: the tick is wrong:\n  ${problems.join("\n  ")}`);
    return {
      keys: instance.storedCount,
      active,
      seedSeconds: { keys: instance.seedSeconds, usage: usageSeedSeconds },
      usageRows,
      foldedSlots,
      alerts: alerts.length,
      first,
      repeat,
      interval,
    };
  } finally {
    await instance.stop();
  }
}

async function runVerifyPart(shared, settings) {
  const { bench, ratelimitLimit } = shared;
  const load = forkWorker(join(bench, "load.mjs"));
  const instances = [];
  try {
    for (const [name, vars] of [
      ["recorder-on", {}],
      ["recorder-off", { USAGE_ANALYTICS: "off" }],
    ]) {
      instances.push(
        await startInstance({
          ...shared,
          name,
          storedKeys: ALERTS_SETTINGS.verifyKeys,
          options: { leanRatelimit: true, ratelimitLimit, vars },
        }),
      );
    }
    pinToCpu(load.child.pid, 0);
    for (const instance of instances) pinToCpu(instance.workerdPid, 1);
    const ours = () =>
      [load.child.pid, ...instances.flatMap((i) => [i.workerdPid, i.host.child.pid])].reduce(
        (total, pid) => total + cpuSeconds(pid),
        (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
      );
    const measure = async (instance, label) => {
      log(`${instance.name}: ${label}`);
      const base = {
        connections: settings.connections,
        duration: settings.seconds,
        ...instance.specs.warm(),
      };
      await sleep(1_200); // the previous run's usage flush (USAGE_FLUSH_MS 1 s)
      await settle(instance.workerdPid);
      await load.call({ spec: { ...base, duration: settings.warmupSeconds } });
      await sleep(1_200);
      await settle(instance.workerdPid);
      const before = {
        workerd: cpuSeconds(instance.workerdPid),
        ours: ours(),
        machine: machineBusySeconds(),
      };
      const started = performance.now();
      const result = await load.call({ spec: base });
      const afterLoad = cpuSeconds(instance.workerdPid);
      // The recorder writes 1 s after the run: its flush is part of what a verify costs.
      await sleep(1_200);
      await settle(instance.workerdPid);
      const after = { workerd: cpuSeconds(instance.workerdPid), ours: ours(), machine: machineBusySeconds() };
      return {
        ...result,
        wall: (performance.now() - started) / 1000,
        workerdCpuSeconds: after.workerd - before.workerd,
        trailingCpuSeconds: after.workerd - afterLoad,
        otherCpuSeconds: Math.max(0, after.machine - before.machine - (after.ours - before.ours)),
      };
    };
    const runs = { on: [], off: [] };
    for (let round = 1; round <= settings.rounds; round++) {
      // Alternate which goes first, so drift on this shared machine hits both alike.
      const order = round % 2 ? ["on", "off"] : ["off", "on"];
      for (const which of order) {
        runs[which].push(await measure(instances[which === "on" ? 0 : 1], `verify warm (round ${round})`));
      }
    }
    const [onRows] = await instances[0].host.call({
      cmd: "query",
      args: { sql: "SELECT coalesce(sum(valid), 0) AS n FROM usage_counts WHERE bucket = 'hour'" },
    });
    const [offRows] = await instances[1].host.call({
      cmd: "query",
      args: { sql: "SELECT count(*) AS n FROM usage_counts" },
    });
    if (onRows.n === 0 || offRows.n !== 0) {
      throw new Error(`recorder on counted ${onRows.n} verifications, off wrote ${offRows.n} usage rows`);
    }
    return { on: summarize(runs.on), off: summarize(runs.off), counted: onRows.n };
  } finally {
    for (const instance of instances) await instance.stop();
    await stopChild(load.child);
  }
}

/** Both parts, each on its own instances. */
export async function runAlertsStage(shared) {
  const tick = await runTickPart(shared);
  const verify = await runVerifyPart(shared, shared.settings);
  return { tick, verify };
}

const int = (n) => Math.round(n).toLocaleString("en-US");

/** The printed table and the JSON fields of the alerts stage. */
export function alertsReport({ tick, verify }) {
  const { first, repeat } = tick;
  const kinds = Object.entries(first.d1.byKind)
    .sort(([, a], [, b]) => b.ms - a.ms)
    .map(([kind, k]) => [
      kind.length > 70 ? `${kind.slice(0, 67)}...` : kind,
      int(k.calls),
      int(k.statements),
      int(k.ms),
    ]);
  const ratio = verify.on.rps / verify.off.rps;
  const cpuRatio = verify.off.cpuUs / verify.on.cpuUs;
  const lines = [
    `Alert tick (issue 11): ${int(tick.keys)} keys, ${int(tick.active)} of them with hourly usage counts (${int(tick.usageRows)} rows: the current hour, ` +
      "the last closed one, the one the tick folds), four weeks of baselines, one rule of each counter kind; " +
      `${ALERTS_SETTINGS.spiked} keys spiked; one tick = the whole scheduled handler, CPU = workerd (worker + D1 simulator)`,
    table(
      ["tick", "D1 calls", "statements", "CPU ms", "wall ms"],
      [
        ["1", int(first.d1.calls), int(first.d1.statements), int(first.cpuMs), int(first.wallMs)],
        [
          "2 (repeat)",
          int(repeat.d1.calls),
          int(repeat.d1.statements),
          int(repeat.cpuMs),
          int(repeat.wallMs),
        ],
      ],
    ),
    `Seeded straight into D1: keys in ${tick.seedSeconds.keys.toFixed(0)} s, usage rows and baselines in ${tick.seedSeconds.usage.toFixed(0)} s`,
    "Tick 1's D1 calls by kind (a batch is one call)",
    table(["kind", "calls", "statements", "wall ms"], kinds),
    `Checked: ${int(tick.foldedSlots)} slots folded, ${tick.alerts} anomaly_volume alerts firing (one per spiked key, nothing else); ` +
      "the repeat folds and fires nothing",
    "",
    "Verify (warm key) with the usage recorder on and off (USAGE_ANALYTICS=off), two instances of the same build, " +
      `median of ${verify.on.runs.length} runs each; CPU per request includes the recorder's flush after the run`,
    table(
      ["recorder", "req/s", "p50 ms", "p99 ms", "workerd CPU us/req", "bad"],
      [
        [
          "on",
          int(verify.on.rps),
          verify.on.p50.toFixed(2),
          verify.on.p99.toFixed(2),
          int(verify.on.cpuUs),
          int(verify.on.bad),
        ],
        [
          "off",
          int(verify.off.rps),
          verify.off.p50.toFixed(2),
          verify.off.p99.toFixed(2),
          int(verify.off.cpuUs),
          int(verify.off.bad),
        ],
      ],
    ),
    `on/off: throughput ${ratio.toFixed(2)}x, CPU per request ${cpuRatio.toFixed(2)}x; ${int(verify.counted)} verifications counted with it on`,
  ];
  const summary = {
    alert_tick_queries: first.d1.calls,
    alert_tick_cpu_ms: Math.round(first.cpuMs),
    alert_tick_statements: first.d1.statements,
    alert_tick_wall_ms: Math.round(first.wallMs),
    alert_tick_keys: tick.keys,
    alert_tick_active_keys: tick.active,
    alert_tick_fired: tick.alerts,
    alert_repeat_tick_queries: repeat.d1.calls,
    alert_repeat_tick_cpu_ms: Math.round(repeat.cpuMs),
    verify_recorder_on_rps: Math.round(verify.on.rps),
    verify_recorder_off_rps: Math.round(verify.off.rps),
    verify_recorder_ratio: Math.round(ratio * 100) / 100,
    verify_recorder_cpu_ratio: Math.round(cpuRatio * 100) / 100,
  };
  return { lines, summary };
}
