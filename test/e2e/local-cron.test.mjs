// `npm start` fires wrangler.toml's Cron Triggers itself (scripts/local-cron.mjs), because `wrangler dev`
// never runs a schedule. These tests pin the clock arithmetic and the call to the scheduled endpoint; the
// browser e2e (wizard.test.mjs) drives the same `fireTick` against a real `wrangler dev` started with npm
// start's own arguments, which proves the endpoint needs no local switch.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import {
  configuredCrons,
  fireTick,
  minuteStep,
  nextBoundary,
  runLocalCron,
  SCHEDULED_PATH,
} from "../../scripts/local-cron.mjs";

const at = (iso) => Date.parse(iso);
const iso = (ms) => new Date(ms).toISOString();

describe("the local cron clock (scripts/local-cron.mjs)", () => {
  test("fires */5 at the next minute divisible by 5, strictly after now, in UTC", () => {
    assert.equal(
      iso(nextBoundary("*/5 * * * *", at("2026-03-01T10:02:30.500Z"))),
      "2026-03-01T10:05:00.000Z",
    );
    assert.equal(
      iso(nextBoundary("*/5 * * * *", at("2026-03-01T10:05:00.000Z"))),
      "2026-03-01T10:10:00.000Z",
    );
    assert.equal(
      iso(nextBoundary("*/5 * * * *", at("2026-12-31T23:59:59.999Z"))),
      "2027-01-01T00:00:00.000Z",
    );
  });

  test("fires * * * * * every minute, and */7 at minute 0 after minute 56 as cron does", () => {
    assert.equal(iso(nextBoundary("* * * * *", at("2026-03-01T10:02:30Z"))), "2026-03-01T10:03:00.000Z");
    assert.equal(iso(nextBoundary("*/7 * * * *", at("2026-03-01T10:50:00Z"))), "2026-03-01T10:56:00.000Z");
    assert.equal(iso(nextBoundary("*/7 * * * *", at("2026-03-01T10:57:00Z"))), "2026-03-01T11:00:00.000Z");
  });

  test("refuses the shapes it cannot fire with an error naming the expression", () => {
    for (const expression of [
      "0 3 * * *",
      "*/5 * * * 1",
      "*/5 * * *",
      "*/0 * * * *",
      "*/60 * * * *",
      "5,10 * * * *",
      "@daily",
    ]) {
      assert.throws(
        () => minuteStep(expression),
        (error) => error.message.includes(`"${expression}"`),
      );
    }
  });

  test("supports every cron wrangler.toml declares, as wrangler itself reads them", async () => {
    const crons = await configuredCrons(new URL("../../wrangler.toml", import.meta.url).pathname);
    assert.ok(crons.length > 0, "wrangler.toml declares [triggers] crons");
    for (const expression of crons) assert.ok(minuteStep(expression) >= 1);
  });
});

describe("a tick against the scheduled endpoint", () => {
  const received = [];
  let answer = { status: 200, body: { outcome: "ok" } };
  let server;
  let origin;

  before(async () => {
    server = createServer((req, res) => {
      received.push({ method: req.method, url: new URL(req.url, "http://x") });
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(JSON.stringify(answer.body));
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${server.address().port}`;
  });
  after(() => new Promise((resolve) => server.close(resolve)));

  test("passes the expression and the scheduled time, and reports the outcome in one line", async () => {
    received.length = 0;
    answer = { status: 200, body: { outcome: "ok" } };
    const time = at("2026-04-02T08:05:00Z");
    const tick = await fireTick(origin, "*/5 * * * *", time);
    assert.equal(tick.ok, true);
    assert.match(tick.line, /^cron \*\/5 \* \* \* \* @ 2026-04-02T08:05:00\.000Z: ok, \d+ ms$/);
    assert.equal(received.length, 1);
    assert.equal(received[0].method, "POST");
    assert.equal(received[0].url.pathname, SCHEDULED_PATH);
    assert.equal(received[0].url.searchParams.get("cron"), "*/5 * * * *");
    assert.equal(received[0].url.searchParams.get("time"), String(time));
  });

  test("reports a handler that threw, and an unreachable worker, without throwing", async () => {
    answer = { status: 500, body: { outcome: "exception" } };
    const failed = await fireTick(origin, "*/5 * * * *", at("2026-04-02T08:10:00Z"));
    assert.equal(failed.ok, false);
    assert.match(failed.line, /: exception \(see the worker's log above\)/);
    const closed = await fireTick("http://127.0.0.1:9", "*/5 * * * *", at("2026-04-02T08:15:00Z"));
    assert.equal(closed.ok, false);
    assert.match(closed.line, /: not delivered \(/);
  });

  test("runLocalCron fires at the boundary with the boundary as the scheduled time", async () => {
    received.length = 0;
    answer = { status: 200, body: { outcome: "ok" } };
    const boundary = at("2026-04-02T08:20:00Z");
    const now = boundary - 5; // an injected clock 5 ms before a boundary: the timer is due almost at once
    const lines = [];
    await new Promise((resolve) => {
      const cron = runLocalCron({
        origin,
        crons: ["*/5 * * * *"],
        clock: () => now,
        log: (line) => {
          lines.push(line);
          cron.stop();
          resolve();
        },
      });
    });
    assert.equal(lines.length, 1);
    assert.match(lines[0], /@ 2026-04-02T08:20:00\.000Z: ok/);
    assert.deepEqual(
      received.map((r) => r.url.searchParams.get("time")),
      [String(boundary)],
    );
  });

  test("runLocalCron refuses an unsupported expression before arming anything", () => {
    assert.throws(() => runLocalCron({ origin, crons: ["0 3 * * *"] }), /"0 3 \* \* \*"/);
  });
});
