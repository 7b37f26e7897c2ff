// Shared e2e plumbing: an isolated Keywarden (own D1 dir, own ports, own secrets), the provider
// stand-in, the webhook receiver and Chromium. Everything listens on 127.0.0.1 only and is torn down
// by `stopAll()`, also when a test fails.
import { spawn } from "node:child_process";
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { wranglerDevArgs } from "../../scripts/dev-args.mjs";

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const SHOTS = join(ROOT, "test-results", "e2e");
const BIN = join(ROOT, "node_modules", ".bin");
const HOST = "127.0.0.1";
const cleanups = [];

// An interrupted run (Ctrl-C, CI cancel) still stops wrangler, which runs in its own process group.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => stopAll().finally(() => process.exit(130)));
}

/** Registers a teardown step; `stopAll` runs them last-in first-out. */
export const onStop = (fn) => cleanups.push(fn);

export async function stopAll() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    await Promise.race([Promise.resolve().then(fn), sleep(10_000)]).catch((e) =>
      console.error("cleanup:", e),
    );
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `probe` until it returns a truthy value and returns that value; fails after `timeoutMs` with what
 * was awaited and the last value seen. For work the worker finishes in the background (Workflows).
 */
export async function eventually(what, probe, { timeoutMs = 20_000, everyMs = 150 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last?.done) return last.value;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(last?.value)}`,
      );
    }
    await sleep(everyMs);
  }
}

export function freePort() {
  return new Promise((res, rej) => {
    const srv = createNetServer();
    srv.unref();
    srv.on("error", rej);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/** Random base62 text (rejection sampling, so no bias). Test values only: never realistic keys. */
export function randomAlnum(n) {
  let out = "";
  while (out.length < n) for (const b of randomBytes(n)) if (b < 248 && out.length < n) out += ALNUM[b % 62];
  return out;
}

/** Runs a command to completion with a hard timeout; output is returned for diagnostics. */
function run(cmd, args, { timeoutMs, env }) {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => killGroup(child, "SIGKILL"), timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      code === 0 ? res(out) : rej(new Error(`${cmd} ${args.join(" ")} exited ${code}:\n${out.slice(-4000)}`));
    });
  });
}

function killGroup(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // the whole group: wrangler and the workerd it started
  } catch {
    child.kill(signal);
  }
}

function stopChild(child) {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) return res();
    const hard = setTimeout(() => killGroup(child, "SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(hard);
      res();
    });
    killGroup(child, "SIGTERM");
  });
}

/**
 * Starts Keywarden the way the README does (migrations, then `wrangler dev`), isolated in a temp dir with
 * fresh secrets and the two explicit local switches for the stand-in and the loopback webhook receiver.
 */
export async function startKeywarden({ standInOrigin }) {
  const dir = mkdtempSync(join(tmpdir(), "keywarden-e2e-"));
  onStop(() => rmSync(dir, { recursive: true, force: true }));
  const [port, inspector] = [await freePort(), await freePort()];
  const secrets = { master: randomBytes(32).toString("base64"), bootstrap: randomBytes(32).toString("hex") };
  const env = {
    ...process.env,
    PATH: `${BIN}:${process.env.PATH}`,
    CI: "true",
    WRANGLER_SEND_METRICS: "false",
    WRANGLER_LOG_PATH: join(dir, "logs"),
    XDG_CONFIG_HOME: join(dir, "config"),
  };
  await run("wrangler", ["d1", "migrations", "apply", "DB", "--local", "--persist-to", dir], {
    timeoutMs: 120_000,
    env,
  });
  const child = spawn(
    "wrangler",
    [
      // npm start's own argument builder, so the local switches reach the worker the way they do there.
      ...wranglerDevArgs({
        host: HOST,
        port,
        devVars: { PROVIDER_STANDIN_ORIGIN: standInOrigin, ALLOW_LOOPBACK_WEBHOOKS: "true" },
      }),
      "--inspector-port",
      String(inspector),
      "--persist-to",
      dir,
      "--log-level",
      "warn",
      "--var",
      `MASTER_KEY:${secrets.master}`,
      "--var",
      `BOOTSTRAP_TOKEN:${secrets.bootstrap}`,
    ],
    { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let log = "";
  const keep = (d) => (log = (log + d).slice(-20_000));
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  onStop(() => stopChild(child));
  process.once("exit", () => killGroup(child, "SIGKILL"));
  const origin = `http://${HOST}:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${log}`);
    if (Date.now() > deadline) throw new Error(`Keywarden was not healthy within 120 s:\n${log}`);
    const ok = await fetch(`${origin}/healthz`, { signal: AbortSignal.timeout(2_000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await sleep(300);
  }
  return { origin, secrets, log: () => log };
}

export async function createTenant(kw, name) {
  const res = await fetch(`${kw.origin}/api/v1/tenants`, {
    method: "POST",
    headers: { authorization: `Bearer ${kw.secrets.bootstrap}`, "content-type": "application/json" },
    body: JSON.stringify({ name }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = await res.json();
  if (res.status !== 201) throw new Error(`creating tenant: ${res.status} ${JSON.stringify(body)}`);
  return { id: body.tenant.id, adminKey: body.admin_key };
}

/** A Bearer-authenticated JSON call for assertions made through the API. */
export async function apiAs(kw, key, method, path, body) {
  const res = await fetch(`${kw.origin}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/**
 * An RFC 6238 code (HMAC-SHA1, 6 digits) for a base32 secret and a 30 s time step, written independently of
 * the worker's own implementation, as an authenticator app would compute it.
 */
export function totpCode(base32Secret, step) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const char of base32Secret.replace(/=+$/, ""))
    bits += alphabet.indexOf(char).toString(2).padStart(5, "0");
  const secret = Buffer.from((bits.match(/.{8}/g) ?? []).map((byte) => Number.parseInt(byte, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", secret).update(counter).digest();
  const offset = mac[19] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

function listen(handler) {
  const server = createServer(handler);
  server.requestTimeout = 10_000;
  return new Promise((res) => {
    server.listen(0, HOST, () => {
      onStop(
        () =>
          new Promise((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      );
      res({ server, origin: `http://${HOST}:${server.address().port}` });
    });
  });
}

const json = (res, status, body) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

/**
 * The provider stand-in: Stripe's GET /v1/balance and OpenAI's GET /v1/models, reached as
 * `<origin>/<provider host><path>`, with the providers' documented success and 401 bodies.
 * Only keys registered with `accept()` are "known to the provider".
 */
export async function startProviderStandIn() {
  const known = new Set();
  const requests = [];
  const bearer = (req) => /^Bearer (.+)$/.exec(req.headers.authorization || "")?.[1];
  const { origin } = await listen((req, res) => {
    const url = new URL(req.url, "http://x");
    requests.push({ method: req.method, path: url.pathname, search: url.search, headers: req.headers });
    const token = bearer(req);
    if (req.method === "GET" && url.pathname === "/api.stripe.com/v1/balance") {
      if (token && /^(?:sk|rk)_(?:test|live)_/.test(token) && known.has(token)) {
        return json(res, 200, {
          object: "balance",
          available: [{ amount: 0, currency: "usd", source_types: { card: 0 } }],
          livemode: token.includes("_live_"),
          pending: [{ amount: 0, currency: "usd", source_types: { card: 0 } }],
        });
      }
      return json(res, 401, {
        error: { message: "Invalid API Key provided.", type: "invalid_request_error" },
      });
    }
    if (req.method === "GET" && url.pathname === "/api.openai.com/v1/models") {
      if (token && known.has(token)) {
        return json(res, 200, {
          object: "list",
          data: [{ id: "gpt-4o-mini", object: "model", created: 1721172741, owned_by: "system" }],
        });
      }
      return json(res, 401, {
        error: {
          message: "Incorrect API key provided.",
          type: "invalid_request_error",
          param: null,
          code: "invalid_api_key",
        },
      });
    }
    json(res, 404, { error: { message: "stand-in: no such route" } });
  });
  return { origin, requests, accept: (key) => known.add(key) };
}

/** Standard Webhooks verification (standardwebhooks.com): HMAC-SHA256 over `${id}.${ts}.${body}`. */
export function verifyStandardWebhook(secret, { headers, body }, toleranceS = 300) {
  const id = headers["webhook-id"];
  const ts = headers["webhook-timestamp"];
  const sigs = String(headers["webhook-signature"] || "").split(" ");
  if (!id || !ts || !secret?.startsWith("whsec_")) return false;
  if (Math.abs(Date.now() / 1000 - Number(ts)) > toleranceS) return false;
  const expected = createHmac("sha256", Buffer.from(secret.slice(6), "base64"))
    .update(`${id}.${ts}.${body}`)
    .digest();
  return sigs.some((s) => {
    const [v, b64] = s.split(",");
    const got = Buffer.from(b64 || "", "base64");
    return v === "v1" && got.length === expected.length && timingSafeEqual(got, expected);
  });
}

/** Records every POST; the test verifies signatures once it has read the secret the wizard showed once. */
export async function startWebhookReceiver() {
  const received = [];
  const { origin } = await listen((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      received.push({ method: req.method, path: req.url, headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  return { url: `${origin}/hooks/keywarden`, received };
}

export async function launchBrowser() {
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    timeout: 60_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
  onStop(() => browser.close());
  // Each e2e file launches its own browser; `npm run test:e2e` empties the folder once before them all.
  mkdirSync(SHOTS, { recursive: true });
  return browser;
}
