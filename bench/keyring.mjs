// The keyring stage (issue 10): 10,000 tenants, each with a DEK wrapped under master:1, and 100,000 sealed
// credential fields held by 2,000 of them. Switches KEK_VERSION to 2 and lets the cron's KEK re-wrap Workflow
// move every DEK to master:2, then makes the 2,000 DEKs due and lets the rotation scheduler's DEK rotation
// Workflows re-encrypt every field under a new DEK; verify and reveal throughput is measured while each runs,
// against the same instance idle. Both Workflows run for real here (Miniflare's engine, in the same workerd). Runs alone with
// BENCH_ONLY=keyring. See bench/README.md, "The keyring".
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  deriveMasterKek,
  importDek,
  maskValue,
  newDek,
  openField,
  sealField,
  unwrapDek,
  wrapDek,
} from "./envelope.mjs";
import { startInstance } from "./instance.mjs";
import { forkWorker } from "./ipc.mjs";
import { mintStoredKey, randomBase62 } from "./keys.mjs";
import { summarize, table } from "./report.mjs";
import { cronInterval } from "./scheduler.mjs";
import { cpuSeconds, log, machineBusySeconds, pinToCpu, sleep, stopChild } from "./system.mjs";

export const KEYRING_SETTINGS = {
  /** Tenants, each with one DEK and one credential; BENCH_KEYRING_TENANTS scales the stage down. */
  tenants: Number(process.env.BENCH_KEYRING_TENANTS ?? 10_000),
  /**
   * Tenants that hold sealed fields, and whose DEK the stage rotates: 2,000 x 5 credentials x 10 versions =
   * 100,000 fields. Not all 10,000: Miniflare keeps every Workflow instance (and every tenant's AuditChain)
   * as a Durable Object with its own SQLite file open in workerd, and at about 6,400 DEK rotations workerd ran
   * out of file descriptors (SQLITE_CANTOPEN; 20,000 here) and died. See bench/README.md.
   */
  rotatedTenants: Number(process.env.BENCH_KEYRING_ROTATED ?? 2_000),
  /** Credentials per rotated tenant, and versions per credential (one secret field each). */
  credentials: 5,
  versions: 10,
  /** Tenants whose every field is revealed through the API after the stage (each gets a reveal-only key). */
  sampleTenants: 20,
  /**
   * Length of one load run while the background work runs: shorter than the baseline's, so that a re-wrap of a
   * few seconds still gets whole runs inside it (only runs that end before the work does count).
   */
  duringSeconds: 1,
  /** The same during the KEK re-wrap, which takes a few seconds for 10,000 DEKs. */
  rewrapSeconds: 0.5,
  /** How often D1 is asked how far the re-wrap has come (it is over in seconds). */
  rewrapPollMs: 100,
  /** How often D1 is asked how far the background work has come. */
  pollMs: 500,
  /** A safety stop for each phase: the bench fails if the work has not ended by then. */
  maxPhaseSeconds: Number(process.env.BENCH_KEYRING_MAX_SECONDS ?? 1_800),
  /** A safety stop for the DEK rotation's ticks. */
  maxTicks: 20,
};

const DAY_MS = 86_400_000;
const SEED_CHUNK = 5_000;

/** `export const NAME = <integer>;` read from a source file, so the report names the engines' real settings. */
function sourceConstant(root, file, name) {
  const text = readFileSync(join(root, file), "utf8").replaceAll("_", "");
  const value = new RegExp(`export const ${name.replaceAll("_", "")}\\s*=\\s*(\\d+)\\s*;`).exec(text)?.[1];
  if (value === undefined) throw new Error(`${file}: expected "export const ${name} = <integer>;"`);
  return Number(value);
}

/** workerd's resident memory, in MB (0 once it is gone). */
function rssMb(pid) {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return Number(kb) / 1024;
  } catch {
    return 0;
  }
}

/** Waits until workerd has used (almost) no CPU for 200 ms. */
async function settle(pid, limitSeconds = 60) {
  for (let i = 0; i < limitSeconds * 5; i++) {
    const before = cpuSeconds(pid);
    await sleep(200);
    if (cpuSeconds(pid) - before <= 0.01) return;
  }
  throw new Error(`keyring: workerd did not become idle within ${limitSeconds} s`);
}

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/** A real-shaped Stripe test key, as the catalogue validates them. */
const stripeTestKey = () =>
  `sk_test_${Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => BASE62[b % 62]).join("")}`;
const recordId = (credentialId, version) => `${credentialId}#${version}`;

