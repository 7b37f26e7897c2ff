/**
 * GET /api/v1/keyring/status: what each KEK still wraps, per KEK and per tenant, so an operator knows when
 * an old master secret (or Vault key version) can go. The figures are deployment-wide, so this file runs
 * isolated (vitest.config.ts): its first test sees an empty database. Rows under other KEK versions are
 * inserted directly; their wrapped keys need not unwrap, because the status never unwraps a key.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { importMasterKey, keyCheckValue } from "../../src/crypto/envelope";
import worker from "../../src/index";
import { forgetKeys } from "../../src/vault/keyring";
import type { KekStatus, KeyringStatus } from "../../src/vault/keyring-status";
import { b64, randomBytes, randomMasterKey } from "../crypto/support";
import { BASE, createTenant, freshClientIp } from "../helpers/api";
import { envWith } from "../helpers/env";
import { network } from "../setup/network";
import { send } from "./kek-fixtures";
import { createTransitStandIn } from "./transit-stand-in";

beforeEach(() => forgetKeys());
afterEach(() => forgetKeys());

type Overrides = Record<string, string | undefined>;

/** The route through the Worker's own fetch, with this deployment's environment changed by `overrides`. */
async function fetchStatus(
  options: { overrides?: Overrides; query?: string; token?: string | null } = {},
): Promise<Response> {
  const headers: Record<string, string> = { "cf-connecting-ip": freshClientIp() };
  const token = options.token === undefined ? env.BOOTSTRAP_TOKEN : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${BASE}/api/v1/keyring/status${options.query ?? ""}`, { headers }),
    envWith(options.overrides ?? {}),
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return response;
}

async function status(overrides: Overrides = {}, query = ""): Promise<KeyringStatus> {
  const response = await fetchStatus({ overrides, query });
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return JSON.parse(text) as KeyringStatus;
}

function kek(report: KeyringStatus, provider: string, version: number): KekStatus {
  const found = report.keks.find((entry) => entry.provider === provider && entry.version === version);
  if (!found) throw new Error(`no ${provider}:${version} in ${JSON.stringify(report.keks)}`);
  return found;
}

/** Every listed tenant, walking the pages of `limit` from the first. */
async function allListedTenants(overrides: Overrides = {}, limit = 100) {
  const items: KeyringStatus["tenants"]["items"] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: KeyringStatus = await status(
      overrides,
      `?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
    );
    expect(page.tenants.items.length).toBeLessThanOrEqual(limit);
    items.push(...page.tenants.items);
    cursor = page.tenants.next_cursor;
    pages++;
  } while (cursor);
  return { items, pages };
}

const run = (query: string, ...params: (string | number | null)[]) =>
  env.DB.prepare(query)
    .bind(...params)
    .run();

/** A key-check value row for master `version`, as unseal records it when the secret is first adopted. */
async function recordMasterVersion(version: number, secret: string) {
  const check = await keyCheckValue(await importMasterKey(secret), version);
  await run("INSERT INTO keyring (kek_version, check_value, created_at) VALUES (?, ?, ?)", version, check, 1);
}

const wrappedKey = () => b64(randomBytes(60));

async function insertDek(
  tenantId: string,
  version: number,
  kek: { provider: "master" | "vault"; version: number },
  state: { status?: "active" | "retiring"; nextRotationAt?: number | null } = {},
) {
  const status = state.status ?? "active";
  await run(
    `INSERT INTO data_keys (tenant_id, version, kek_provider, kek_version, wrapped_key, encryption_count, status,
                            next_rotation_at, retire_after, created_at)
     VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)`,
    tenantId,
    version,
    kek.provider,
    kek.version,
    wrappedKey(),
    status,
    status === "active" ? (state.nextRotationAt ?? 4_000_000_000_000) : null,
    status === "retiring" ? 4_000_000_000_000 : null,
    1,
  );
}

/** The tenant's DEK v1 (created with the tenant) is replaced by `next`, as a DEK rotation leaves it. */
async function rotateDekTo(tenantId: string, next: { provider: "master" | "vault"; version: number }) {
  await run(
    "UPDATE data_keys SET status = 'retiring', next_rotation_at = NULL WHERE tenant_id = ?",
    tenantId,
  );
  await insertDek(tenantId, 2, next);
}

let rowCounter = 0;

