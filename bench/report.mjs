// Combines load runs into one figure per scenario and prints them as aligned tables.
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { edgeLines, edgeSummary, edgeTargetsMet } from "./edge.mjs";

export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * One figure from one or more runs of a scenario. Throughput and CPU per request are the median run's:
 * this machine has slow spells of a few seconds, and a median keeps one of them from moving a figure.
 * Percentiles are over every latency of every run; the CPU shares are over all runs together.
 */
export function summarize(runs) {
  const sum = (key) => runs.reduce((total, run) => total + run[key], 0);
  const seconds = sum("seconds");
  const wall = sum("wall");
  const latencies = Float64Array.from(runs.flatMap((run) => Array.from(run.latencies))).sort();
  const perResponseUs = (key) => median(runs.map((run) => (run[key] / run.latencies.length) * 1e6));
  const perRunRps = runs.map((run) => run.ok / run.seconds);
  return {
    runs: perRunRps,
    rps: median(perRunRps),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    requests: latencies.length,
    bad: sum("bad") + sum("errors") + sum("timeouts"),
    samples: runs.flatMap((run) => run.samples).slice(0, 3),
    wrapped: runs.some((run) => run.wrapped),
    /** workerd CPU time per response, in microseconds: what one request costs, whatever else runs. */
    cpuUs: perResponseUs("workerdCpuSeconds"),
    trailingCpuUs: perResponseUs("trailingCpuSeconds"),
    serverCpu: sum("workerdCpuSeconds") / wall,
    otherCpu: sum("otherCpuSeconds") / wall,
    loadCpu: runs.reduce((total, run) => total + run.loadCpu * run.seconds, 0) / seconds,
  };
}

const int = (n) => Math.round(n).toLocaleString("en-US");
const ms = (n) => n.toFixed(2);
const pct = (n) => `${Math.round(n * 100)}%`;
const ratio = (n) => `${n.toFixed(2)}x`;
/** Half the range of the per-run throughputs, relative to the figure: how much the runs disagreed. */
const spread = (f) =>
  f.runs.length < 2
    ? "-"
    : `±${Math.round(((Math.max(...f.runs) - Math.min(...f.runs)) / 2 / f.rps) * 100)}%`;
const change = (to, from) => `${to >= from ? "+" : ""}${((to / from - 1) * 100).toFixed(1)}%`;

export function table(head, rows) {
  const widths = head.map((title, i) => Math.max(title.length, ...rows.map((row) => String(row[i]).length)));
  const line = (cells) =>
    cells
      .map((cell, i) => (i === 0 ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i])))
      .join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** Scenario rows ([label, figure]) with ratios to `baseline` (a figure). */
function scenarioTable(rows, baseline) {
  return table(
    [
      "scenario",
      "req/s",
      "runs",
      "p50 ms",
      "p99 ms",
      "vs baseline",
      "CPU us/req",
      "vs baseline",
      "requests",
      "wrong",
      "workerd",
      "loadgen",
      "others",
    ],
    rows.map(([label, f]) => [
      label,
      int(f.rps),
      spread(f),
      ms(f.p50),
      ms(f.p99),
      ratio(f.rps / baseline.rps),
      int(f.cpuUs),
      ratio(baseline.cpuUs / f.cpuUs),
      int(f.requests),
      f.bad + (f.wrapped ? " (keys repeated!)" : ""),
      pct(f.serverCpu),
      pct(f.loadCpu),
      pct(f.otherCpu),
    ]),
  );
}

const cpuWithWrite = (f) =>
  f.trailingCpuUs > 0 ? `${int(f.cpuUs)} (${int(f.trailingCpuUs)})` : int(f.cpuUs);

/**
 * Rows of [label, figure with 1,000 keys, figure with 1,000,000 keys], each instance's ratios against its
 * own /healthz. "(write)" is the part of the CPU per request spent after the last response: the batched
 * usage write (cold passes only).
 */