async function api(instance, method, path, token, body) {
  const response = await fetch(new URL(path, instance.url), {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path} -> ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/**
 * Seeds the stage's data straight into D1, next to the tenant and credential the API stored (the template):
 * the template's credential gets versions 2..N sealed here under its own DEK (which Node unwraps with
 * MASTER_KEY, a first check of the copied format), and every other tenant gets a DEK v1 under master:1; the
 * first `rotatedTenants` (the template among them) hold `credentials` credentials of N versions. Returns every
 * plaintext by credential, the tenants whose fields the stage reveals through the API afterwards, each with a
 * reveal-only key, and the load's credential.
 */
async function seed(instance, secrets, settings) {
  const { host } = instance;
  const query = async (sql) => host.call({ cmd: "query", args: { sql } });
  const insert = async (name, rows) => {
    for (let i = 0; i < rows.length; i += SEED_CHUNK)
      await host.call({ cmd: "insert", args: { table: name, rows: rows.slice(i, i + SEED_CHUNK) } });
  };
  const kek1 = await deriveMasterKek(secrets.MASTER_KEY, 1);
  const [tenant] = await query("SELECT * FROM tenants");
  const [credential] = await query(`SELECT * FROM credentials WHERE id = '${instance.credential.id}'`);
  const [version1] = await query(
    `SELECT * FROM credential_versions WHERE credential_id = '${credential.id}' AND version = 1`,
  );
  const [dataKey] = await query(`SELECT * FROM data_keys WHERE tenant_id = '${tenant.id}'`);
  if (dataKey.kek_provider !== "master" || dataKey.kek_version !== 1 || dataKey.version !== 1)
    throw new Error(`keyring: the API's tenant DEK is not v1 under master:1: ${JSON.stringify(dataKey)}`);

  // The format, one way: Node opens the DEK and the field the worker wrote, and reads what the API reveals.
  const revealed = await api(
    instance,
    "POST",
    `/api/v1/credentials/${credential.id}/reveal`,
    instance.adminKey,
    {},
  );
  const templateDek = await importDek(await unwrapDek(kek1, dataKey.wrapped_key, tenant.id, 1, 1));
  const opened = await openField(
    async () => templateDek,
    { tenantId: tenant.id, recordId: recordId(credential.id, 1), field: "secret_key" },
    JSON.parse(version1.sealed_fields).secret_key,
  );
  if (opened !== revealed.fields.secret_key)
    throw new Error("keyring: bench/envelope.mjs does not open the field the worker sealed");

  const n = settings.versions;
  const now = Date.now();
  /** plaintexts.get(credentialId) = { tenantId, values: [v1, ..., vN] } */
  const plaintexts = new Map();
  const versionRows = (tenantId, credentialId, dek, values, from) =>
    Promise.all(
      values.slice(from - 1).map(async (value, i) => {
        const version = from + i;
        const sealed = await sealField(
          dek,
          1,
          { tenantId, recordId: recordId(credentialId, version), field: "secret_key" },
          value,
        );
        return {
          ...version1,
          credential_id: credentialId,
          tenant_id: tenantId,
          version,
          sealed_fields: JSON.stringify({ secret_key: sealed }),
          dek_version: 1,
          display_fields: JSON.stringify({ secret_key: maskValue(value) }),
          stage: version === n ? "current" : version === n - 1 ? "previous" : null,
          provider_key_id: null,
          created_at: now - (n - version) * 60_000,
        };
      }),
    );
  /** A credential of `tenantId` with N versions sealed under `dek`: its row and its version rows. */
  const newCredential = async (tenantId, dek, name) => {
    const credentialId = `cred_${randomBase62(22)}`;
    const values = Array.from({ length: n }, stripeTestKey);
    plaintexts.set(credentialId, { tenantId, values });
    return {
      credential: {
        ...credential,
        id: credentialId,
        tenant_id: tenantId,
        name,
        current_version: n,
        revision: 1,
        next_test_at: null,
        created_at: now,
        updated_at: now,
      },
      versions: await versionRows(tenantId, credentialId, dek, values, 1),
    };
  };

  // The template tenant: its credential gets versions 2..N under the API's DEK (version N becomes current),
  // and it gets the other credentials a rotated tenant holds.
  const templateValues = [revealed.fields.secret_key, ...Array.from({ length: n - 1 }, stripeTestKey)];
  plaintexts.set(credential.id, { tenantId: tenant.id, values: templateValues });
  await query(
    `UPDATE credential_versions SET stage = NULL WHERE credential_id = '${credential.id}' AND version = 1`,
  );
  const templateRows = { credentials: [], credential_versions: [] };
  templateRows.credential_versions.push(
    ...(await versionRows(tenant.id, credential.id, templateDek, templateValues, 2)),
  );
  for (let c = 1; c < settings.credentials; c++) {
    const made = await newCredential(tenant.id, templateDek, `bench-0-${c}`);
    templateRows.credentials.push(made.credential);
    templateRows.credential_versions.push(...made.versions);
  }
  for (const [name, list] of Object.entries(templateRows)) await insert(name, list);
  await query(
    `UPDATE credentials SET current_version = ${n}, revision = revision + 1, next_test_at = NULL WHERE id = '${credential.id}'`,
  );
  await query(
    `UPDATE data_keys SET encryption_count = ${n * settings.credentials} WHERE tenant_id = '${tenant.id}' AND version = 1`,
  );

  // Every other tenant, in chunks: tenant and DEK v1 under master:1; the first `rotatedTenants` (with the
  // template) also hold `credentials` credentials of N versions each.
  const perChunk = Math.max(1, Math.floor(SEED_CHUNK / (n * settings.credentials)));
  const holders = [];
  for (let start = 1; start < settings.tenants; start += perChunk) {
    const rows = { tenants: [], data_keys: [], credentials: [], credential_versions: [] };
    const count = Math.min(perChunk, settings.tenants - start);
    await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const index = start + i;
        const tenantId = `ten_${randomBase62(22)}`;
        const dek = await newDek();
        const holds = index < settings.rotatedTenants;
        rows.tenants.push({ id: tenantId, name: `bench-${index}`, key_prefix: "kw", created_at: now });
        rows.data_keys.push({
          ...dataKey,
          tenant_id: tenantId,
          wrapped_key: await wrapDek(kek1, dek.raw, tenantId, 1, 1),
          encryption_count: holds ? n * settings.credentials : 0,
          next_rotation_at: now + 90 * DAY_MS,
          created_at: now,
        });
        if (!holds) return;
        holders.push(tenantId);
        for (let c = 0; c < settings.credentials; c++) {
          const made = await newCredential(tenantId, dek.key, `bench-${index}-${c}`);
          rows.credentials.push(made.credential);
          rows.credential_versions.push(...made.versions);
        }
      }),
    );
    for (const [name, list] of Object.entries(rows)) await insert(name, list);
  }

  // Reveal-only keys for the sampled tenants (spread over the seeding order), and the template.
  const step = Math.max(1, Math.floor(holders.length / settings.sampleTenants));
  const sample = holders.filter((_, i) => i % step === 0).slice(0, settings.sampleTenants);
  const keys = sample.map((tenantId, i) => {
    const minted = mintStoredKey(tenantId, "kw", `bench-reveal-${i}`, now);
    minted.row.scopes = JSON.stringify(["credentials:reveal"]);
    return { tenantId, key: minted.key, row: minted.row };
  });
  await insert(
    "api_keys",
    keys.map((k) => k.row),
  );
  const sampled = [{ tenantId: tenant.id, key: instance.adminKey }, ...keys];

  const fieldsWanted = settings.rotatedTenants * settings.credentials * n;
  const [{ tenants, fields, deks }] = await query(
    `SELECT (SELECT count(*) FROM tenants) AS tenants,
            (SELECT count(*) FROM credential_versions WHERE dek_version = 1) AS fields,
            (SELECT count(*) FROM data_keys WHERE kek_provider = 'master' AND kek_version = 1) AS deks`,
  );
  if (tenants !== settings.tenants || deks !== settings.tenants || fields !== fieldsWanted)
    throw new Error(`keyring: seeded ${tenants} tenants, ${deks} DEKs, ${fields} fields`);

  // The format, the other way: the worker reveals fields Node sealed, under a seeded DEK and the API's DEK.
  await checkReveals(instance, plaintexts, [sampled[0], sampled[1]], [1, Math.ceil(n / 2), n]);
  return { plaintexts, sampled, tenantId: tenant.id, credentialId: credential.id, fields };
}