/** Sealed rows of several kinds (a JSON map of three blobs counts once, as one row). */
async function sealCredentialVersions(tenantId: string, dekVersion: number, rows: number) {
  for (let i = 0; i < rows; i++) {
    await run(
      `INSERT INTO credential_versions (credential_id, tenant_id, version, sealed_fields, dek_version,
                                        display_fields, created_by, created_at)
       VALUES (?, ?, 1, ?, ?, '{}', 'test', 1)`,
      `cred_status${++rowCounter}`,
      tenantId,
      JSON.stringify({ a: "v1.x.y", b: "v1.x.y", c: "v1.x.y" }),
      dekVersion,
    );
  }
}

async function sealAlertChannel(tenantId: string, dekVersion: number) {
  await run(
    `INSERT INTO alert_channels (id, tenant_id, kind, name, config, sealed_secrets, dek_version, created_at)
     VALUES (?, ?, 'slack', 'ops', '{}', '{"webhook_url":"v1.x.y"}', ?, 1)`,
    `ach_status${++rowCounter}`,
    tenantId,
    dekVersion,
  );
}

async function sealTotp(tenantId: string, keyId: string, dekVersion: number) {
  await run(
    "INSERT INTO admin_totp (key_id, tenant_id, sealed_secret, dek_version, created_at) VALUES (?, ?, 'v1.x.y', ?, 1)",
    keyId,
    tenantId,
    dekVersion,
  );
}

async function everyWrappedKey(): Promise<string[]> {
  const { results } = await env.DB.prepare(
    "SELECT wrapped_key FROM data_keys UNION ALL SELECT wrapped_key FROM system_keys",
  ).all<{ wrapped_key: string }>();
  return results.map((row) => row.wrapped_key);
}

describe("a fresh deployment", () => {
  // First in the file: the database is still empty.
  it("shows master:1 as the current target with its secret present, nothing wrapped under it, and not removable", async () => {
    const response = await fetchStatus();
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(await response.json()).toEqual({
      target: { provider: "master", version: 1 },
      sealed: null,
      keks: [
        {
          provider: "master",
          version: 1,
          secret: "MASTER_KEY",
          secret_present: true,
          data_keys: 0,
          retiring_data_keys: 0,
          fields: 0,
          system_keys: 0,
          current: true,
          removable: false,
        },
      ],
      data_keys: { active: 0, retiring: 0, rotation_due: 0 },
      rotations: { kek_rewrap: null, data_keys_in_progress: 0 },
      tenants: { items: [], next_cursor: null },
    });
  });
});

describe("who may read the status", () => {
  it("refuses no token, a wrong bootstrap token and a tenant admin key with 401 problem+json", async () => {
    const tenant = await createTenant("status auth");
    for (const [label, token] of [
      ["no token", null],
      ["a wrong bootstrap token", `${env.BOOTSTRAP_TOKEN.slice(0, -1)}x`],
      ["a tenant admin key", tenant.adminKey],
    ] as const) {
      const response = await fetchStatus({ token });
      expect(response.status, label).toBe(401);
      expect(response.headers.get("content-type"), label).toContain("application/problem+json");
      const body = (await response.json()) as { code: string };
      expect(body.code, label).toBe("UNAUTHENTICATED");
    }
  });

  it("compares the bootstrap token in constant time, as tenant creation does (threat model case 24)", async () => {
    const timingSafeEqual = vi.spyOn(crypto.subtle, "timingSafeEqual");
    onTestFinished(() => timingSafeEqual.mockRestore());
    const response = await fetchStatus({ token: `${env.BOOTSTRAP_TOKEN}x` });
    expect(response.status).toBe(401);
    expect(timingSafeEqual).toHaveBeenCalledTimes(1);
    const [left, right] = timingSafeEqual.mock.calls[0] as [ArrayBufferView, ArrayBufferView];
    // Both sides hashed first: the comparison length does not depend on the token's.
    expect([left.byteLength, right.byteLength]).toEqual([32, 32]);
  });

  it("is documented in the OpenAPI document behind the bootstrap token, with its 401 and 429", async () => {
    const response = await fetchStatus({ token: null });
    expect(response.status).toBe(401);
    const doc = (await (await worker.fetch(new Request(`${BASE}/api/openapi.json`), env)).json()) as {
      paths: Record<string, { get?: { security: unknown; responses: Record<string, unknown> } }>;
      components: { schemas: Record<string, unknown> };
    };
    const operation = doc.paths["/api/v1/keyring/status"]?.get;
    expect(operation?.security).toEqual([{ bootstrapToken: [] }]);
    expect(Object.keys(operation?.responses ?? {})).toEqual(expect.arrayContaining(["200", "401", "429"]));
    expect(doc.components.schemas).toHaveProperty("KeyringStatus");
    expect(doc.components.schemas).toHaveProperty("KekStatus");
  });
});