function scalingTable(rows, baselines) {
  return table(
    [
      "verify",
      "1k: req/s",
      "runs",
      "vs base",
      "p50 ms",
      "p99 ms",
      "CPU us",
      "1M: req/s",
      "runs",
      "vs base",
      "p50 ms",
      "p99 ms",
      "CPU us",
      "req/s",
      "CPU us",
    ],
    rows.map(([label, small, large]) => [
      label,
      int(small.rps),
      spread(small),
      ratio(small.rps / baselines.small.rps),
      ms(small.p50),
      ms(small.p99),
      cpuWithWrite(small),
      int(large.rps),
      spread(large),
      ratio(large.rps / baselines.large.rps),
      ms(large.p50),
      ms(large.p99),
      cpuWithWrite(large),
      change(large.rps, small.rps),
      change(large.cpuUs, small.cpuUs),
    ]),
  );
}

/** Every wrong response, timeout or repeated cold key, spelled out (empty when the run was clean). */
function problems(named) {
  return named
    .filter(([, f]) => f.bad > 0 || f.wrapped)
    .map(
      ([label, f]) =>
        `! ${label}: ${f.bad} wrong/failed responses${f.wrapped ? ", bodies wrapped around (keys repeated)" : ""}` +
        f.samples.map((sample) => `\n    e.g. ${sample}`).join(""),
    );
}

/**
 * The best ratio any body-carrying POST could reach against the baseline: a request that does all that
 * /healthz does plus the extra that workerd itself spends on receiving and reading a JSON body
 * (measured with the app out of the way). Per-request time is 1/throughput at saturation.
 */
function postFloor(base, rawGet, rawPost) {
  const extraSeconds = 1 / rawPost.rps - 1 / rawGet.rps;
  const extraCpu = rawPost.cpuUs - rawGet.cpuUs;
  return {
    rps: 1 / base.rps / (1 / base.rps + extraSeconds),
    cpu: base.cpuUs / (base.cpuUs + extraCpu),
  };
}

const count = (n) => n.toLocaleString("en-US");
const signed = (n) => `${n >= 0 ? "+" : ""}${(n * 100).toFixed(1)}%`;
const round3 = (n) => Math.round(n * 1000) / 1000;

/**
 * Stage 2 (bench/scale.mjs): 1,000 vs 1,000,000 keys stored (and 1 vs 100,000 credentials). The printed tables
 * and the JSON fields; the issue's target is CPU per request within 15% of the 1k figure, warm and cold.
 */
