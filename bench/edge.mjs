// The app's overhead over workerd itself (issue 13, part 1): /healthz against workerd answering a GET with
// the app out of the way, and verify (warm, bad checksum) against workerd reading the same POST body with
// the app out of the way (`/__bench/raw*` in bench/worker-entry.mjs, never deployed). Throughput ratios and
// CPU-per-request ratios, from runs taken round-robin in the same stage. Beside them, the floors no app can
// go below: workerd sending the app's response headers, and the SHA-256 digests an authenticated verify
// must compute. `BENCH_ONLY=edge` runs only these scenarios (about two minutes); the full bench takes them
// from stage 1.
import { table } from "./report.mjs";

/** The scenarios this comparison needs, by their stage-1 names, and how each is built from an instance's specs. */
export const EDGE_SPECS = {
  healthz: (specs) => specs.healthz(),
  rawGet: (specs) => specs.rawGet(),
  rawPost: (specs) => specs.rawPost(),
  rawGetHeaders: (specs) => specs.rawGetHeaders(),
  rawGetHeadersId: (specs) => specs.rawGetHeadersId(),
  honoFloor: (specs) => specs.honoFloor(),
  rawPostHeaders: (specs) => specs.rawPostHeaders(),
  rawOneDigest: (specs) => specs.rawDigests(1),
  rawTwoDigests: (specs) => specs.rawDigests(2),
  warm: (specs) => specs.warm(),
  badChecksum: (specs) => specs.badChecksum(),
};
export const EDGE_SCENARIOS = Object.keys(EDGE_SPECS);

/** [summary field, printed label, measured scenario, scenario it is compared with, the issue's goal]. */
const COMPARISONS = [
  ["healthz_vs_raw_get", "/healthz vs workerd GET", "healthz", "rawGet", 0.8],
  ["verify_warm_vs_raw_post", "verify warm vs workerd POST", "warm", "rawPost", 0.8],
  ["verify_bad_checksum_vs_raw_post", "verify bad checksum vs workerd POST", "badChecksum", "rawPost", 0.9],
  // The floors: what every answer keeps (the thirteen security headers) and what an authenticated verify
  // cannot skip (SHA-256 of the caller's key; of the verified key too when it is well formed).
  [
    "raw_get_with_app_headers_vs_raw_get",
    "floor: workerd GET with the app's headers",
    "rawGetHeaders",
    "rawGet",
  ],
  [
    "raw_get_with_app_headers_and_request_id_vs_raw_get",
    "floor: workerd GET with the app's headers and a request id",
    "rawGetHeadersId",
    "rawGet",
  ],
  [
    "hono_one_route_with_app_headers_vs_raw_get",
    "one-route Hono app with the app's edge middleware",
    "honoFloor",
    "rawGet",
  ],
  ["healthz_vs_hono_one_route", "/healthz vs that one-route Hono app", "healthz", "honoFloor"],
  [
    "raw_post_with_app_headers_vs_raw_post",
    "floor: workerd POST with the app's headers",
    "rawPostHeaders",
    "rawPost",
  ],
  [
    "bad_checksum_floor_vs_raw_post",
    "floor of a bad-checksum verify: + 1 SHA-256",
    "rawOneDigest",
    "rawPost",
  ],
  ["warm_floor_vs_raw_post", "floor of a warm verify: + 2 SHA-256", "rawTwoDigests", "rawPost"],
];

const round3 = (n) => Math.round(n * 1000) / 1000;

/** Summary fields: throughput ratios and their `_cpu` twins (the compared CPU per request / the measured one). */
export function edgeSummary(figures) {
  const summary = {};
  for (const [name, , measured, compared] of COMPARISONS) {
    summary[name] = round3(figures[measured].rps / figures[compared].rps);
    summary[`${name}_cpu`] = round3(figures[compared].cpuUs / figures[measured].cpuUs);
  }
  return summary;
}

/** Whether each goal was met, by throughput (the issue's measure). */
export function edgeTargetsMet(figures) {
  const summary = edgeSummary(figures);
  return Object.fromEntries(
    COMPARISONS.filter(([, , , , goal]) => goal !== undefined).map(([name, , , , goal]) => [
      `${name}_ge_${String(goal).replace(".", "_")}`,
      summary[name] >= goal,
    ]),
  );
}

/** Printed lines: one row per comparison with both ratios and the goal. */
export function edgeLines(figures) {
  const summary = edgeSummary(figures);
  const int = (n) => Math.round(n).toLocaleString("en-US");
  const verdict = (name, goal) => {
    if (goal === undefined) return "";
    if (summary[name] >= goal) return "met";
    return summary[`${name}_cpu`] >= goal ? "met by CPU" : "not met";
  };
  const rows = COMPARISONS.map(([name, label, measured, compared, goal]) => [
    label,
    `${int(figures[measured].rps)} / ${int(figures[compared].rps)}`,
    `${summary[name].toFixed(2)}x`,
    `${int(figures[measured].cpuUs)} / ${int(figures[compared].cpuUs)}`,
    `${summary[`${name}_cpu`].toFixed(2)}x`,
    goal === undefined ? "" : `>= ${goal.toFixed(2)}x`,
    verdict(name, goal),
  ]);
  return [
    "The app's overhead over workerd alone (same instance, same rounds)",
    table(["comparison", "req/s", "ratio", "CPU us/req", "CPU ratio", "goal", ""], rows),
  ];
}
