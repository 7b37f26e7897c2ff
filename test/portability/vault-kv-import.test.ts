/**
 * POST /api/v1/import/vault against an in-memory Vault KV version 2 engine faithful to Vault's documented API
 * (vault-kv-stand-in.ts), with real D1, the real keyring and the real audit chain.
 */
import { HttpResponse } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { randomBase62 } from "../../src/crypto/random";
import { VAULT_IMPORT_SOURCE } from "../../src/portability/vault-kv-import";
import type { VaultImportItem, VaultImportResult } from "../../src/portability/vault-kv-schemas";
import { stripeKey } from "../credentials/samples";
import { call, callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { dumpDatabase, snapshotTenantRows } from "../helpers/db";
import { network } from "../setup/network";
import { VaultKvStandIn } from "./vault-kv-stand-in";

beforeAll(() => network.enable());
afterEach(() => {
  network.resetHandlers();
  vi.restoreAllMocks();
});
afterAll(() => network.disable());

let vaults = 0;

/** A fresh Vault with its own address and token (the token doubles as a canary: threat model case 18). */
function startVault(options: { namespace?: string } = {}) {
  const token = `hvs.CAES${randomBase62(40)}`;
  const addr = `https://vault${++vaults}.example.com:8443`;
  const vault = new VaultKvStandIn({ addr, token, ...options });
  network.use(...vault.handlers);
  return { vault, token, addr };
}

type Problem = { code: string; detail: string; errors?: { path: string; message: string }[] };

async function importVault<T = VaultImportResult>(
  tenant: TestTenant,
  body: Record<string, unknown>,
  key = tenant.adminKey,
) {
  return callJson<T>("POST", "/api/v1/import/vault", { key, body: { mount: "secret", ...body } });
}

async function reveal(tenant: TestTenant, id: string, version?: number) {
  const response = await callJson<{ fields: Record<string, string> }>(
    "POST",
    `/api/v1/credentials/${id}/reveal`,
    { key: tenant.adminKey, body: version ? { version } : {} },
  );
  expect(response.status).toBe(200);
  return response.body.fields;
}

async function auditActions(tenant: TestTenant) {
  const { body } = await callJson<{
    items: { action: string; target_id: string; detail: Record<string, unknown> }[];
  }>("GET", "/api/v1/audit?limit=100", { key: tenant.adminKey });
  return body.items;
}

const stripe = (path: string, extra: Record<string, unknown> = {}) => ({
  path,
  service: "stripe",
  environment: "development",
  ...extra,
});

const item = (result: VaultImportResult, path: string): VaultImportItem => {
  const found = result.items.find((entry) => entry.path === path);
  if (!found) throw new Error(`no item for ${path}: ${JSON.stringify(result.items)}`);
  return found;
};

describe("Vault KV v2 import", () => {
  it("imports a secret and a folder into credentials whose revealed values equal Vault's, audited by field name only", async () => {
    const tenant = await createTenant();
    const { vault, addr, token } = startVault();
    const secretKey = stripeKey();
    const publishableKey = `pk_test_${randomBase62(32)}`;
    const [eu, us] = [stripeKey(), stripeKey()];
    vault.put("payments/stripe", { secret_key: secretKey, publishable_key: publishableKey, owner: "ops" });
    vault.put("team/stripe-eu", { secret_key: eu });
    vault.put("team/stripe-us", { secret_key: us });
    vault.put("team/archive/old", { secret_key: stripeKey() });

    const { status, body } = await importVault(tenant, {
      address: addr,
      token,
      paths: [stripe("payments/stripe"), stripe("team/")],
    });
    expect(status).toBe(200);
    expect(body.summary).toEqual({ create: 3, update: 0, unchanged: 0, invalid: 0, skipped: 1 });
    expect(item(body, "payments/stripe")).toMatchObject({
      action: "create",
      name: "payments/stripe",
      vault_version: 1,
      fields: ["publishable_key", "secret_key"],
      ignored_keys: ["owner"],
    });
    expect(item(body, "team/archive/").action).toBe("skipped");

    const id = item(body, "payments/stripe").credential_id ?? "";
    expect(await reveal(tenant, id)).toEqual({ secret_key: secretKey, publishable_key: publishableKey });
    expect(await reveal(tenant, item(body, "team/stripe-eu").credential_id ?? "")).toEqual({
      secret_key: eu,
    });
    expect(await reveal(tenant, item(body, "team/stripe-us").credential_id ?? "")).toEqual({
      secret_key: us,
    });

    // Vault saw GETs with the token header; the folder listed with ?list=true.
    expect(
      vault.log.map((entry) => `${entry.method} ${entry.url.pathname}${entry.url.search}`).sort(),
    ).toEqual([
      "GET /v1/secret/data/payments/stripe",
      "GET /v1/secret/data/team/stripe-eu",
      "GET /v1/secret/data/team/stripe-us",
      "GET /v1/secret/metadata/team?list=true",
    ]);
    expect(vault.log.every((entry) => entry.headers["x-vault-token"] === token)).toBe(true);

    const audit = await auditActions(tenant);
    const created = audit.filter((entry) => entry.action === "credential.create");
    expect(created).toHaveLength(3);
    expect(created.every((entry) => entry.detail.source === VAULT_IMPORT_SOURCE)).toBe(true);
    expect(audit.find((entry) => entry.action === "import.vault_kv")?.detail).toEqual({
      mount: "secret",
      created: 3,
      updated: 0,
      unchanged: 0,
    });
    const auditText = JSON.stringify(audit);
    for (const secret of [secretKey, eu, us, token, addr]) expect(auditText).not.toContain(secret);
  });

  it("a dry run reads and validates every secret, answers the plan, and writes nothing", async () => {
    const tenant = await createTenant();
    const { vault, addr, token } = startVault();
    vault.put("payments/stripe", { secret_key: stripeKey() });
    const before = await snapshotTenantRows(tenant.id);

    const { status, body } = await importVault(tenant, {
      address: addr,
      token,
      dry_run: true,
      paths: [stripe("payments/stripe")],
    });
    expect(status).toBe(200);
    expect(body).toMatchObject({ dry_run: true, summary: { create: 1 } });
    expect(item(body, "payments/stripe").credential_id).toBeUndefined();
    expect(vault.count("read")).toBe(1);
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });

  it("importing the same secret again changes nothing; a changed secret becomes the current version and the old one stays previous", async () => {
    const tenant = await createTenant();
    const { vault, addr, token } = startVault();
    const first = stripeKey();
    vault.put("payments/stripe", { secret_key: first });
    const request = { address: addr, token, paths: [stripe("payments/stripe")] };
    const created = await importVault(tenant, request);
    const id = item(created.body, "payments/stripe").credential_id ?? "";

    const before = await snapshotTenantRows(tenant.id);
    const again = await importVault(tenant, request);
    expect(again.status).toBe(200);
    expect(item(again.body, "payments/stripe")).toMatchObject({ action: "unchanged", credential_id: id });
    expect(await snapshotTenantRows(tenant.id)).toBe(before);

    const second = stripeKey();
    expect(vault.put("payments/stripe", { secret_key: second })).toBe(2);
    const changed = await importVault(tenant, request);
    expect(item(changed.body, "payments/stripe")).toMatchObject({
      action: "update",
      vault_version: 2,
      credential_id: id,
    });
    const detail = await callJson<{ versions: { version: number; stage: string | null }[] }>(
      "GET",
      `/api/v1/credentials/${id}`,
      { key: tenant.adminKey },
    );
    expect(detail.body.versions.map((v) => [v.version, v.stage])).toEqual([
      [2, "current"],
      [1, "previous"],
    ]);
    expect(await reveal(tenant, id)).toEqual({ secret_key: second });
    expect(await reveal(tenant, id, 1)).toEqual({ secret_key: first });
  });

  it("field_map fills a field from a differently named Vault key, and names a mapped key the secret lacks", async () => {
    const tenant = await createTenant();
    const { vault, addr, token } = startVault();
    const secretKey = stripeKey();
    vault.put("ci/stripe", { STRIPE_SECRET_KEY: secretKey });
    const mapped = await importVault(tenant, {
      address: addr,
      token,
      paths: [stripe("ci/stripe", { field_map: { secret_key: "STRIPE_SECRET_KEY" }, name: "CI Stripe" })],
    });
    expect(mapped.status).toBe(200);
    const imported = item(mapped.body, "ci/stripe");
    expect(imported).toMatchObject({ action: "create", name: "CI Stripe", fields: ["secret_key"] });
    expect(imported.ignored_keys).toBeUndefined();
    expect(await reveal(tenant, imported.credential_id ?? "")).toEqual({ secret_key: secretKey });

    const missing = await importVault(tenant, {
      address: addr,
      token,
      dry_run: true,
      paths: [stripe("ci/stripe", { field_map: { secret_key: "SECRET" } })],
    });
    expect(item(missing.body, "ci/stripe")).toMatchObject({
      action: "invalid",
      errors: [{ path: "paths.0.field_map.secret_key", message: "the secret has no key SECRET" }],
    });
  });

  it("refuses values the catalogue rejects, naming the field and never the value, and writes nothing, not even the valid secrets", async () => {
    const tenant = await createTenant();
    const { vault, addr, token } = startVault();
    const good = stripeKey();
    const malformed = `sk_test_${randomBase62(8)}!`;
    const live = stripeKey("live");
    vault.put("good/stripe", { secret_key: good });
    vault.put("bad/format", { secret_key: malformed });
    vault.put("bad/number", { secret_key: 42 });
    vault.put("bad/mode", { secret_key: live });
    const before = await snapshotTenantRows(tenant.id);

    const paths = [stripe("good/stripe"), stripe("bad/format"), stripe("bad/number"), stripe("bad/mode")];
    const refused = await importVault<Problem>(tenant, { address: addr, token, paths });
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe("VALIDATION_FAILED");
    const paths422 = refused.body.errors?.map((error) => error.path);
    expect(paths422).toEqual(
      expect.arrayContaining(["paths.1.fields.secret_key", "paths.2.fields.secret_key", "paths.3.fields"]),
    );
    expect(paths422?.some((path) => path.startsWith("paths.0"))).toBe(false);
    const text = JSON.stringify(refused.body);
    for (const value of [good, malformed, live, token]) expect(text).not.toContain(value);
    expect(await snapshotTenantRows(tenant.id)).toBe(before);

    const planned = await importVault(tenant, { address: addr, token, paths, dry_run: true });
    expect(planned.body.summary).toMatchObject({ create: 1, invalid: 3 });
    expect(item(planned.body, "bad/number").errors).toEqual([
      { path: "paths.2.fields.secret_key", message: "the secret's key secret_key is not a string" },
    ]);
  });

  it("names a path the token may not read (403 permission denied) and writes nothing", async () => {
    const tenant = await createTenant();
    const { vault, addr, token } = startVault();
    vault.put("payments/stripe", { secret_key: stripeKey() });
    vault.put("restricted/stripe", { secret_key: stripeKey() });
    vault.deny("restricted/");
    const before = await snapshotTenantRows(tenant.id);

    const refused = await importVault<Problem>(tenant, {
      address: addr,
      token,
      paths: [stripe("payments/stripe"), stripe("restricted/stripe")],
    });
    expect(refused.status).toBe(422);
    expect(refused.body.errors).toEqual([
      {
        path: "paths.1.path",
        message: expect.stringMatching(/^Vault refused the token for restricted\/stripe \(permission denied/),
      },
    ]);
    expect(await snapshotTenantRows(tenant.id)).toBe(before);

    const wrongToken = await importVault(tenant, {
      address: addr,
      token: `${token}x`,
      dry_run: true,
      paths: [stripe("payments/stripe")],
    });
    expect(item(wrongToken.body, "payments/stripe").action).toBe("invalid");
  });

  it("names a missing path, an empty folder, a soft-deleted and a destroyed version", async () => {
    const tenant = await createTenant();
    const { vault, addr, token } = startVault();
    vault.put("gone/soft", { secret_key: stripeKey() });
    vault.softDelete("gone/soft");
    vault.put("gone/destroyed", { secret_key: stripeKey() });
    vault.destroy("gone/destroyed", 1);
    const { status, body } = await importVault(tenant, {
      address: addr,
      token,
      dry_run: true,
      paths: [
        stripe("nowhere/stripe"),
        stripe("empty/"),
        stripe("gone/soft"),
        stripe("gone/destroyed"),
        stripe("gone/soft", { version: 7, name: "a version Vault never had" }),
      ],
    });
    expect(status).toBe(200);
    expect(body.summary.invalid).toBe(5);
    const messages = body.items.map((entry) => entry.errors?.[0]?.message);
    expect(messages).toEqual([
      "Vault has no secret or folder at nowhere/stripe (is the mount a KV version 2 engine?)",
      "Vault has no secret or folder at empty/ (is the mount a KV version 2 engine?)",
      "the secret's version at gone/soft is deleted or destroyed in Vault",
      "the secret's version at gone/destroyed is deleted or destroyed in Vault",
      "Vault has no secret or folder at gone/soft (is the mount a KV version 2 engine?)",
    ]);
  });

  it("a sealed, unreachable or over-sized Vault answer is 502 and nothing is written", async () => {
    const tenant = await createTenant();
    const before = await snapshotTenantRows(tenant.id);
    const attempt = async (prepare: (vault: VaultKvStandIn) => void) => {
      const { vault, addr, token } = startVault();
      vault.put("payments/stripe", { secret_key: stripeKey() });
      prepare(vault);
      return importVault<Problem>(tenant, { address: addr, token, paths: [stripe("payments/stripe")] });
    };

    const sealed = await attempt((vault) => vault.seal());
    expect(sealed.status).toBe(502);
    expect(sealed.body).toMatchObject({
      code: "UPSTREAM_UNAVAILABLE",
      detail: "Vault is sealed: nothing was imported. Retry once Vault is unsealed.",
    });
    const unreachable = await attempt((vault) => vault.goUnreachable());
    expect(unreachable.status).toBe(502);
    expect(unreachable.body.detail).toContain("network error");
    const huge = await attempt((vault) =>
      vault.faults.next("read", () =>
        HttpResponse.json({ data: { data: { secret_key: "x".repeat(70_000) }, metadata: { version: 1 } } }),
      ),
    );
    expect(huge.status).toBe(502);
    expect(huge.body.detail).toContain("over 64 KiB");
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });

  it("sends X-Vault-Namespace, and the token never reaches a response, an audit row, a log line or the database (threat model case 18)", async () => {
    const tenant = await createTenant();
    const { vault, addr, token } = startVault({ namespace: "team-a" });
    vault.put("payments/stripe", { secret_key: stripeKey() });
    const logged: string[] = [];
    const capture = (...args: unknown[]) => {
      logged.push(args.map(String).join(" "));
    };
    for (const level of ["log", "info", "warn", "error", "debug"] as const) {
      vi.spyOn(console, level).mockImplementation(capture);
    }

    const outside = await importVault(tenant, {
      address: addr,
      token,
      dry_run: true,
      paths: [stripe("payments/stripe")],
    });
    expect(item(outside.body, "payments/stripe").action).toBe("invalid");
    // Vault echoing the token in an error is withheld, not relayed.
    vault.faults.next("read", () =>
      HttpResponse.json({ errors: [`invalid token ${token}`] }, { status: 400 }),
    );
    const echoed = await importVault(tenant, {
      address: addr,
      token,
      namespace: "team-a",
      dry_run: true,
      paths: [stripe("payments/stripe")],
    });
    expect(item(echoed.body, "payments/stripe").errors?.[0]?.message).toContain("withheld");
    const imported = await importVault(tenant, {
      address: addr,
      token,
      namespace: "team-a",
      paths: [stripe("payments/stripe")],
    });
    expect(imported.status).toBe(200);
    expect(vault.log.at(-1)?.headers["x-vault-namespace"]).toBe("team-a");

    const seen = [outside.body, echoed.body, imported.body, await auditActions(tenant), logged].map((value) =>
      JSON.stringify(value),
    );
    for (const text of seen) expect(text).not.toContain(token);
    expect(await dumpDatabase()).not.toContain(token);
  });

  it("needs credentials:write and credentials:reveal, refuses a tenant id in the body, and never touches another tenant's same-named credential (threat model cases 1, 2 and 13)", async () => {
    const tenant = await createTenant();
    const other = await createTenant();
    const { vault, addr, token } = startVault();
    vault.put("payments/stripe", { secret_key: stripeKey() });
    const request = { address: addr, token, paths: [stripe("payments/stripe")] };

    const readOnly = await createKey(tenant, { name: "reader", role: "read_only" });
    expect((await importVault(tenant, request, readOnly.key)).status).toBe(403);
    // read_write may store credentials but not read them: the plan's "unchanged" would tell it whether a
    // guessed value is the stored one, so it needs credentials:reveal too.
    const writer = await createKey(tenant, { name: "writer", role: "read_write" });
    expect((await importVault(tenant, { ...request, dry_run: true }, writer.key)).status).toBe(403);
    expect(vault.count("read")).toBe(0);
    expect((await call("POST", "/api/v1/import/vault", { body: request })).status).toBe(401);
    const smuggled = await importVault<Problem>(tenant, { ...request, tenant_id: other.id });
    expect(smuggled.status).toBe(422);

    const theirs = await importVault(other, request);
    expect(item(theirs.body, "payments/stripe").action).toBe("create");
    const otherBefore = await snapshotTenantRows(other.id);
    const ours = await importVault(tenant, request);
    const created = item(ours.body, "payments/stripe");
    expect(created.action).toBe("create");
    expect(created.credential_id).not.toBe(item(theirs.body, "payments/stripe").credential_id);
    expect(await snapshotTenantRows(other.id)).toBe(otherBefore);
    expect(vault.count("read")).toBe(2);
  });

  it("refuses two secrets filling one credential, and a folder given a name", async () => {
    const tenant = await createTenant();
    const { vault, addr, token } = startVault();
    vault.put("a/stripe", { secret_key: stripeKey() });
    vault.put("b/stripe", { secret_key: stripeKey() });
    const twice = await importVault(tenant, {
      address: addr,
      token,
      dry_run: true,
      paths: [stripe("a/stripe", { name: "Stripe" }), stripe("b/stripe", { name: "Stripe" })],
    });
    expect(twice.body.items.map((entry) => entry.errors?.[0]?.path)).toEqual([
      "paths.0.name",
      "paths.1.name",
    ]);

    const folderNamed = await importVault<Problem>(tenant, {
      address: addr,
      token,
      paths: [stripe("a/", { name: "All" })],
    });
    expect(folderNamed.status).toBe(422);
    expect(folderNamed.body.errors?.[0]?.path).toBe("paths.0.path");
    expect(vault.log).toHaveLength(2);
  });
});
