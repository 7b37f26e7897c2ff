// Load generator of the latency stage (bench/latency.mjs), run as its own process. Two modes:
//
// - paced (`rate` req/s): open loop. Request i leaves at t0 + i / rate whatever happened to the ones before, over
//   a pool of `connections` keep-alive connections, and its latency runs from that scheduled time to the end of
//   its response, so a slow answer that holds up later requests counts against them too (no coordinated
//   omission). autocannon's overallRate is not a fixed rate: each connection sends its share of the second back
//   to back when the second starts, then idles, so the worker sees a burst of `connections` requests every
//   second and the p99 measures that burst's queue.
// - closed loop (`rate` null): `connections` requests in flight at all times, each connection sending its next
//   request when the last one is answered. For warm-ups, where only the order of the requests matters.
//
// Every response's status and body is checked against the request's own expectation (exact body or prefix).
import http from "node:http";

function send(agent, target, request) {
  return new Promise((resolve) => {
    const req = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: "POST",
        path: request.path,
        headers: { ...request.headers, "content-length": Buffer.byteLength(request.body) },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => {
          body += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode, body }));
        res.on("error", (error) => resolve({ status: 0, body: String(error) }));
      },
    );
    req.on("error", (error) => resolve({ status: 0, body: String(error) }));
    req.end(request.body);
  });
}

const matches = (expect, { status, body }) =>
  status === expect.status &&
  (expect.body !== undefined ? body === expect.body : body.startsWith(expect.prefix));

/** Sends `requests` and checks each answer; `start(i, scheduledAt)` is called when request i is due. */
function recorder(agent, target, path, headers, requests) {
  const latencies = new Float64Array(requests.length);
  const ok = new Uint8Array(requests.length);
  const samples = [];
  const one = async (i, scheduledAt) => {
    const request = requests[i];
    const answer = await send(agent, target, {
      path,
      body: request.body,
      headers: { ...headers, ...request.headers },
    });
    latencies[i] = performance.now() - scheduledAt;
    if (matches(request.expect, answer)) ok[i] = 1;
    else if (samples.length < 5) samples.push(`#${i}: ${answer.status} ${answer.body.slice(0, 200)}`);
  };
  const result = () => ({
    latencies,
    ok,
    bad: ok.length - ok.reduce((total, x) => total + x, 0),
    samples,
  });
  return { one, result };
}

/** Open loop: request i is due at t0 + i / rate. Resolves when every answer is in; answers the worst send lag. */
async function paced(count, rate, one) {
  const interval = 1000 / rate;
  const t0 = performance.now() + 10;
  const inFlight = [];
  let next = 0;
  let maxSendLagMs = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (next < count && t0 + next * interval <= now) {
        const scheduledAt = t0 + next * interval;
        maxSendLagMs = Math.max(maxSendLagMs, now - scheduledAt);
        inFlight.push(one(next, scheduledAt));
        next++;
      }
      if (next === count) return resolve();
      setTimeout(tick, Math.max(0, t0 + next * interval - performance.now()));
    };
    setTimeout(tick, 10);
  });
  await Promise.all(inFlight);
  return maxSendLagMs;
}

/**
 * Runs `requests` ([{ body, headers, expect: { status, body | prefix } }]) against `url` + `path` with common
 * `headers`, paced at `rate` or closed loop (`rate` null). Answers the latency of each request in ms
 * (Float64Array, by request index), whether each answer was the expected one, a few of the wrong ones, the wall
 * time, and how late the paced sends left at worst. With `probe` ({ path, rate, requests }), a second paced
 * stream runs alongside over its own connections (its `probe` result).
 */
async function run({ url, path, headers, requests, rate, connections, probe }) {
  const target = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const main = recorder(agent, target, path, headers, requests);
  const started = performance.now();
  let maxSendLagMs = 0;
  let probed = null;
  if (rate) {
    const probeAgent = probe ? new http.Agent({ keepAlive: true, maxSockets: 4 }) : null;
    const probeRun = probe ? recorder(probeAgent, target, probe.path, headers, probe.requests) : null;
    [maxSendLagMs] = await Promise.all([
      paced(requests.length, rate, main.one),
      probe ? paced(probe.requests.length, probe.rate, probeRun.one) : null,
    ]);
    if (probe) {
      probeAgent.destroy();
      probed = probeRun.result();
    }
  } else {
    let next = 0;
    const worker = async () => {
      while (next < requests.length) {
        const i = next++;
        await main.one(i, performance.now());
      }
    };
    await Promise.all(Array.from({ length: connections }, worker));
  }
  agent.destroy();
  return { ...main.result(), seconds: (performance.now() - started) / 1000, maxSendLagMs, probe: probed };
}

process.on("message", async ({ id, spec }) => {
  try {
    process.send({ id, result: await run(spec) });
  } catch (error) {
    process.send({ id, error: String(error?.stack ?? error) });
  }
});
process.on("disconnect", () => process.exit(0));
