// The alerts stage (issue 11), alone with BENCH_ONLY=alerts. Two parts:
//
// 1. Cron ticks over 1,000,000 keys with hourly usage counts. An instance of the same build (entry
//    scheduler-entry.mjs: D1 behind a call counter, Workflows and Queues as recorders) is seeded straight into
//    D1 with SQL: every active key (ALERTS_SETTINGS.active, by default 100,000) has usage rows for the current
//    hour (so far), the last closed hour and the hour before (the one the ticks fold into the baselines), and four
//    weeks of hour-of-week baselines for those three slots; the tenant has one stored rule of every counter kind;
//    SPIKED keys (the first and the last active ones by id, so the rules' pass must reach its end) carry 10x
//    their usual volume in the current hour. The worker's scheduled handler (the whole handler: rotation claims,
//    re-tests, purges, the alert tick) is fired at one cron interval after another, with the event's time as now,
//    until every slot is folded and every key evaluated, then once more.
//    Checked: every key's folded slot moved to the folded hour, exactly the spiked keys have a firing
//    anomaly_volume alert, nothing else fired, within the ticks the page budgets allow, and the repeat tick folds
//    nothing and fires nothing.
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
   * Keys with usage rows (the first by id): 100,000 by default, so the stage stays near two and a half minutes;
   * BENCH_ALERTS_ACTIVE=1000000 (every stored key, 3,000,000 hourly usage rows: the worst case) takes about five
   * and a half (bench/README.md). One tick folds FOLD_MAX_PAGES x FOLD_PAGE = 120,000 of an hour's rows and the rules read
   * COUNTER_MAX_PAGES x COUNTER_PAGE = 300,000 keys (both hours of each), so a million active keys take several
   * ticks; each continues where the last stopped (bench/README.md, "The alert tick").
   */
  active: Number(process.env.BENCH_ALERTS_ACTIVE ?? 100_000),
  /** Half of them the first active keys by id, half the last. */
  spiked: 20,
  /** The fold's and the rules' rows per tick (src/monitoring/baselines.ts, counter-snapshot.ts). */
  foldPerTick: 24 * 5000,
  counterKeysPerTick: 60 * 5000,
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

/**
 * Usage rows, baselines and rules for the ticks from `now` (H = the hour `now` is in), for the first `active` keys
 * by id. Each statement takes one sixteenth of the keys by id and writes their rows in key order, the three hours
 * (or slots) of a key together: the primary keys of usage_counts (tenant, key, bucket, start) and key_baselines
 * (key, slot) then grow at their end instead of taking a million inserts at random places (586 s for a million
 * active keys when the statements went by hash; `+tenant_id` keeps SQLite off the tenant index).
 */
