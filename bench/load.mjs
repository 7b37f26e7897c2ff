// Load generator, run as its own process (forked by run.mjs) so it never shares a core's event loop
// with the harness. Receives one scenario at a time over IPC, drives it with autocannon and answers
// with the measured time, every latency (ms, unrounded) and a count of every response that was not what the
// scenario expects (status and body, checked per request).
import autocannon from "autocannon";

/** Builds the per-response check: an exact body, or a body prefix (one per request body, or shared). */
function checker(expect) {
  if (expect.body !== undefined) return () => expect.body;
  if (Array.isArray(expect.prefixes)) return (i) => expect.prefixes[i];
  return () => expect.prefix;
}

/**
 * One autocannon run. `bodies`, when given, are sent in order across all connections (request i gets
 * bodies[i % n]); for `distinct` bodies (cold keys) the result says if any was sent twice.
 */
function runOnce(spec) {
  const {
    url,
    method = "GET",
    path,
    headers = {},
    bodies,
    distinct,
    expect,
    connections,
    duration,
    amount,
  } = spec;
  const expected = checker(expect);
  const exact = expect.body !== undefined;
  let sent = 0;
  let ok = 0;
  let bad = 0;
  const samples = [];
  const latencies = [];
  const request = {
    method,
    path,
    headers,
    setupRequest(req, context) {
      const i = sent++;
      context.i = i;
      return bodies ? { ...req, body: bodies[i % bodies.length] } : req;
    },
    onResponse(status, body, context) {
      const want = expected(bodies ? context.i % bodies.length : 0);
      const good = status === expect.status && (exact ? body === want : body.startsWith(want));
      if (good) ok++;
      else {
        bad++;
        if (samples.length < 3) samples.push(`${status} ${body.slice(0, 200)}`);
      }
    },
  };
  return new Promise((resolve, reject) => {
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    let end = start;
    const instance = autocannon(
      {
        url,
        connections,
        pipelining: 1,
        timeout: 10,
        ...(amount ? { amount } : { duration }),
        requests: [request],
      },
      (error, result) => {
        if (error) return reject(error);
        const seconds = (end - start) / 1000;
        const cpu = process.cpuUsage(cpuStart);
        resolve({
          ok,
          bad,
          errors: result.errors,
          timeouts: result.timeouts,
          samples,
          seconds,
          latencies: Float64Array.from(latencies),
          // More requests than bodies means some body went out twice (a cold key would have been warm).
          wrapped: Boolean(distinct) && sent > bodies.length,
          loadCpu: (cpu.user + cpu.system) / 1e6 / seconds,
        });
      },
    );
    instance.on("response", (_client, _status, _bytes, responseTime) => {
      latencies.push(responseTime);
      end = performance.now();
    });
  });
}

process.on("message", async ({ id, spec }) => {
  try {
    // Warm-up: same scenario (optionally other bodies, e.g. keys the measured run must find cold), unmeasured.
    if (spec.warmup) await runOnce({ ...spec, amount: undefined, ...spec.warmup });
    process.send({ id, result: await runOnce(spec) });
  } catch (error) {
    process.send({ id, error: String(error?.stack ?? error) });
  }
});
process.on("disconnect", () => process.exit(0));
