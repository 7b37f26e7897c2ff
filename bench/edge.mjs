// The app's overhead over workerd itself (issue 13, part 1): /healthz against workerd answering a GET with
// the app out of the way, and verify (warm, bad checksum) against workerd reading the same POST body with
// the app out of the way (`/__bench/raw` in bench/worker-entry.mjs, never deployed). Throughput ratios and
// CPU-per-request ratios, from runs taken round-robin in the same stage. `BENCH_ONLY=edge` runs only these
// five scenarios (about a minute); the full bench takes them from stage 1.
import { table } from "./report.mjs";

/** The scenarios this comparison needs, by their stage-1 names. */
export const EDGE_SCENARIOS = ["healthz", "rawGet", "rawPost", "warm", "badChecksum"];

/** The issue's goals: the app keeps at least this share of what workerd alone does. */
export const EDGE_TARGETS = {
  healthz_vs_raw_get: 0.8,
  verify_warm_vs_raw_post: 0.8,
  verify_bad_checksum_vs_raw_post: 0.9,
};

const round3 = (n) => Math.round(n * 1000) / 1000;

/** Summary fields: throughput ratios and their `_cpu` twins (raw CPU per request / the app's). */
export function edgeSummary(figures) {
  const pairs = {
    healthz_vs_raw_get: [figures.healthz, figures.rawGet],
    verify_warm_vs_raw_post: [figures.warm, figures.rawPost],
    verify_bad_checksum_vs_raw_post: [figures.badChecksum, figures.rawPost],
  };
  const summary = {};
  for (const [name, [app, raw]] of Object.entries(pairs)) {
    summary[name] = round3(app.rps / raw.rps);
    summary[`${name}_cpu`] = round3(raw.cpuUs / app.cpuUs);
  }
  return summary;
}

/** Printed lines: one row per comparison with both ratios and the goal. */
export function edgeLines(figures) {
  const summary = edgeSummary(figures);
  const int = (n) => Math.round(n).toLocaleString("en-US");
  const rows = [
    ["/healthz vs workerd GET", figures.healthz, figures.rawGet, "healthz_vs_raw_get"],
    ["verify warm vs workerd POST", figures.warm, figures.rawPost, "verify_warm_vs_raw_post"],
    [
      "verify bad checksum vs workerd POST",
      figures.badChecksum,
      figures.rawPost,
      "verify_bad_checksum_vs_raw_post",
    ],
  ].map(([label, app, raw, name]) => [
    label,
    `${int(app.rps)} / ${int(raw.rps)}`,
    `${summary[name].toFixed(2)}x`,
    `${int(app.cpuUs)} / ${int(raw.cpuUs)}`,
    `${summary[`${name}_cpu`].toFixed(2)}x`,
    `>= ${EDGE_TARGETS[name].toFixed(2)}x`,
    summary[name] >= EDGE_TARGETS[name]
      ? "met"
      : summary[`${name}_cpu`] >= EDGE_TARGETS[name]
        ? "met by CPU"
        : "not met",
  ]);
  return [
    "The app's overhead over workerd alone (same instance, same rounds)",
    table(["comparison", "req/s app / raw", "ratio", "CPU us app / raw", "CPU ratio", "goal", ""], rows),
  ];
}
