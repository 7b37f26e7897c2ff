// One benchmarked deployment: a host process running workerd with its own D1, a tenant created
// through the API, one API-issued "warm" key, and seeded keys up to a target count; plus the load
// scenarios that go with it.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { forkWorker } from "./ipc.mjs";
import { breakChecksum, mintStoredKey } from "./keys.mjs";
import { isWorkerd, log, stopChild } from "./system.mjs";

/** Key rows per IPC call to the host (one insertRows: a few D1 batches); two calls are in flight at once. */
const SEED_CHUNK = 20_000;
/** From this many keys on, api_keys' secondary indexes are dropped for the seed and built again after it. */
const REINDEX_FROM = 100_000;

/**
 * Starts an instance with exactly `storedKeys` rows in api_keys: the tenant's admin key, the warm key,
 * one probe key (checks the seeded rows verify, then never used again) and `storedKeys - 3` more.
 */
export async function startInstance({
  name,
  bench,
  root,
  work,
  buildDir,
  worker,
  secrets,
  storedKeys,
  options,
}) {
  const dir = join(work, name);
  mkdirSync(join(dir, "tmp"), { recursive: true });
  // Miniflare's temp files go under `work` too (TMPDIR), so removing `work` removes everything.
  const host = forkWorker(join(bench, "host.mjs"), { env: { ...process.env, TMPDIR: join(dir, "tmp") } });
  const instance = {
    name,
    host,
    inspectorPort: options.inspectorPort,
  };
  const started = await host.call({
    cmd: "start",
    args: {
      buildDir,
      persistDir: join(dir, "state"),
      migrationsDir: join(root, "migrations"),
      worker,
      secrets,
      ...options,
    },
  });
  Object.assign(instance, started);
  log(
    `${name}: workerd pid ${started.workerdPid} on ${started.url} (migrations ${started.migrations.join(", ")})`,
  );

  const api = async (path, token, body) => {
    const response = await fetch(new URL(path, instance.url), {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const json = await response.json();
    if (!response.ok) throw new Error(`${path} -> ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
  const { tenant, admin_key: adminKey } = await api("/api/v1/tenants", secrets.BOOTSTRAP_TOKEN, { name });
  instance.adminKey = adminKey;
  instance.prefix = tenant.key_prefix;
  instance.warm = await api("/api/v1/keys", adminKey, { name: "warm" });
  instance.credential = await api("/api/v1/credentials", adminKey, {
    service: "stripe",
    environment: "development",
    fields: { secret_key: stripeTestKey() },
  });

  const count = async () =>
    (await host.call({ cmd: "query", args: { sql: "SELECT count(*) AS n FROM api_keys" } }))[0].n;
  const seeding = performance.now();
  const { probe, seeded } = await seedKeys(host, tenant.id, instance.prefix, storedKeys - (await count()));
  const verdict = await api("/api/v1/keys/verify", adminKey, { key: probe.key });
  if (verdict.code !== "VALID" || verdict.key_id !== probe.row.id) {
    throw new Error(`a seeded key did not verify: ${JSON.stringify(verdict)}`);
  }
  instance.seeded = seeded;
  instance.storedCount = await count();
  instance.seedSeconds = (performance.now() - seeding) / 1000;
  log(`${name}: ${instance.storedCount} keys stored (seeded in ${instance.seedSeconds.toFixed(1)} s)`);
  instance.specs = scenarios(instance);

  /** Restarts workerd (fresh isolate, so empty caches) with changed options; D1 data persists on disk. */
  instance.restart = async (changes) => {
    Object.assign(
      instance,
      { inspectorPort: undefined, ...changes },
      await host.call({ cmd: "restart", args: changes }),
    );
    instance.specs = scenarios(instance);
  };
  instance.stop = async () => {
    if (instance.stopped) return;
    instance.stopped = true;
    await host.call({ cmd: "stop" }).catch(() => {});
    await stopChild(host.child);
    // Normally gone with Miniflare's dispose(); only if the host died first would it be left over.
    if (instance.workerdPid && isWorkerd(instance.workerdPid)) process.kill(instance.workerdPid);
  };
  return instance;
}

const verifyBody = (key) => JSON.stringify({ key });
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/** A random, real-shaped Stripe test key (the store scenario needs a distinct valid one per request). */
const stripeTestKey = () =>
  `sk_test_${Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => BASE62[b % 62]).join("")}`;
const storeBody = () =>
  JSON.stringify({ service: "stripe", environment: "development", fields: { secret_key: stripeTestKey() } });
const validPrefix = (id) => `{"valid":true,"code":"VALID","key_id":"${id}"`;

/**
 * Mints `count` keys of the tenant (bench/keys.mjs) and inserts them straight into D1, chunk by chunk, the next
 * chunk minted while the host inserts the last. Keeps only each key and its id (`{ key, row: { id } }`): a million
 * full row objects held 850 MB of heap and spent most of the seed in the garbage collector. For big seeds the
 * secondary indexes of api_keys are dropped and built again afterwards from their own definitions (read back from
 * sqlite_master), which sorts once instead of inserting a million random hashes one by one. The first key is the
 * probe (verified by the caller, then never used again).
 */
export async function seedKeys(host, tenantId, prefix, count) {
  const query = (sql) => host.call({ cmd: "query", args: { sql } });
  const indexes =
    count >= REINDEX_FROM
      ? await query(
          "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'api_keys' AND sql IS NOT NULL",
        )
      : [];
  for (const index of indexes) await query(`DROP INDEX ${index.name}`);
  const now = Date.now();
  const minted = [];
  const inFlight = [];
  for (let start = 0; start < count; start += SEED_CHUNK) {
    const rows = [];
    for (let i = start; i < Math.min(count, start + SEED_CHUNK); i++) {
      const { key, row } = mintStoredKey(tenantId, prefix, `bench-${i}`, now);
      minted.push({ key, row: { id: row.id } });
      rows.push(row);
    }
    inFlight.push(host.call({ cmd: "seed", args: { rows } }));
    if (inFlight.length === 2) await inFlight.shift();
  }
  await Promise.all(inFlight);
  for (const index of indexes) await query(index.sql);
  // The change feed's triggers (migration 0011) logged every seeded row. The seeded keys stand for keys stored
  // long ago, whose feed rows the cron purged after 48 h; left in, a million-key seed would look to every
  // isolate like a bulk import in progress. Nothing has changed a seeded key since, so nothing is lost. The newest
  // row stays, as the cron's purge keeps it (src/keys/key-change-feed.ts): emptied, the feed's head would read 0,
  // and every entry cached at head 0 would fall below the floor of an isolate that loads the feed after the next
  // change (the latency stage saw its warm keys miss the Cache API after each restart).
  const [feed] = await query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'key_changes'");
  if (feed) await query("DELETE FROM key_changes WHERE seq < (SELECT max(seq) FROM key_changes)");
  const [probe, ...seeded] = minted;
  return { probe, seeded };
}

/** Load specs (see load.mjs) for this instance: every response's status and body is checked. */
function scenarios({ url, adminKey, warm, credential }) {
  const verify = {
    url,
    method: "POST",
    path: "/api/v1/keys/verify",
    headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
  };
  return {
    healthz: () => ({ url, path: "/healthz", expect: { status: 200, body: '{"status":"ok"}' } }),
    /** workerd alone (bench/worker-entry.mjs answers, the app never runs): a GET, and a POST with verify's body. */
    rawGet: () => ({ url, path: "/__bench/raw", expect: { status: 200, body: '{"status":"ok"}' } }),
    rawPost: () => ({
      ...verify,
      path: "/__bench/raw",
      bodies: [verifyBody(breakChecksum(warm.key))],
      expect: { status: 200, body: '{"valid":false,"code":"INVALID_FORMAT"}' },
    }),
    /** The same two, answering with every header the app's answers carry. */
    rawGetHeaders: () => ({
      url,
      path: "/__bench/raw-headers",
      expect: { status: 200, body: '{"status":"ok"}' },
    }),
    /** The same with a fresh request id on every answer, as the app sets it. */
    rawGetHeadersId: () => ({
      url,
      path: "/__bench/raw-headers-id",
      expect: { status: 200, body: '{"status":"ok"}' },
    }),
    /** A one-route Hono app with the app's edge middleware and /healthz's prepared answer (bench/hono-floor.ts). */
    honoFloor: () => ({ url, path: "/__bench/hono", expect: { status: 200, body: '{"status":"ok"}' } }),
    rawPostHeaders: () => ({
      ...verify,
      path: "/__bench/raw-headers",
      bodies: [verifyBody(breakChecksum(warm.key))],
      expect: { status: 200, body: '{"valid":false,"code":"INVALID_FORMAT"}' },
    }),
    /** Workerd with the app's headers and the SHA-256 digests a verify cannot skip: 1 (bad checksum), 2 (warm). */
    rawDigests: (digests) => ({
      ...verify,
      path: `/__bench/raw-digests/${digests}`,
      bodies: [verifyBody(digests > 1 ? warm.key : breakChecksum(warm.key))],
      expect: { status: 200, body: '{"valid":false,"code":"INVALID_FORMAT"}' },
    }),
    warm: () => ({
      ...verify,
      bodies: [verifyBody(warm.key)],
      expect: { status: 200, prefix: validPrefix(warm.id) },
    }),
    badChecksum: () => ({
      ...verify,
      bodies: [verifyBody(breakChecksum(warm.key))],
      expect: { status: 200, body: '{"valid":false,"code":"INVALID_FORMAT"}' },
    }),
    /** Well-formed keys that were never stored; `distinct` when each request should carry a new one. */
    unknown: (keys) => ({
      ...verify,
      bodies: keys.map(verifyBody),
      distinct: keys.length > 1,
      expect: { status: 200, body: '{"valid":false,"code":"NOT_FOUND"}' },
    }),
    /** Credential reveal: tenant lookup, version read, DEK unwrap (cached) and AES-GCM decrypt, audited. */
    reveal: () => ({
      ...verify,
      path: `/api/v1/credentials/${credential.id}/reveal`,
      bodies: ["{}"],
      expect: {
        status: 200,
        prefix: `{"id":"${credential.id}","service":"stripe","version":1,"fields":{"secret_key":"sk_test_`,
      },
    }),
    /** Credential store: catalogue validation, AES-GCM encrypt, one D1 batch with its audit row. */
    store: (count) => ({
      ...verify,
      path: "/api/v1/credentials",
      bodies: Array.from({ length: count }, storeBody),
      distinct: true,
      expect: { status: 201, prefix: '{"id":"cred_' },
    }),
    /** Stored keys, each sent once; every answer must be VALID with that key's own id. */
    cold: (stored) => ({
      ...verify,
      bodies: stored.map((k) => verifyBody(k.key)),
      distinct: true,
      expect: { status: 200, prefixes: stored.map((k) => validPrefix(k.row.id)) },
    }),
  };
}