describe("what depends on each KEK", () => {
  it("counts a second master version's DEKs and sealed rows per KEK and per tenant, and makes it removable once nothing depends on it", async () => {
    const secret2 = randomMasterKey();
    const withSecret2 = { MASTER_KEY_2: secret2 };
    await recordMasterVersion(2, secret2);
    // Whatever the outcome, nothing is left depending on a secret the next tests do not set.
    onTestFinished(async () => {
      await run("UPDATE data_keys SET kek_version = 1 WHERE kek_version = 2");
    });
    const moved = await createTenant("moved to master 2");
    const staying = await createTenant("stays on master 1");
    const before = await status(withSecret2);
    expect(kek(before, "master", 2)).toEqual({
      provider: "master",
      version: 2,
      secret: "MASTER_KEY_2",
      secret_present: true,
      data_keys: 0,
      retiring_data_keys: 0,
      fields: 0,
      system_keys: 0,
      current: false,
      removable: true,
    });

    // `moved`: DEK 1 (master:1) retiring, DEK 2 under master:2, rows under both; `staying` is due.
    await rotateDekTo(moved.id, { provider: "master", version: 2 });
    await sealCredentialVersions(moved.id, 1, 2);
    await sealTotp(moved.id, moved.adminKeyId, 1);
    await sealCredentialVersions(moved.id, 2, 3);
    await sealAlertChannel(moved.id, 2);
    await run("UPDATE data_keys SET next_rotation_at = 1 WHERE tenant_id = ?", staying.id);

    const after = await status(withSecret2);
    expect(after.sealed).toBeNull();
    expect(after.target).toEqual({ provider: "master", version: 1 });
    expect(kek(after, "master", 2)).toMatchObject({
      data_keys: 1,
      retiring_data_keys: 0,
      fields: 4,
      system_keys: 0,
      current: false,
      removable: false,
    });
    const [master1Before, master1After] = [kek(before, "master", 1), kek(after, "master", 1)];
    expect(master1After.data_keys - master1Before.data_keys).toBe(0);
    expect(master1After.retiring_data_keys - master1Before.retiring_data_keys).toBe(1);
    expect(master1After.fields - master1Before.fields).toBe(3);
    expect(master1After).toMatchObject({ current: true, removable: false });
    expect(after.data_keys.active - before.data_keys.active).toBe(0);
    expect(after.data_keys.retiring - before.data_keys.retiring).toBe(1);
    expect(after.data_keys.rotation_due - before.data_keys.rotation_due).toBe(1);

    const listed = (await allListedTenants(withSecret2)).items;
    expect(listed.find((item) => item.tenant_id === moved.id)).toEqual({
      tenant_id: moved.id,
      data_keys: [
        { version: 1, status: "retiring", kek: { provider: "master", version: 1 }, fields: 3 },
        { version: 2, status: "active", kek: { provider: "master", version: 2 }, fields: 4 },
      ],
    });
    // Everything of `staying` is on the target: nothing to wait for (being due is not a dependency).
    expect(listed.map((item) => item.tenant_id)).not.toContain(staying.id);

    // With KEK_VERSION=2 the target moves: master:2 is current (never removable), master:1 is still needed.
    const switched = await status({ ...withSecret2, KEK_VERSION: "2" });
    expect(switched.target).toEqual({ provider: "master", version: 2 });
    expect(kek(switched, "master", 2)).toMatchObject({ current: true, removable: false });
    expect(kek(switched, "master", 1)).toMatchObject({ current: false, removable: false });
    const listedUnderTwo = (await allListedTenants({ ...withSecret2, KEK_VERSION: "2" })).items;
    expect(listedUnderTwo.find((item) => item.tenant_id === staying.id)?.data_keys).toEqual([
      { version: 1, status: "active", kek: { provider: "master", version: 1 }, fields: 0 },
    ]);

    // The re-wrap moves DEK 2 back under master:1: nothing depends on master:2 any more.
    await run("UPDATE data_keys SET kek_version = 1 WHERE tenant_id = ? AND version = 2", moved.id);
    const done = await status(withSecret2);
    expect(kek(done, "master", 2)).toMatchObject({
      data_keys: 0,
      fields: 0,
      system_keys: 0,
      current: false,
      removable: true,
    });
    expect(kek(done, "master", 1).fields - master1Before.fields).toBe(7);
  });

  it("keeps a version holding only a system key from being removable", async () => {
    const secret3 = randomMasterKey();
    await recordMasterVersion(3, secret3);
    onTestFinished(async () => {
      await run("DELETE FROM system_keys WHERE purpose = 'status-test'");
    });
    await run(
      `INSERT INTO system_keys (purpose, kek_provider, kek_version, wrapped_key, created_at)
       VALUES ('status-test', 'master', 3, ?, 1)`,
      wrappedKey(),
    );
    const held = await status({ MASTER_KEY_3: secret3 });
    expect(kek(held, "master", 3)).toMatchObject({ data_keys: 0, system_keys: 1, removable: false });
    expect(kek(held, "master", 1).system_keys).toBeGreaterThan(0);

    await run("UPDATE system_keys SET kek_version = 1 WHERE purpose = 'status-test'");
    const released = await status({ MASTER_KEY_3: secret3 });
    expect(kek(released, "master", 3)).toMatchObject({ system_keys: 0, removable: true });
    // A removed secret whose version nothing needs is reported as absent, and the service stays open.
    const removed = await status();
    expect(removed.sealed).toBeNull();
    expect(kek(removed, "master", 3)).toMatchObject({ secret_present: false, removable: true });
  });

  it("reports in-progress KEK re-wrap and DEK rotation runs, not finished ones", async () => {
    const before = await status();
    expect(before.rotations.kek_rewrap).toBeNull();
    const started = Date.UTC(2030, 0, 2, 3, 4, 5);
    const insertRun = (id: string, subjectType: string, subjectId: string, state: string) =>
      run(
        `INSERT INTO rotation_runs (id, tenant_id, subject_type, subject_id, trigger, state, step, started_at,
                                    updated_at)
         VALUES (?, ?, ?, ?, 'schedule', ?, 'rewrap', ?, ?)`,
        id,
        subjectType === "keyring" ? "" : subjectId,
        subjectType,
        subjectId,
        state,
        started,
        started,
      );
    await insertRun("rewrap-run-1", "keyring", "keyring", "in_progress");
    await insertRun("dek-run-1", "data_key", "ten_statusRunA", "in_progress");
    await insertRun("dek-run-2", "data_key", "ten_statusRunB", "in_progress");
    await insertRun("dek-run-3", "data_key", "ten_statusRunC", "completed");
    onTestFinished(async () => {
      await run("UPDATE rotation_runs SET state = 'completed' WHERE id LIKE '%-run-%'");
    });

    const during = await status();
    expect(during.rotations).toEqual({
      kek_rewrap: { run_id: "rewrap-run-1", step: "rewrap", started_at: "2030-01-02T03:04:05.000Z" },
      data_keys_in_progress: before.rotations.data_keys_in_progress + 2,
    });
  });
});

