// The app's overhead over workerd itself (issue 13, part 1): /healthz against workerd answering a GET with
// the app out of the way, and verify (warm, bad checksum) against workerd reading the same POST body with
// the app out of the way (`/__bench/raw` in bench/worker-entry.mjs, never deployed). Throughput ratios and
// CPU-per-request ratios, from runs taken round-robin in the same stage. `BENCH_ONLY=edge` runs only these
// five scenarios (about a minute); the full bench takes them from stage 1.
import { table } from "./report.mjs";

/** The scenarios this comparison needs, by their stage-1 names. */
export const EDGE_SCENARIOS = [
  "healthz",
  "rawGet",
  "rawPost",
  "rawGetHeaders",
  "rawPostHeaders",
  "warm",
  "badChecksum",
];

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
  // How much of the gap is workerd sending the app's thirteen extra headers, which every answer keeps.
  summary.raw_get_with_app_headers_vs_raw_get = round3(figures.rawGetHeaders.rps / figures.rawGet.rps);
  summary.raw_get_with_app_headers_vs_raw_get_cpu = round3(
    figures.rawGet.cpuUs / figures.rawGetHeaders.cpuUs,
  );
  summary.raw_post_with_app_headers_vs_raw_post = round3(figures.rawPostHeaders.rps / figures.rawPost.rps);
  summary.raw_post_with_app_headers_vs_raw_post_cpu = round3(
    figures.rawPost.cpuUs / figures.rawPostHeaders.cpuUs,
  );
  return summary;
}

/** Whether each goal was met, by throughput (the issue's measure). */
export function edgeTargetsMet(figures) {
  const summary = edgeSummary(figures);
  return Object.fromEntries(
    Object.entries(EDGE_TARGETS).map(([name, goal]) => [
      `${name}_ge_${String(goal).replace(".", "_")}`,
      summary[name] >= goal,
    ]),
  );
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
  const floors = [
    [
      "workerd GET with the app's headers vs without",
      figures.rawGetHeaders,
      figures.rawGet,
      "raw_get_with_app_headers_vs_raw_get",
    ],
    [
      "workerd POST with the app's headers vs without",
      figures.rawPostHeaders,
      figures.rawPost,
      "raw_post_with_app_headers_vs_raw_post",
    ],
  ].map(([label, app, raw, name]) => [
    label,
    `${int(app.rps)} / ${int(raw.rps)}`,
    `${summary[name].toFixed(2)}x`,
    `${int(app.cpuUs)} / ${int(raw.cpuUs)}`,
    `${summary[`${name}_cpu`].toFixed(2)}x`,
    "",
    "",
  ]);
  return [
    "The app's overhead over workerd alone (same instance, same rounds)",
    table(
      ["comparison", "req/s app / raw", "ratio", "CPU us app / raw", "CPU ratio", "goal", ""],
      [...rows, ...floors],
    ),
  ];
}