/** Reveals `versions` of each tenant's credentials through the API; every value must be its plaintext. */
async function checkReveals(instance, plaintexts, tenants, versions) {
  let checked = 0;
  for (const { tenantId, key } of tenants) {
    for (const [credentialId, { values }] of plaintexts) {
      if (plaintexts.get(credentialId).tenantId !== tenantId) continue;
      for (const version of versions) {
        const body = await api(instance, "POST", `/api/v1/credentials/${credentialId}/reveal`, key, {
          version,
        });
        if (body.version !== version || body.fields.secret_key !== values[version - 1])
          throw new Error(`keyring: ${credentialId} version ${version} did not reveal its seeded plaintext`);
        checked++;
      }
    }
  }
  if (checked === 0) throw new Error("keyring: no credential to reveal");
  return checked;
}

/**
 * After the stage: every stored field opened in Node with the DEK its row names (unwrapped with the master
 * secret its data key row names), and compared with its plaintext; every row's dek_version must be its blobs'.
 */
async function checkAllFields(query, secrets, plaintexts) {
  const keks = {
    1: await deriveMasterKek(secrets.MASTER_KEY, 1),
    2: await deriveMasterKek(secrets.MASTER_KEY_2, 2),
  };
  const deks = new Map();
  for (const row of await query(
    "SELECT tenant_id, version, kek_provider, kek_version, wrapped_key FROM data_keys",
  )) {
    if (row.kek_provider !== "master" || !keks[row.kek_version])
      throw new Error(
        `keyring: DEK ${row.tenant_id} v${row.version} is under ${row.kek_provider}:${row.kek_version}`,
      );
    deks.set(
      `${row.tenant_id}:${row.version}`,
      importDek(
        await unwrapDek(keks[row.kek_version], row.wrapped_key, row.tenant_id, row.version, row.kek_version),
      ),
    );
  }
  const rows = await query(
    "SELECT tenant_id, credential_id, version, dek_version, sealed_fields FROM credential_versions",
  );
  let opened = 0;
  for (let i = 0; i < rows.length; i += 1_000) {
    await Promise.all(
      rows.slice(i, i + 1_000).map(async (row) => {
        const expected = plaintexts.get(row.credential_id)?.values[row.version - 1];
        const value = await openField(
          async (version) => {
            if (version !== row.dek_version)
              throw new Error(
                `keyring: ${row.credential_id}#${row.version} names DEK ${version}, row ${row.dek_version}`,
              );
            const dek = deks.get(`${row.tenant_id}:${version}`);
            if (!dek) throw new Error(`keyring: no DEK ${row.tenant_id} v${version}`);
            return dek;
          },
          {
            tenantId: row.tenant_id,
            recordId: recordId(row.credential_id, row.version),
            field: "secret_key",
          },
          JSON.parse(row.sealed_fields).secret_key,
        );
        if (value !== expected)
          throw new Error(`keyring: ${row.credential_id}#${row.version} changed its value`);
        opened++;
      }),
    );
  }
  return opened;
}