describe("the tenants still depending on an old KEK", () => {
  it("pages through them by tenant id, each once, and refuses a bad cursor or limit", async () => {
    const mine: string[] = [];
    for (let i = 0; i < 3; i++) {
      const tenant = await createTenant(`paged ${i}`);
      await rotateDekTo(tenant.id, { provider: "master", version: 1 });
      mine.push(tenant.id);
    }
    const { items, pages } = await allListedTenants({}, 2);
    const ids = items.map((item) => item.tenant_id);
    expect(pages).toBeGreaterThanOrEqual(2);
    expect(ids).toEqual([...ids].sort());
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of mine) {
      expect(ids.filter((listed) => listed === id)).toHaveLength(1);
      expect(items.find((item) => item.tenant_id === id)?.data_keys.map((dek) => dek.status)).toEqual([
        "retiring",
        "active",
      ]);
    }

    const badCursor = await fetchStatus({ query: "?cursor=not-a-cursor" });
    expect(badCursor.status).toBe(400);
    expect(((await badCursor.json()) as { code: string }).code).toBe("BAD_REQUEST");
    const tooMany = await fetchStatus({ query: "?limit=101" });
    expect(tooMany.status).toBe(422);
  });
});

describe("a sealed deployment", () => {
  it("still answers 200 with the sealed reason when MASTER_KEY is missing, and reveals no secret", async () => {
    await createTenant("sealed status");
    const response = await fetchStatus({ overrides: { MASTER_KEY: undefined } });
    const text = await response.text();
    expect(response.status).toBe(200);
    const report = JSON.parse(text) as KeyringStatus;
    expect(report.sealed).toEqual({ code: "SEALED", detail: expect.stringContaining("MASTER_KEY") });
    expect(report.target).toEqual({ provider: "master", version: 1 });
    expect(kek(report, "master", 1)).toMatchObject({
      secret: "MASTER_KEY",
      secret_present: false,
      current: true,
      removable: false,
    });
    expect(report.data_keys.active).toBeGreaterThan(0);

    // The reason is the one every other route answers with.
    const refused = await send(envWith({ MASTER_KEY: undefined }), "POST", "/api/v1/tenants", {
      key: env.BOOTSTRAP_TOKEN,
      body: { name: "refused" },
    });
    expect(refused.status).toBe(503);
    expect(refused.body.detail).toBe(report.sealed?.detail);

    const unsealedText = await (await fetchStatus()).text();
    const wrapped = await everyWrappedKey();
    expect(wrapped.length).toBeGreaterThan(0);
    for (const body of [text, unsealedText]) {
      expect(body).not.toContain(env.MASTER_KEY);
      expect(body).not.toContain(env.BOOTSTRAP_TOKEN);
      for (const key of wrapped) expect(body).not.toContain(key);
    }
  });

  it("names the absent secret a stored key still depends on (threat model case 8), and opens once it is back", async () => {
    const secret4 = randomMasterKey();
    await recordMasterVersion(4, secret4);
    const tenant = await createTenant("depends on master 4");
    await rotateDekTo(tenant.id, { provider: "master", version: 4 });
    onTestFinished(async () => {
      await run("UPDATE data_keys SET kek_version = 1 WHERE kek_version = 4");
    });

    forgetKeys(); // a cold isolate: creating the tenant opened the keyring before DEK 2 existed
    const early = await status();
    expect(early.sealed?.code).toBe("SEALED");
    expect(early.sealed?.detail).toContain("MASTER_KEY_4");
    expect(kek(early, "master", 4)).toMatchObject({ secret_present: false, data_keys: 1, removable: false });
    expect(JSON.stringify(early)).not.toContain(secret4);

    const back = await status({ MASTER_KEY_4: secret4 });
    expect(back.sealed).toBeNull();
    expect(kek(back, "master", 4)).toMatchObject({ secret_present: true, data_keys: 1, removable: false });
  });
});

