// The README's "Use it from your service" end to end: Keywarden under `wrangler dev` (as npm start runs it),
// and the example Worker (examples/protected-worker, @keywarden/hono) under its own `wrangler dev`, pointed at
// that Keywarden with a root key holding only `keys:verify`. Requests go to the example over HTTP.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { apiAs, createTenant, freePort, onStop, ROOT, sleep, startKeywarden, stopAll } from "./harness.mjs";

const HOST = "127.0.0.1";
const DAY_MS = 86_400_000;

let kw;
let tenant;
let example;

/** Stops a detached `wrangler dev` and the workerd it started (its whole process group). */
function stopGroup(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const signal = (name) => {
      try {
        process.kill(-child.pid, name);
      } catch {
        child.kill(name);
      }
    };
    const hard = setTimeout(() => signal("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(hard);
      resolve();
    });
    signal("SIGTERM");
  });
}

/** `wrangler dev` for examples/protected-worker, its secret given as a --var like any local secret. */
async function startExample({ keywardenUrl, rootKey }) {
  const dir = mkdtempSync(join(tmpdir(), "keywarden-example-"));
  onStop(() => rmSync(dir, { recursive: true, force: true }));
  const [port, inspector] = [await freePort(), await freePort()];
  const child = spawn(
    join(ROOT, "node_modules", ".bin", "wrangler"),
    [
      "dev",
      "--config",
      join(ROOT, "examples", "protected-worker", "wrangler.toml"),
      "--ip",
      HOST,
      "--port",
      String(port),
      "--inspector-port",
      String(inspector),
      "--persist-to",
      dir,
      "--show-interactive-dev-session=false",
      "--log-level",
      "warn",
      "--var",
      `KEYWARDEN_URL:${keywardenUrl}`,
      "--var",
      `KEYWARDEN_ROOT_KEY:${rootKey}`,
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        CI: "true",
        WRANGLER_SEND_METRICS: "false",
        WRANGLER_LOG_PATH: join(dir, "logs"),
        XDG_CONFIG_HOME: join(dir, "config"),
      },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    },
  );
  let log = "";
  const keep = (d) => (log = (log + d).slice(-20_000));
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  onStop(() => stopGroup(child));
  const origin = `http://${HOST}:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the example's wrangler dev exited early:\n${log}`);
    if (Date.now() > deadline) throw new Error(`the example did not answer within 120 s:\n${log}`);
    const up = await fetch(`${origin}/`, { signal: AbortSignal.timeout(2_000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    await sleep(300);
  }
  return { origin, log: () => log };
}

/** A key of the tenant, created through Keywarden's API with the admin key. */
async function issueKey(body) {
  const { status, body: created } = await apiAs(kw, tenant.adminKey, "POST", "/api/v1/keys", body);
  assert.equal(status, 201, JSON.stringify(created));
  return created;
}

async function get(path, key) {
  const response = await fetch(`${example.origin}${path}`, {
    headers: key ? { authorization: `Bearer ${key}` } : {},
    signal: AbortSignal.timeout(15_000),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

before(
  async () => {
    kw = await startKeywarden({});
    tenant = await createTenant(kw, "Orders team (example e2e)");
    const root = await issueKey({ name: "protected-worker root key", scopes: ["keys:verify"] });
    example = await startExample({ keywardenUrl: kw.origin, rootKey: root.key });
  },
  { timeout: 240_000 },
);

after(
  async () => {
    await stopAll();
  },
  { timeout: 60_000 },
);

describe("the example Worker protected by @keywarden/hono, against a local Keywarden", () => {
  test("answers 200 to a key with orders:read, with the verdict from Keywarden and the RateLimit fields", async () => {
    const key = await issueKey({
      name: "dashboard",
      scopes: ["orders:read"],
      ratelimit: { limit: 50, window_ms: DAY_MS },
    });
    const response = await get("/orders", key.key);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.deepEqual(response.body.caller, { key_id: key.id, scopes: ["orders:read"] });
    assert.equal(response.headers.get("ratelimit-policy"), '"keywarden";q=50');
    assert.match(response.headers.get("ratelimit") ?? "", /^"keywarden";r=49;t=\d+$/);
  });

  test("answers 401 problem+json without a key and with a key Keywarden does not know", async () => {
    const missing = await get("/orders");
    assert.equal(missing.status, 401);
    assert.equal(missing.headers.get("content-type"), "application/problem+json");
    assert.equal(missing.headers.get("www-authenticate"), "Bearer");
    assert.equal(missing.body.code, "UNAUTHENTICATED");

    const other = await createTenant(kw, "Someone else (example e2e)");
    const { body: foreign } = await apiAs(kw, other.adminKey, "POST", "/api/v1/keys", {
      name: "not yours",
      scopes: ["orders:read"],
    });
    const unknown = await get("/orders", foreign.key);
    assert.equal(unknown.status, 401);
    assert.equal(unknown.body.code, "NOT_FOUND");
  });

  test("answers 403 insufficient_scope to a key without orders:read", async () => {
    const key = await issueKey({ name: "billing", scopes: ["invoices:read"] });
    const response = await get("/orders", key.key);
    assert.equal(response.status, 403);
    assert.equal(
      response.headers.get("www-authenticate"),
      'Bearer error="insufficient_scope", scope="orders:read"',
    );
    assert.equal(response.body.code, "INSUFFICIENT_SCOPES");
  });

  test("answers 429 with Retry-After and RateLimit fields once the key's limit is spent", async () => {
    // The key's window is a UTC day; should the three calls straddle midnight, run them once more.
    let statuses;
    for (let attempt = 0; attempt < 2; attempt++) {
      const day = Math.floor(Date.now() / DAY_MS);
      const key = await issueKey({
        name: "batch job",
        scopes: ["orders:read"],
        ratelimit: { limit: 2, window_ms: DAY_MS },
      });
      statuses = [
        await get("/orders", key.key),
        await get("/orders", key.key),
        await get("/orders", key.key),
      ];
      if (Math.floor(Date.now() / DAY_MS) === day) break;
    }
    assert.deepEqual(
      statuses.map((r) => r.status),
      [200, 200, 429],
    );
    const limited = statuses[2];
    assert.equal(limited.body.code, "RATE_LIMITED");
    assert.equal(limited.headers.get("ratelimit-policy"), '"keywarden";q=2');
    const window = /^"keywarden";r=0;t=(\d+)$/.exec(limited.headers.get("ratelimit") ?? "");
    assert.ok(window, limited.headers.get("ratelimit"));
    assert.equal(Number(limited.headers.get("retry-after")), Math.max(1, Number(window[1])));
  });
});