async function seed(host, tenantId, now, active) {
  const query = (sql) => host.call({ cmd: "query", args: { sql } });
  const current = Math.floor(now / HOUR_MS) * HOUR_MS;
  const hours = [current - 2 * HOUR_MS, current - HOUR_MS, current];
  const chunk = Math.ceil(active / 16);
  // The last id of each sixteenth of the active keys (the last one: the last active key).
  const bounds = (
    await query(`SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM api_keys
      WHERE +tenant_id = '${tenantId}') WHERE (n % ${chunk} = 0 OR n = ${active}) AND n <= ${active} ORDER BY id`)
  ).map((row) => row.id);
  const eachRange = async (sql) => {
    let after = "";
    for (const last of bounds) {
      await query(
        sql(`api_keys k WHERE +k.tenant_id = '${tenantId}' AND k.id > '${after}' AND k.id <= '${last}'`),
      );
      after = last;
    }
  };
  // 200-299 verifications an hour, 0-4 failed; the current hour is a third through.
  const hourRows = hours.map((hour) => `SELECT ${hour} AS start, ${hour === current ? 3 : 1} AS share`);
  await eachRange(
    (
      keys,
    ) => `INSERT INTO usage_counts (tenant_id, key_id, service_id, bucket, start, valid, invalid, rate_limited)
      SELECT k.tenant_id, k.id, k.service_id, 'hour', h.start, (200 + abs(random() % 100)) / h.share, abs(random() % 5), 0
      FROM (${hourRows.join(" UNION ALL ")}) h, ${keys} ORDER BY k.id, h.start`,
  );
  // Four weeks of history for each slot: mean 250, standard deviation 30, failures 2 +- 2.
  const slotRows = hours.map((hour) => `SELECT ${hourOfWeek(hour)} AS slot, ${hour - WEEK_MS} AS last_hour`);
  await eachRange(
    (
      keys,
    ) => `INSERT INTO key_baselines (tenant_id, key_id, hour_of_week, samples, volume_mean, volume_var, failure_mean, failure_var, last_hour)
      SELECT k.tenant_id, k.id, s.slot, 4, 250, 900, 2, 4, s.last_hour
      FROM (${slotRows.join(" UNION ALL ")}) s, ${keys} ORDER BY k.id, s.slot`,
  );
  const half = ALERTS_SETTINGS.spiked / 2;
  const first = await query(
    `SELECT id FROM api_keys WHERE +tenant_id = '${tenantId}' AND id <= '${bounds.at(-1)}' ORDER BY id LIMIT ${half}`,
  );
  const last = await query(
    `SELECT id FROM api_keys WHERE +tenant_id = '${tenantId}' AND id <= '${bounds.at(-1)}' ORDER BY id DESC LIMIT ${half}`,
  );
  const spiked = [...first, ...last].map((row) => row.id);
  await query(`UPDATE usage_counts SET valid = 2500 WHERE tenant_id = '${tenantId}' AND bucket = 'hour'
    AND start = ${current} AND key_id IN (${spiked.map((id) => `'${id}'`).join(", ")})`);
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
  return { hours, spiked };
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
    const [{ n: tenantKeys }] = await query(
      `SELECT count(*) AS n FROM api_keys WHERE +tenant_id = '${tenantId}'`,
    );
    // Five minutes past an hour, at least two hours after the usage the API's own requests recorded (the probe
    // verify), so the seeded hours hold only the seeded rows; the ticks that follow stay inside the hour.
    const now = Math.ceil(Date.now() / HOUR_MS) * HOUR_MS + 2 * HOUR_MS + 5 * 60_000;
    const active = Math.min(ALERTS_SETTINGS.active, tenantKeys);
    const seeding = performance.now();
    const seeded = await seed(host, tenantId, now, active);
    const usageSeedSeconds = (performance.now() - seeding) / 1000;
    const [{ n: usageRows }] = await query("SELECT count(*) AS n FROM usage_counts WHERE bucket = 'hour'");
    log(
      `alerts: ${instance.storedCount} keys (seeded in ${instance.seedSeconds.toFixed(0)} s), ${active} of them active: ` +
        `${usageRows} hourly usage rows and their baselines (seeded in ${usageSeedSeconds.toFixed(0)} s), 6 counter rules; firing the cron`,
    );

    const folded = seeded.hours[0];
    const foldedSlots = async () =>
      (
        await query(
          `SELECT count(*) AS n FROM key_baselines WHERE hour_of_week = ${hourOfWeek(folded)} AND last_hour = ${folded}`,
        )
      )[0].n;
    const firing = async () => (await query("SELECT count(*) AS n FROM alerts WHERE state = 'firing'"))[0].n;
    // The ticks the page budgets allow: the fold's share of the hour's rows a tick, the rules' pass (the keys a
    // tick reads, then one tick for the empty pages that end it), the larger of the two.
    const allowed = Math.max(
      Math.ceil(active / ALERTS_SETTINGS.foldPerTick),
      Math.ceil((active + 1) / ALERTS_SETTINGS.counterKeysPerTick),
    );
    const ticks = [];
    const times = [];
    for (;;) {
      const at = now + ticks.length * interval.seconds * 1000;
      const tick = await fireTick(instance, at, interval.cron, ticks.length);
      times.push(at);
      ticks.push({ ...tick, folded: await foldedSlots(), firing: await firing() });
      const last = ticks.at(-1);
      log(
        `alerts: tick ${ticks.length}: ${last.d1.calls} D1 calls, ${Math.round(last.cpuMs)} ms CPU, ` +
          `${Math.round(last.wallMs)} ms; ${last.folded} slots folded, ${last.firing} alerts firing`,
      );
      if (last.folded === active && last.firing === seeded.spiked.length) break;
      if (ticks.length >= allowed + 1) break;
    }
    const repeatAt = now + ticks.length * interval.seconds * 1000;
    const repeat = await fireTick(instance, repeatAt, interval.cron, ticks.length);
    log(
      `alerts: repeat tick: ${repeat.d1.calls} D1 calls, ${Math.round(repeat.cpuMs)} ms CPU, ${Math.round(repeat.wallMs)} ms`,
    );

    const slots = await foldedSlots();
    const alerts = await query("SELECT kind, state, subject_id, fired_at FROM alerts ORDER BY subject_id");
    const problems = [
      slots === active ? "" : `${slots} slots folded for ${active} active keys`,
      ticks.length <= allowed
        ? ""
        : `${ticks.length} ticks to fold and evaluate everything, ${allowed} expected`,
      alerts.every((a) => a.kind === "anomaly_volume" && a.state === "firing" && times.includes(a.fired_at))
        ? ""
        : `unexpected alerts: ${JSON.stringify(alerts.filter((a) => a.kind !== "anomaly_volume").slice(0, 3))}`,
      JSON.stringify(alerts.map((a) => a.subject_id)) === JSON.stringify([...seeded.spiked].sort())
        ? ""
        : `${alerts.length} alerts for ${seeded.spiked.length} spiked keys`,
      repeat.d1.byKind["INSERT key_baselines"] ? "the repeat tick folded again" : "",
    ].filter(Boolean);
    if (problems.length) throw new Error(`alerts stage: the ticks are wrong:\n  ${problems.join("\n  ")}`);
    return {
      keys: instance.storedCount,
      active,
      seedSeconds: { keys: instance.seedSeconds, usage: usageSeedSeconds },
      usageRows,
      foldedSlots: slots,
      alerts: alerts.length,
      ticks,
      allowed,
      first: ticks[0],
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
  const { first, repeat, ticks } = tick;
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
    `Alert ticks (issues 11, 13): ${int(tick.keys)} keys, ${int(tick.active)} of them with hourly usage counts (${int(tick.usageRows)} rows: the current hour, ` +
      "the last closed one, the one the ticks fold), four weeks of baselines, one rule of each counter kind; " +
      `${ALERTS_SETTINGS.spiked} keys spiked (the first and the last by id); one tick = the whole scheduled handler, ` +
      "CPU = workerd (worker + D1 simulator); ticks one cron interval apart until every slot is folded and every key evaluated",
    table(
      [
        "tick",
        "D1 calls",
        "statements",
        "CPU ms",
        "wall ms",
        "usage reads ms",
        "slots folded",
        "alerts firing",
      ],
      [
        ...ticks.map((t, i) => [
          `${i + 1}`,
          int(t.d1.calls),
          int(t.d1.statements),
          int(t.cpuMs),
          int(t.wallMs),
          int(t.d1.byKind["SELECT usage_counts"]?.ms ?? 0),
          int(t.folded),
          int(t.firing),
        ]),
        [
          "repeat",
          int(repeat.d1.calls),
          int(repeat.d1.statements),
          int(repeat.cpuMs),
          int(repeat.wallMs),
          int(repeat.d1.byKind["SELECT usage_counts"]?.ms ?? 0),
          "",
          "",
        ],
      ],
    ),
    `Seeded straight into D1: keys in ${tick.seedSeconds.keys.toFixed(0)} s, usage rows and baselines in ${tick.seedSeconds.usage.toFixed(0)} s`,
    "Tick 1's D1 calls by kind (a batch is one call)",
    table(["kind", "calls", "statements", "wall ms"], kinds),
    `Checked: ${int(tick.foldedSlots)} slots folded and ${tick.alerts} anomaly_volume alerts firing (one per spiked key, nothing else) ` +
      `after ${ticks.length} ticks (the page budgets allow ${tick.allowed}); the repeat folds and fires nothing`,
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
    alert_ticks_to_complete: ticks.length,
    alert_tick_max_queries: Math.max(...ticks.map((t) => t.d1.calls)),
    alert_tick_max_cpu_ms: Math.round(Math.max(...ticks.map((t) => t.cpuMs))),
    alert_repeat_tick_queries: repeat.d1.calls,
    alert_repeat_tick_cpu_ms: Math.round(repeat.cpuMs),
    verify_recorder_on_rps: Math.round(verify.on.rps),
    verify_recorder_off_rps: Math.round(verify.off.rps),
    verify_recorder_ratio: Math.round(ratio * 100) / 100,
    verify_recorder_cpu_ratio: Math.round(cpuRatio * 100) / 100,
  };
  return { lines, summary };
}