describe("Vault Transit as the KEK provider", () => {
  const ADDR = "https://vault.status.test:8443";
  const TOKEN = "hvs.CAESIStatusRouteTestToken000000001";
  const VAULT = { KEK_PROVIDER: "vault", VAULT_ADDR: ADDR, VAULT_TOKEN: TOKEN };
  beforeAll(() => network.enable());
  afterEach(() => network.resetHandlers());
  afterAll(() => network.disable());

  it("reports Vault's latest key version as the target, an older one while DEKs use it, and a sealed Vault with an unknown target", async () => {
    const vault = createTransitStandIn({ addr: ADDR, token: TOKEN });
    network.use(...vault.handlers);
    const tenant = await createTenant("on vault 1");
    await rotateDekTo(tenant.id, { provider: "vault", version: 1 });
    onTestFinished(async () => {
      await run("DELETE FROM data_keys WHERE kek_provider = 'vault'");
    });
    vault.rotate();

    const open = await status(VAULT);
    expect(open.sealed).toBeNull();
    expect(open.target).toEqual({ provider: "vault", version: 2 });
    expect(kek(open, "vault", 2)).toMatchObject({
      secret: null,
      secret_present: null,
      data_keys: 0,
      current: true,
      removable: false,
    });
    expect(kek(open, "vault", 1)).toMatchObject({ data_keys: 1, current: false, removable: false });
    expect(kek(open, "master", 1)).toMatchObject({ current: false, removable: false });
    const listed = (await allListedTenants(VAULT)).items;
    expect(listed.find((item) => item.tenant_id === tenant.id)?.data_keys.at(-1)).toMatchObject({
      kek: { provider: "vault", version: 1 },
    });

    vault.goUnreachable();
    forgetKeys();
    const cutOff = await status(VAULT);
    expect(cutOff.sealed).toEqual({ code: "SEALED", detail: "Vault Transit cannot be reached." });
    expect(cutOff.target).toEqual({ provider: "vault", version: null });
    // Which Vault version is current cannot be known: none is offered as removable.
    for (const entry of cutOff.keks.filter((candidate) => candidate.provider === "vault"))
      expect(entry).toMatchObject({ current: false, removable: false });
    expect(JSON.stringify(cutOff)).not.toContain(TOKEN);
  });
});