/**
 * Load runs against the stage's instance. An idle run (the baseline) starts with workerd idle and follows an
 * unmeasured warm-up, as every other stage does; a busy run starts at once, while the background work runs.
 */
function meter(instance, load, settings) {
  const ourCpu = () =>
    [load.child.pid, instance.workerdPid, instance.host.child.pid].reduce(
      (total, pid) => total + cpuSeconds(pid),
      (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    );
  return async function run(label, spec, { idle }) {
    log(`keyring: ${label}`);
    const base = { connections: settings.connections, duration: settings.seconds, ...spec };
    if (idle) {
      await settle(instance.workerdPid);
      await load.call({ spec: { ...base, duration: settings.warmupSeconds } });
    }
    const before = {
      workerd: cpuSeconds(instance.workerdPid),
      ours: ourCpu(),
      machine: machineBusySeconds(),
    };
    const started = performance.now();
    const result = await load.call({ spec: base });
    const ended = performance.now();
    const after = { workerd: cpuSeconds(instance.workerdPid), ours: ourCpu(), machine: machineBusySeconds() };
    if (!idle) log(`keyring:   ${result.ok} answered, ${result.bad} wrong, ${result.timeouts} timeouts`);
    return {
      ...result,
      // The run's window, not first-to-last response: a run that stalls behind the background work and gets few
      // (or no) answers must count its whole window.
      seconds: Math.max(result.seconds, base.duration),
      started,
      ended,
      wall: (ended - started) / 1000,
      workerdCpuSeconds: after.workerd - before.workerd,
      trailingCpuSeconds: 0,
      otherCpuSeconds: Math.max(0, after.machine - before.machine - (after.ours - before.ours)),
    };
  };
}

/** Asks D1 (its file, bench/d1-peek.mjs) every `pollMs` how far the work is; `points` holds { t (ms, performance.now()), ...row, rssMb }. */
function poller(instance, peek, sql, pollMs) {
  const points = [];
  const failures = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const asked = performance.now();
      try {
        const [row] = await peek.call({ cmd: "query", args: { sql } });
        points.push({ t: (asked + performance.now()) / 2, ...row, rssMb: rssMb(instance.workerdPid) });
      } catch (error) {
        // A poll that fails (the database busy for longer than the busy timeout) is noted, not fatal.
        failures.push({ t: asked, error: String(error).slice(0, 300) });
        log(
          `keyring: a progress query failed after ${Math.round(performance.now() - asked)} ms: ${failures.at(-1).error}`,
        );
        if (failures.length > 20) throw new Error(`keyring: 20 progress queries failed`);
      }
      await sleep(pollMs);
    }
  })();
  loop.catch(() => {});
  return {
    points,
    failures,
    latest: () => points.at(-1),
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/**
 * Verify and reveal runs, alternating, until `finished()` says the background work has ended. Only runs that
 * ended before the work did count as "during" (a run that straddles the end is dropped, and counted).
 */
async function loadDuring(run, specs, seconds, finished, endedAt) {
  const runs = Object.fromEntries(Object.keys(specs).map((name) => [name, []]));
  let straddled = 0;
  let round = 0;
  while (!finished()) {
    round++;
    for (const [name, spec] of Object.entries(specs)) {
      if (finished()) break;
      const result = await run(
        `${name} during (run ${round})`,
        { ...spec, duration: seconds },
        { idle: false },
      );
      if (finished() && result.ended > endedAt()) straddled++;
      else runs[name].push(result);
    }
  }
  return { runs, straddled };
}

/** Starts its own instance, seeds it, re-wraps and re-encrypts under load, checks, stops the instance. */
export async function runKeyringStage({
  bench,
  root,
  work,
  buildDir,
  worker,
  secrets: baseSecrets,
  ratelimitLimit,
  settings: runSettings,
}) {
  const settings = { ...KEYRING_SETTINGS, ...runSettings };
  const interval = cronInterval(root);
  const engine = {
    rewrapChunk: sourceConstant(root, "src/vault/kek-rewrap.ts", "REWRAP_CHUNK"),
    schedulerChunk: sourceConstant(root, "src/lifecycle/scheduler.ts", "DEK_ROTATIONS_PER_SECOND"),
    rewrapPauseMs: sourceConstant(root, "src/vault/kek-rewrap.ts", "REWRAP_PAUSE_MS"),
    schedulerMaxChunks: sourceConstant(root, "src/lifecycle/scheduler.ts", "SCHEDULER_MAX_CHUNKS"),
  };
  const secrets = {
    ...baseSecrets,
    MASTER_KEY_2: Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64"),
  };
  const kekVersion = (version) => ({ ...worker, vars: { ...worker.vars, KEK_VERSION: String(version) } });
  const load = forkWorker(join(bench, "load.mjs"));
  const peek = forkWorker(join(bench, "d1-peek.mjs"), { execArgv: ["--no-warnings=ExperimentalWarning"] });
  let instance;
  try {
    let took = performance.now();
    instance = await startInstance({
      name: "keyring",
      bench,
      root,
      work,
      buildDir,
      worker: kekVersion(1),
      secrets,
      storedKeys: 3,
      options: { leanRatelimit: true, ratelimitLimit },
    });
    const seeded = await seed(instance, secrets, settings);
    const seedSeconds = (performance.now() - took) / 1000;
    log(
      `keyring: ${settings.tenants} tenants with a DEK under master:1 and ${seeded.fields} sealed fields, seeded and checked in ${seedSeconds.toFixed(0)} s`,
    );
    const { host } = instance;
    const query = async (sql) => host.call({ cmd: "query", args: { sql } });
    await peek.call({ cmd: "open", args: { persistDir: join(work, "keyring", "state") } });
    /** Reads through the database file: answers even while workerd is swamped (bench/d1-peek.mjs). */
    const read = async (sql) => peek.call({ cmd: "query", args: { sql } });
    const pin = () => {
      pinToCpu(load.child.pid, 0);
      pinToCpu(instance.workerdPid, 1);
    };

    // KEK_VERSION=2 with MASTER_KEY_2 present: the new configuration, before the cron has seen it.
    log("keyring: restarting workerd with KEK_VERSION=2 (D1 persists)");
    await instance.restart({ worker: kekVersion(2) });
    pin();
    const run = meter(instance, load, settings);
    const specs = {
      verify: instance.specs.warm(),
      reveal: {
        ...instance.specs.reveal(),
        connections: settings.vaultConnections,
        expect: {
          status: 200,
          prefix: `{"id":"${seeded.credentialId}","service":"stripe","version":${settings.versions},"fields":{"secret_key":"${seeded.plaintexts.get(seeded.credentialId).values.at(-1)}"}`,
        },
      },
    };

    // Baseline: the same instance and configuration, nothing in the background; rounds as the other stages.
    const baseline = { verify: [], reveal: [] };
    for (let round = 1; round <= settings.rounds; round++) {
      for (const [name, spec] of Object.entries(specs))
        baseline[name].push(await run(`${name} baseline (round ${round})`, spec, { idle: true }));
    }

    // KEK re-wrap: one cron tick starts the Workflow; load runs while D1 is polled for master:1 keys.
    await settle(instance.workerdPid);
    const rewrapTime = Math.ceil((Date.now() + 1_000) / (interval.seconds * 1000)) * interval.seconds * 1000;
    const rewrapPoll = poller(
      instance,
      peek,
      `SELECT (SELECT count(*) FROM data_keys WHERE kek_provider = 'master' AND kek_version = 1) AS deks,
              (SELECT count(*) FROM system_keys WHERE kek_provider = 'master' AND kek_version = 1) AS system,
              (SELECT count(*) FROM rotation_runs WHERE subject_type = 'keyring' AND state = 'in_progress') AS running,
              (SELECT count(*) FROM rotation_runs WHERE subject_type = 'keyring') AS runs`,
      settings.rewrapPollMs,
    );
    const [{ system: systemKeysBefore }] = await query(
      "SELECT count(*) AS system FROM system_keys WHERE kek_provider = 'master' AND kek_version = 1",
    );
    const rewrapCpu = cpuSeconds(instance.workerdPid);
    const rewrapStart = performance.now();
    // The load starts with the tick, not after it: the whole re-wrap lasts about as long as a few load runs.
    const rewrapTicked = host.call({
      cmd: "scheduled",
      args: { scheduledTime: rewrapTime, cron: interval.cron },
    });
    rewrapTicked.catch(() => {});
    const rewrapDone = () => {
      const p = rewrapPoll.latest();
      return p !== undefined && p.runs > 0 && p.deks === 0 && p.system === 0 && p.running === 0;
    };
    const rewrapDeadline = rewrapStart + settings.maxPhaseSeconds * 1000;
    const rewrapEnd = () =>
      rewrapPoll.points.find((p) => p.deks === 0 && p.system === 0 && p.running === 0)?.t;
    const rewrapLoad = await loadDuring(
      run,
      specs,
      settings.rewrapSeconds,
      () => rewrapDone() || performance.now() > rewrapDeadline,
      () => rewrapEnd() ?? Number.POSITIVE_INFINITY,
    );
    await rewrapPoll.stop();
    const rewrapTick = await rewrapTicked;
    if (rewrapTick.outcome !== "ok") throw new Error(`keyring: the re-wrap tick ended ${rewrapTick.outcome}`);
    if (!rewrapDone())
      throw new Error(`keyring: the re-wrap did not end within ${settings.maxPhaseSeconds} s`);
    const rewrapCpuSeconds = cpuSeconds(instance.workerdPid) - rewrapCpu;
    const deksMovedAt = rewrapPoll.points.find((p) => p.deks === 0).t;
    const rewrap = {
      tickWallMs: rewrapTick.wallMs,
      deks: settings.tenants,
      systemKeys: systemKeysBefore,
      chunks: Math.ceil(settings.tenants / engine.rewrapChunk),
      deksSeconds: (deksMovedAt - rewrapStart) / 1000,
      seconds: (rewrapEnd() - rewrapStart) / 1000,
      workerdCpuSeconds: rewrapCpuSeconds,
      peakRssMb: Math.max(...rewrapPoll.points.map((p) => p.rssMb)),
      progress: rewrapPoll.points.map((p) => ({ s: (p.t - rewrapStart) / 1000, deks: p.deks })),
      load: Object.fromEntries(Object.entries(rewrapLoad.runs).map(([k, runs]) => [k, runs])),
      straddled: rewrapLoad.straddled,
    };
    log(
      `keyring: re-wrap of ${rewrap.deks} DEKs and ${rewrap.systemKeys} system keys ended ${rewrap.seconds.toFixed(1)} s after the tick`,
    );

    // DEK re-encryption: every active DEK due now; ticks one cron interval apart (by scheduled time) until every
    // tenant's rotation has a Workflow; load runs while D1 is polled for fields still under a v1 DEK.
    await settle(instance.workerdPid, 120);
    const firstTick = Math.ceil((Date.now() + 1_000) / (interval.seconds * 1000)) * interval.seconds * 1000;
    await query(
      `UPDATE data_keys SET next_rotation_at = ${firstTick - 60_000}
       WHERE status = 'active' AND tenant_id IN (SELECT DISTINCT tenant_id FROM credential_versions)`,
    );
    const reencryptPoll = poller(
      instance,
      peek,
      `SELECT (SELECT count(*) FROM credential_versions WHERE dek_version = 1) AS fields,
              (SELECT count(*) FROM rotation_runs WHERE subject_type = 'data_key') AS runs,
              (SELECT count(*) FROM data_keys WHERE status = 'active' AND version = 2) AS deks`,
      settings.pollMs,
    );
    const reencryptCpu = cpuSeconds(instance.workerdPid);
    const reencryptStart = performance.now();
    const ticks = [];
    let ticking = true;
    const tickLoop = (async () => {
      try {
        for (let k = 0; k < settings.maxTicks; k++) {
          const [{ runs: before }] = await read(
            "SELECT count(*) AS runs FROM rotation_runs WHERE subject_type = 'data_key'",
          );
          if (before >= settings.rotatedTenants) return;
          const scheduledTime = firstTick + k * interval.seconds * 1000;
          const firedAt = performance.now();
          // Fired through Miniflare's proxy, which can fail while workerd is swamped. The tick itself may still
          // run; either way the next tick (one interval later) claims whatever is still due, as a cron would.
          const fired = await host
            .call({ cmd: "scheduled", args: { scheduledTime, cron: interval.cron } })
            .catch((error) => ({
              outcome: String(error).slice(0, 200),
              wallMs: performance.now() - firedAt,
            }));
          if (fired.outcome !== "ok") log(`keyring: DEK rotation tick ${k + 1} ended: ${fired.outcome}`);
          const [{ runs: after }] = await read(
            "SELECT count(*) AS runs FROM rotation_runs WHERE subject_type = 'data_key'",
          );
          ticks.push({
            offsetS: k * interval.seconds,
            firedS: (firedAt - reencryptStart) / 1000,
            started: after - before,
            wallMs: fired.wallMs,
            outcome: fired.outcome,
          });
          log(
            `keyring: tick ${k + 1} started ${after - before} DEK rotations in ${Math.round(fired.wallMs)} ms`,
          );
        }
        throw new Error(`keyring: not every DEK rotation started after ${settings.maxTicks} ticks`);
      } finally {
        ticking = false;
      }
    })();
    // Awaited below; until then a failure must not end the process as an unhandled rejection.
    tickLoop.catch(() => {});
    const reencryptDeadline = reencryptStart + settings.maxPhaseSeconds * 1000;
    const reencryptEnd = () => reencryptPoll.points.find((p) => p.fields === 0)?.t;
    const reencryptDone = () => !ticking && reencryptPoll.latest()?.fields === 0;
    const reencryptLoad = await loadDuring(
      run,
      specs,
      settings.duringSeconds,
      () => reencryptDone() || performance.now() > reencryptDeadline,
      () => reencryptEnd() ?? Number.POSITIVE_INFINITY,
    );
    await tickLoop;
    await reencryptPoll.stop();
    if (!reencryptDone())
      throw new Error(`keyring: fields still under DEK v1 after ${settings.maxPhaseSeconds} s`);
    const reencryptCpuSeconds = cpuSeconds(instance.workerdPid) - reencryptCpu;
    const reencrypt = {
      fields: seeded.fields,
      ticks,
      seconds: (reencryptEnd() - reencryptStart) / 1000,
      workerdCpuSeconds: reencryptCpuSeconds,
      peakRssMb: Math.max(...reencryptPoll.points.map((p) => p.rssMb)),
      progress: reencryptPoll.points.map((p) => ({ s: (p.t - reencryptStart) / 1000, fields: p.fields })),
      load: reencryptLoad.runs,
      straddled: reencryptLoad.straddled,
    };
    log(`keyring: every field re-encrypted ${reencrypt.seconds.toFixed(1)} s after the first tick`);

    // Checks: every field opens to its plaintext (all of them in Node, a sample through the API), every DEK is
    // under master:2, and the old DEKs wait for their deletion as `retiring`.
    await settle(instance.workerdPid, 120);
    const revealed = await checkReveals(
      instance,
      seeded.plaintexts,
      seeded.sampled,
      Array.from({ length: settings.versions }, (_, i) => i + 1),
    );
    const opened = await checkAllFields(read, secrets, seeded.plaintexts);
    const [state] = await read(
      `SELECT (SELECT count(*) FROM data_keys WHERE kek_provider = 'master' AND kek_version = 2) AS under2,
              (SELECT count(*) FROM data_keys WHERE NOT (kek_provider = 'master' AND kek_version = 2)) AS other,
              (SELECT count(*) FROM data_keys WHERE status = 'active' AND version = 2) AS active2,
              (SELECT count(*) FROM data_keys WHERE status = 'retiring' AND version = 1) AS retiring1,
              (SELECT count(*) FROM credential_versions WHERE dek_version <> 2) AS notMoved,
              (SELECT count(*) FROM system_keys WHERE NOT (kek_provider = 'master' AND kek_version = 2)) AS systemOther`,
    );
    if (
      state.other !== 0 ||
      state.systemOther !== 0 ||
      state.active2 !== settings.rotatedTenants ||
      state.notMoved !== 0 ||
      opened !== seeded.fields
    )
      throw new Error(`keyring: the stage ended wrong: ${JSON.stringify({ ...state, opened })}`);
    took = (performance.now() - took) / 1000;
    return {
      settings,
      engine,
      interval,
      seedSeconds,
      stageSeconds: took,
      tenants: settings.tenants,
      fields: seeded.fields,
      baseline,
      rewrap,
      reencrypt,
      checked: { revealed, opened, retiring: state.retiring1, sampledTenants: seeded.sampled.length },
    };
  } finally {
    await instance?.stop();
    await stopChild(load.child);
    await stopChild(peek.child);
  }
}

const int = (n) => Math.round(n).toLocaleString("en-US");
const round3 = (n) => Math.round(n * 1000) / 1000;
const ms = (n) => n.toFixed(2);

/** The printed tables and the JSON fields of the keyring stage. */
export function keyringReport(result) {
  const { baseline, rewrap, reencrypt, settings, engine, interval } = result;
  const base = { verify: summarize(baseline.verify), reveal: summarize(baseline.reveal) };
  const during = (phase) =>
    Object.fromEntries(
      Object.entries(phase.load).map(([name, runs]) => [name, runs.length ? summarize(runs) : null]),
    );
  const rewrapFig = during(rewrap);
  const reencryptFig = during(reencrypt);
  const ratio = (f, b) => (f ? round3(f.rps / b.rps) : null);
  const row = (label, f, b) =>
    f
      ? [
          label,
          int(f.rps),
          String(f.runs.length),
          f.requests ? ms(f.p50) : "-",
          f.requests ? ms(f.p99) : "-",
          b ? `${(f.rps / b.rps).toFixed(2)}x` : "1.00x",
          int(f.requests),
          String(f.bad),
          `${Math.round(f.serverCpu * 100)}%`,
        ]
      : [label, "-", "0", "-", "-", "-", "0", "0", "-"];
  const fieldsPerSecond = reencrypt.fields / reencrypt.seconds;
  const productive = reencrypt.ticks.filter((t) => t.started > 0);
  const lines = [
    `Keyring (issue 10): ${int(result.tenants)} tenants, each with a DEK v1 under master:1; ${int(result.fields)} sealed fields held by ` +
      `${int(settings.rotatedTenants)} of them (${settings.credentials} credentials x ${settings.versions} versions each); seeded straight into D1 in ${result.seedSeconds.toFixed(0)} s;`,
    "the KEK re-wrap and the DEK rotations are real Workflows (Miniflare's engine) in the same workerd as the measured",
    "traffic, on the same core: 'during' throughput includes that background work. D1 is simulated in-process.",
    `verify = warm key, ${settings.connections} connections; reveal = one tenant's current version (its plaintext checked), ${settings.vaultConnections} connections;`,
    `baseline = the same instance (KEK_VERSION=2) before the cron saw the change, median of ${settings.rounds} runs of ${settings.seconds} s;`,
    `during = median of back-to-back runs (verify and reveal alternating; ${settings.rewrapSeconds} s in the re-wrap, ${settings.duringSeconds} s in the re-encryption)`,
    "that ended before the work did;",
    "a run's req/s counts its whole window, so requests held up for longer than the run are not counted",
    table(
      ["scenario", "req/s", "runs", "p50 ms", "p99 ms", "vs baseline", "requests", "wrong", "workerd"],
      [
        row("verify, baseline", base.verify),
        row("verify, during KEK re-wrap", rewrapFig.verify, base.verify),
        row("verify, during DEK re-encryption", reencryptFig.verify, base.verify),
        row("reveal, baseline", base.reveal),
        row("reveal, during KEK re-wrap", rewrapFig.reveal, base.reveal),
        row("reveal, during DEK re-encryption", reencryptFig.reveal, base.reveal),
      ],
    ),
    `KEK re-wrap (KEK_VERSION 1 -> 2, one Workflow, chunks of ${engine.rewrapChunk}, ${engine.rewrapPauseMs} ms apart): ${int(rewrap.deks)} DEKs in ${rewrap.chunks} chunks ` +
      `and ${rewrap.systemKeys} system keys; every DEK on master:2 ${rewrap.deksSeconds.toFixed(1)} s after the tick, the run ended ` +
      `${rewrap.seconds.toFixed(1)} s after it (${(rewrap.chunks / rewrap.deksSeconds).toFixed(1)} chunks/s, ${int(rewrap.deks / rewrap.deksSeconds)} DEKs/s); ` +
      `workerd CPU ${rewrap.workerdCpuSeconds.toFixed(1)} s (with the load), peak RSS ${int(rewrap.peakRssMb)} MB`,
    `DEK re-encryption (the ${int(settings.rotatedTenants)} DEKs that hold fields due; cron "${interval.cron}", ticks one interval apart by scheduled time, each starting at most ` +
      `${engine.schedulerMaxChunks} chunks of ${engine.schedulerChunk} Workflows, paced at ${engine.schedulerChunk}/s):`,
    table(
      ["tick", "at", "fired (wall)", "DEK rotations started", "chunks", "tick wall ms", "outcome"],
      reencrypt.ticks.map((t, i) => [
        String(i + 1),
        `+${t.offsetS} s`,
        `+${t.firedS.toFixed(1)} s`,
        int(t.started),
        String(Math.ceil(t.started / engine.schedulerChunk)),
        int(t.wallMs),
        t.outcome,
      ]),
    ),
    `every field under a new DEK ${reencrypt.seconds.toFixed(1)} s after the first tick: ${int(fieldsPerSecond)} fields/s ` +
      `(${productive.length} tick(s)); workerd CPU ${reencrypt.workerdCpuSeconds.toFixed(1)} s (with the load), peak RSS ${int(reencrypt.peakRssMb)} MB`,
    `Checked: all ${int(result.checked.opened)} fields open to their seeded plaintext (in Node, with the DEK each row names); ` +
      `${int(result.checked.revealed)} reveals through the API (${result.checked.sampledTenants} tenants, every version) match; every DEK and ` +
      `system key on master:2; ${int(result.checked.retiring)} old DEKs retiring (deleted after the wait, not within the stage)` +
      (rewrap.straddled + reencrypt.straddled
        ? `; ${rewrap.straddled + reencrypt.straddled} load run(s) that straddled the end of the work were left out`
        : ""),
  ];
  const figures = [
    ["baseline verify", base.verify],
    ["baseline reveal", base.reveal],
    ["verify during re-wrap", rewrapFig.verify],
    ["reveal during re-wrap", rewrapFig.reveal],
    ["verify during re-encryption", reencryptFig.verify],
    ["reveal during re-encryption", reencryptFig.reveal],
  ].filter(([, f]) => f);
  for (const [label, f] of figures.filter(([, f]) => f.bad > 0)) {
    lines.push(
      `! keyring ${label}: ${f.bad} wrong/failed responses${f.samples.map((sample) => `\n    e.g. ${sample}`).join("")}`,
    );
  }
  const summary = {
    keyring_tenants: result.tenants,
    keyring_fields: result.fields,
    keyring_dek_rotations: settings.rotatedTenants,
    keyring_baseline_verify_rps: Math.round(base.verify.rps),
    keyring_baseline_reveal_rps: Math.round(base.reveal.rps),
    rewrap_verify_ratio: ratio(rewrapFig.verify, base.verify),
    rewrap_reveal_ratio: ratio(rewrapFig.reveal, base.reveal),
    rewrap_seconds: Math.round(rewrap.seconds * 10) / 10,
    rewrap_chunks: rewrap.chunks,
    rewrap_chunks_per_s: Math.round((rewrap.chunks / rewrap.deksSeconds) * 10) / 10,
    reencrypt_fields_per_s: Math.round(fieldsPerSecond),
    reencrypt_seconds: Math.round(reencrypt.seconds * 10) / 10,
    reencrypt_ticks: productive.length,
    reencrypt_chunks_per_tick: productive.map((t) => Math.ceil(t.started / engine.schedulerChunk)),
    reencrypt_verify_ratio: ratio(reencryptFig.verify, base.verify),
    reencrypt_reveal_ratio: ratio(reencryptFig.reveal, base.reveal),
    keyring_wrong_responses: figures.reduce((total, [, f]) => total + f.bad, 0),
    keyring_stage_seconds: Math.round(result.stageSeconds),
  };
  return { lines, summary };
}
