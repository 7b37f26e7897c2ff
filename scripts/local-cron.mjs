// The Cron Triggers of wrangler.toml, fired locally: `wrangler dev` never runs a schedule, so `npm start`
// (scripts/start.mjs) calls the worker's scheduled handler at each boundary of each cron expression.

/**
 * wrangler dev (miniflare) serves the scheduled handler here on its own address, without any switch;
 * `time` (ms since the epoch) becomes the event's `scheduledTime`, the "now" of every scheduled job.
 * Deployed, Cloudflare's edge has no such path: only the real Cron Trigger calls `scheduled`.
 */
export const SCHEDULED_PATH = "/cdn-cgi/local/scheduled";

const MINUTE_MS = 60_000;

/** The expressions of wrangler.toml's `[triggers] crons`, read by wrangler's own config reader. */
export async function configuredCrons(configPath = "wrangler.toml") {
  const { unstable_readConfig } = await import("wrangler");
  return [...(unstable_readConfig({ config: configPath }).triggers?.crons ?? [])];
}

/**
 * The minute step of a cron expression of the shapes this local clock supports: `* * * * *` (every minute)
 * and `*\/N * * * *` (minutes divisible by N, UTC, as Cloudflare evaluates crons). Anything else is refused
 * with a clear error rather than fired at the wrong times.
 */
export function minuteStep(expression) {
  const fields = String(expression).trim().split(/\s+/);
  const [minute, ...rest] = fields;
  const every = minute === "*" ? 1 : /^\*\/([1-9]\d?)$/.exec(minute ?? "")?.[1];
  const step = Number(every);
  if (fields.length !== 5 || rest.some((field) => field !== "*") || !(step >= 1 && step <= 59)) {
    throw new Error(
      `The local cron supports "* * * * *" and "*/N * * * *" (N from 1 to 59), not "${expression}": ` +
        "extend scripts/local-cron.mjs for this shape, or fire it by hand with " +
        `curl '<origin>${SCHEDULED_PATH}?cron=...'.`,
    );
  }
  return step;
}

/** The first minute boundary strictly after `afterMs` that the expression fires at. */
export function nextBoundary(expression, afterMs) {
  const step = minuteStep(expression);
  let at = Math.floor(afterMs / MINUTE_MS) * MINUTE_MS + MINUTE_MS;
  while (new Date(at).getUTCMinutes() % step !== 0) at += MINUTE_MS;
  return at;
}

/** The local scheduled endpoint for one cron expression at one scheduled time. */
export function scheduledUrl(origin, expression, timeMs) {
  const query = new URLSearchParams({ cron: expression, time: String(timeMs), format: "json" });
  return `${origin}${SCHEDULED_PATH}?${query}`;
}

/**
 * Fires one tick and describes it in one line (the outcome only: the scheduled handler answers no data, so
 * nothing secret can reach the terminal). Resolves to `{ ok, line }`; a refused or failed tick is not thrown.
 */
export async function fireTick(origin, expression, timeMs, { timeoutMs = 120_000 } = {}) {
  const started = performance.now();
  const label = `cron ${expression} @ ${new Date(timeMs).toISOString()}`;
  try {
    const response = await fetch(scheduledUrl(origin, expression, timeMs), {
      method: "POST",
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await response.json().catch(() => ({}));
    const ms = Math.round(performance.now() - started);
    const ok = response.ok && body.outcome === "ok";
    const outcome = ok ? "ok" : `${body.outcome ?? `HTTP ${response.status}`} (see the worker's log above)`;
    return { ok, line: `${label}: ${outcome}, ${ms} ms` };
  } catch (error) {
    return { ok: false, line: `${label}: not delivered (${error.name})` };
  }
}

/**
 * Fires every expression at each of its boundaries until `stop()`. A tick that is still running when its
 * next boundary comes delays that one (boundaries missed meanwhile are skipped, as after a sleeping laptop).
 */
export function runLocalCron({ origin, crons, log = console.log, clock = Date.now }) {
  for (const expression of crons) minuteStep(expression);
  const timers = new Set();
  let stopped = false;
  const arm = (expression) => {
    if (stopped) return;
    const at = nextBoundary(expression, clock());
    const timer = setTimeout(async () => {
      timers.delete(timer);
      const { line } = await fireTick(origin, expression, at);
      if (!stopped) log(line);
      arm(expression);
    }, at - clock());
    timers.add(timer);
  };
  for (const expression of crons) arm(expression);
  return {
    stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
    },
  };
}