export function scaleReport(result, settings) {
  const { figures: f, smallCount, largeCount, largeCredentials, seedSeconds, passSize } = result;
  const rps = (a, b) => round3(a.rps / b.rps);
  const change = (to, from, key) => round3(to[key] / from[key] - 1);
  const us = (x) => Math.round(x.cpuUs);
  const lines = [
    `Verify with ${count(smallCount)} vs ${count(largeCount)} keys stored (the big instance also holds ${count(largeCredentials)} sealed credentials;`,
    `seeded straight into D1: keys in ${seedSeconds.keys.toFixed(0)} s, credentials in ${seedSeconds.credentials.toFixed(0)} s), alternating between two`,
    `instances: ${settings.rounds} warm runs and ${settings.coldRounds} cold passes over the same ${passSize} keys each; ratios to each instance's own`,
    "/healthz, measured in the same rounds; last two columns: 1k -> 1M",
    scalingTable(
      [
        ["/healthz", f.healthz1k, f.healthz1m],
        ["warm cache", f.warm1k, f.warm1m],
        ["cold cache", f.cold1k, f.cold1m],
      ],
      { small: f.healthz1k, large: f.healthz1m },
    ),
    "",
    `Credential vault with 1 vs ${count(largeCredentials)} credentials in the tenant (stage 1's scenarios, ${settings.vaultConnections} connections)`,
    scalingTable(
      [
        ["/healthz", f.vaultHealthz1k, f.vaultHealthz1m],
        ["credential reveal", f.reveal1k, f.reveal1m],
        ["credential store", f.store1k, f.store1m],
      ],
      { small: f.vaultHealthz1k, large: f.vaultHealthz1m },
    ),
    "",
    scenarioTable(
      [
        ["1M: /healthz (baseline for this table)", f.healthz1m],
        ["1M: warm cache", f.warm1m],
        ["1M: cold cache (passes)", f.cold1m],
        ["1M: cold cache, steady state*", f.coldSteady1m],
      ],
      f.healthz1m,
    ),
    "  * one continuous run over keys never used before, so the batched usage writes happen during the run",
  ];
  const issues = problems(Object.entries(f).map(([k, x]) => [`stage 2 ${k}`, x]));
  if (issues.length) lines.push(...issues);
  const summary = {
    scale_keys: largeCount,
    scale_credentials: largeCredentials,
    scale_seed_keys_seconds: Math.round(seedSeconds.keys),
    scale_seed_credentials_seconds: Math.round(seedSeconds.credentials),
    verify_warm_ratio_1k: rps(f.warm1k, f.healthz1k),
    verify_cold_ratio_1k: rps(f.cold1k, f.healthz1k),
    verify_warm_ratio_1m: rps(f.warm1m, f.healthz1m),
    verify_cold_ratio_1m: rps(f.cold1m, f.healthz1m),
    verify_cold_steady_ratio_1m: rps(f.coldSteady1m, f.healthz1m),
    verify_warm_cpu_change_1k_to_1m: change(f.warm1m, f.warm1k, "cpuUs"),
    verify_cold_cpu_change_1k_to_1m: change(f.cold1m, f.cold1k, "cpuUs"),
    warm_rps_change_1k_to_1m: change(f.warm1m, f.warm1k, "rps"),
    cold_rps_change_1k_to_1m: change(f.cold1m, f.cold1k, "rps"),
    reveal_rps_1k: Math.round(f.reveal1k.rps),
    reveal_rps_1m: Math.round(f.reveal1m.rps),
    store_rps_1k: Math.round(f.store1k.rps),
    store_rps_1m: Math.round(f.store1m.rps),
    reveal_cpu_change_1k_to_1m: change(f.reveal1m, f.reveal1k, "cpuUs"),
    store_cpu_change_1k_to_1m: change(f.store1m, f.store1k, "cpuUs"),
    reveal_rps_change_1k_to_1m: change(f.reveal1m, f.reveal1k, "rps"),
    store_rps_change_1k_to_1m: change(f.store1m, f.store1k, "rps"),
    cpu_us_per_request: {
      warm_1k: us(f.warm1k),
      cold_1k: us(f.cold1k),
      warm_1m: us(f.warm1m),
      cold_1m: us(f.cold1m),
      cold_steady_1m: us(f.coldSteady1m),
      reveal_1k: us(f.reveal1k),
      reveal_1m: us(f.reveal1m),
      store_1k: us(f.store1k),
      store_1m: us(f.store1m),
    },
    scale_wrong_responses: Object.values(f).reduce((total, x) => total + x.bad, 0),
    targets_met: {
      warm_cpu_flat_within_15pct_1m: Math.abs(f.warm1m.cpuUs / f.warm1k.cpuUs - 1) <= 0.15,
      cold_cpu_flat_within_15pct_1m: Math.abs(f.cold1m.cpuUs / f.cold1k.cpuUs - 1) <= 0.15,
    },
  };
  return { lines, summary };
}

/** The whole printout: readable tables, then the summary as one JSON object on the last line. */
export function printReport(
  { main, vault, scaling, stock, smallCount, passSize, scheduler, keyring, alerts, roundtrips, latency },
  settings,
  root,
) {
  const miniflare = JSON.parse(
    readFileSync(join(root, "node_modules/miniflare/package.json"), "utf8"),
  ).version;
  const base = main.healthz;
  const scale = scaleReport(scaling, settings);
  const { cpu_us_per_request: scaleCpu, targets_met: scaleTargets, ...scaleFields } = scale.summary;
  const floor = postFloor(base, main.rawGet, main.rawPost);
  const out = [
    "Keywarden benchmark",
    `  harness     built worker (wrangler deploy --dry-run) on workerd via Miniflare ${miniflare}; load goes to`,
    "              the worker's direct socket: no wrangler dev proxy, no Miniflare entry worker, no Node in the path",
    `  load        autocannon in its own process, ${settings.connections} connections; each figure is the median of ${settings.rounds} runs of ${settings.seconds} s (after a`,
    `              ${settings.warmupSeconds} s warm-up each), taken round-robin with the figures it is compared with;`,
    `              ${availableParallelism()} CPUs: the load generator pinned to CPU 0, every workerd to CPU 1 (taskset); anything
              else running ("others") may use either`,
    `  limits      TENANT_RATE_LIMITER and AUTH_FAILURE_LIMITER raised to ${count(settings.ratelimitLimit)} per 60 s (wrangler.toml:`,
    "              600 and 30), answered by an in-isolate counter (bench/worker-entry.mjs) instead of Miniflare's",
    "              simulator, except in the last table",
    "  checks      every response's status and body is checked; 'wrong' counts those that did not match",
    `  cold        each request verifies a stored key no cache tier may answer: passes over the same ${passSize} keys,`,
    "              each pass's keys superseded through the change feed first (key_changes rows), so each is read from D1",
    "  CPU us/req  workerd CPU time per response, all isolates (worker, D1 and Durable Object simulators); for",
    "              cold passes it includes the batched usage write the pass leaves behind (in brackets: the",
    "              part after the last response). Its ratio, baseline CPU / scenario CPU, is the throughput",
    "              ratio workerd would show with a core to itself",
    "  runs        half the range of the per-run req/s, relative to the figure: how much the runs disagreed",
    "  each run starts with workerd idle (earlier traffic's usage write done)",
    "",
    `With ${count(smallCount)} keys stored; baseline = /healthz (runs: ${base.runs.map((r) => count(Math.round(r))).join(", ")} req/s)`,
    scenarioTable(
      [
        ["/healthz (baseline)", base],
        ["verify, valid key, warm cache", main.warm],
        ["verify, bad checksum", main.badChecksum],
        ["verify, unknown key (new each request)", main.unknown],
        ["verify, unknown key (same key, cached)", main.unknownCached],
        ["verify, cold cache", main.cold],
        ["workerd alone: GET, no app", main.rawGet],
        ["workerd alone: POST reading a JSON body, no app", main.rawPost],
        ["workerd alone: GET with the app's headers", main.rawGetHeaders],
        ["workerd alone: GET with the app's headers and a request id", main.rawGetHeadersId],
        ["one-route Hono app: GET with the app's edge middleware", main.honoFloor],
        ["workerd alone: POST with the app's headers", main.rawPostHeaders],
      ],
      base,
    ),
    "",
    ...edgeLines(main),
    `Ceiling for any verify that takes its key in a POST body: /healthz plus what the POST alone adds in workerd`,
    `(raw POST - raw GET per request) = ${ratio(floor.rps)} of the baseline's throughput, ${ratio(floor.cpu)} by CPU per request`,
    "",
    `Credential vault (issue 3), ${settings.vaultConnections} connections; baseline = /healthz measured alongside them`,
    scenarioTable(
      [
        ["/healthz (baseline for this table)", vault.healthz],
        ["credential reveal (read + decrypt, audited)", vault.reveal],
        ["credential store (validate + encrypt + write)", vault.store],
      ],
      vault.healthz,
    ),
    "",
    ...scale.lines,
    "",
    "For scale: Miniflare's simulated ratelimit binding (a SQLite Durable Object behind two fetch hops) in the path",
    scenarioTable(
      [
        ["/healthz (baseline for this table)", stock.healthz],
        ["verify, valid key, warm cache", stock.warm],
        ["verify, bad checksum", stock.badChecksum],
      ],
      stock.healthz,
    ),
  ];
  out.push(
    "",
    ...roundtrips.lines,
    "",
    ...latency.lines,
    "",
    ...scheduler.lines,
    "",
    ...keyring.lines,
    "",
    ...alerts.lines,
  );
  const all = [
    ...Object.entries(main).map(([k, f]) => [`stage 1 ${k}`, f]),
    ...Object.entries(vault).map(([k, f]) => [`vault ${k}`, f]),
    ...Object.entries(scaling.figures).map(([k, f]) => [`stage 2 ${k}`, f]),
    ...Object.entries(stock).map(([k, f]) => [`stock ${k}`, f]),
  ];
  const issues = problems(all);
  out.push(
    "",
    issues.length ? issues.join("\n") : "All measured responses had the expected status and body.",
  );

  const rps = (f, b = base) => round3(f.rps / b.rps);
  const cpu = (f, b = base) => round3(b.cpuUs / f.cpuUs);
  const us = (f) => Math.round(f.cpuUs);
  const others = Math.max(...all.map(([, f]) => f.otherCpu));
  const summary = {
    baseline_rps: Math.round(base.rps),
    verify_warm_ratio: rps(main.warm),
    verify_bad_checksum_ratio: rps(main.badChecksum),
    verify_unknown_ratio: rps(main.unknown),
    verify_cold_ratio: rps(main.cold),
    verify_unknown_cached_ratio: rps(main.unknownCached),
    ...edgeSummary(main),
    post_body_ceiling_ratio: round3(floor.rps),
    post_body_ceiling_cpu_ratio: round3(floor.cpu),
    raw_workerd_get_rps: Math.round(main.rawGet.rps),
    raw_workerd_post_rps: Math.round(main.rawPost.rps),
    credential_reveal_ratio: rps(vault.reveal, vault.healthz),
    credential_store_ratio: rps(vault.store, vault.healthz),
    credential_reveal_rps: Math.round(vault.reveal.rps),
    credential_store_rps: Math.round(vault.store.rps),
    cpu_us_per_request: {
      healthz: us(base),
      warm: us(main.warm),
      bad_checksum: us(main.badChecksum),
      unknown: us(main.unknown),
      unknown_cached: us(main.unknownCached),
      cold: us(main.cold),
      raw_workerd_get: us(main.rawGet),
      raw_workerd_post: us(main.rawPost),
      raw_workerd_get_with_app_headers: us(main.rawGetHeaders),
      raw_workerd_get_with_app_headers_and_request_id: us(main.rawGetHeadersId),
      hono_one_route_get: us(main.honoFloor),
      raw_workerd_post_with_app_headers: us(main.rawPostHeaders),
      credential_reveal: us(vault.reveal),
      credential_store: us(vault.store),
      ...scaleCpu,
      stock_ratelimit_healthz: us(stock.healthz),
      stock_ratelimit_warm: us(stock.warm),
    },
    cpu_ratio: {
      verify_warm: cpu(main.warm),
      verify_bad_checksum: cpu(main.badChecksum),
      verify_unknown: cpu(main.unknown),
      verify_cold: cpu(main.cold),
    },
    p50_ms: Object.fromEntries(
      Object.entries({ healthz: base, ...main }).map(([k, f]) => [k, round3(f.p50)]),
    ),
    p99_ms: Object.fromEntries(
      Object.entries({ healthz: base, ...main }).map(([k, f]) => [k, round3(f.p99)]),
    ),
    stock_ratelimit_verify_warm_ratio: rps(stock.warm, stock.healthz),
    stock_ratelimit_verify_bad_checksum_ratio: rps(stock.badChecksum, stock.healthz),
    ...scaleFields,
    ...scheduler.summary,
    ...keyring.summary,
    ...alerts.summary,
    ...roundtrips.summary,
    ...latency.summary,
    other_processes_max_cpu: round3(others),
    wrong_responses: all.reduce((total, [, f]) => total + f.bad, 0) + keyring.summary.keyring_wrong_responses,
    targets_met: {
      ...edgeTargetsMet(main),
      ...scaleTargets,
    },
  };
  out.push(
    "",
    `Targets, throughput against workerd alone: /healthz ${ratio(summary.healthz_vs_raw_get)} (>= 0.80x), ` +
      `warm ${ratio(summary.verify_warm_vs_raw_post)} (>= 0.80x), bad checksum ${ratio(summary.verify_bad_checksum_vs_raw_post)} (>= 0.90x)`,
    `Same, CPU per request: /healthz ${ratio(summary.healthz_vs_raw_get_cpu)}, warm ${ratio(summary.verify_warm_vs_raw_post_cpu)}, ` +
      `bad checksum ${ratio(summary.verify_bad_checksum_vs_raw_post_cpu)}; ` +
      `1k -> 1M warm ${signed(summary.verify_warm_cpu_change_1k_to_1m)}, cold ${signed(summary.verify_cold_cpu_change_1k_to_1m)} (within 15%)`,
    `Other processes used up to ${pct(others)} of a core during a run` +
      (others > 0.2 ? ": the machine was shared, so throughput is noisier than CPU per request" : ""),
  );
  console.log(out.join("\n"));
  console.log(JSON.stringify(summary));
}
