/**
 * HashiCorp Vault Transit as the KEK provider, against the Transit stand-in (transit-stand-in.ts): the
 * migration INTO Vault (master:1 -> vault:1), a Transit key version rotated (vault:1 -> vault:2 through
 * Vault's own `rewrap`), and Vault unreachable at cold start (sealed, nothing created).
 *
 * Project `kek-vault`: the worker's own bindings are the deployment after the switch (KEK_PROVIDER=vault,
 * VAULT_ADDR, VAULT_TOKEN, MASTER_KEY still set). The tests follow one deployment's history, in order.
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { DEK_USE } from "../../src/crypto/envelope";
import { database } from "../../src/db/client";
import type { Bindings } from "../../src/env";
import { dekBinding } from "../../src/vault/data-keys";
import { kekRewrapNeeded, startKekRewrap } from "../../src/vault/kek-rewrap";
import { forgetKeys, unseal } from "../../src/vault/keyring";
import { expectIntegrityError, rowCounts } from "../crypto/support";
import {
  createSystemKeysWith,
  createTenantWith,
  cronRewrap,
  envWith,
  expectAllReveal,
  keksInUse,
  keyMaterial,
  MASTER_1_ONLY,
  rewrapRuns,
  type StoredCredential,
  send,
  storeWith,
  useTransitStandIn,
  wrappedKeys,
} from "./kek-fixtures";

const SWITCHED = env as Bindings;
/** The end of the migration: no master secret at all, only Vault. */
const VAULT_ONLY = envWith({ MASTER_KEY: undefined });
const MINUTE = 60_000;

const credentials: StoredCredential[] = [];
const tenants: Awaited<ReturnType<typeof createTenantWith>>[] = [];

const standIn = useTransitStandIn(SWITCHED);
beforeEach(() => forgetKeys());

async function dataKeyKeks(tenantId: string) {
  const { results } = await env.DB.prepare(
    "SELECT kek_provider || ':' || kek_version AS kek FROM data_keys WHERE tenant_id = ?",
  )
    .bind(tenantId)
    .all<{ kek: string }>();
  return results.map((row) => row.kek);
}

describe("migration into Vault Transit", () => {
  it("moves every DEK and system key from master:1 to vault:1, after which reveal works with only Vault configured", async () => {
    // Before: MASTER_KEY only, no Vault.
    await createSystemKeysWith(MASTER_1_ONLY);
    for (let i = 0; i < 3; i++) {
      const tenant = await createTenantWith(MASTER_1_ONLY, `before Vault ${i}`);
      tenants.push(tenant);
      credentials.push(await storeWith(MASTER_1_ONLY, tenant));
    }
    expect(await keksInUse()).toEqual({ "master:1": 3 + 2 });
    const materialBefore = await keyMaterial(await unseal(MASTER_1_ONLY, database(env.DB)));

    // The switch: VAULT_* set and KEK_PROVIDER=vault. New DEKs go to Vault at once; master:1 keys still work.
    forgetKeys();
    const after = await createTenantWith(SWITCHED, "after the switch to Vault");
    tenants.push(after);
    credentials.push(await storeWith(SWITCHED, after));
    expect(await dataKeyKeks(after.id)).toEqual(["vault:1"]);
    await expectAllReveal(SWITCHED, credentials);
    expect(await kekRewrapNeeded(SWITCHED)).toEqual({
      target: { provider: "vault", version: 1 },
      needed: true,
    });

    const encrypted = standIn().counts.encrypt;
    expect(await cronRewrap(Date.now())).toBe("completed");
    expect(await rewrapRuns()).toEqual([{ state: "completed", step: "rewrap", error: null }]);
    expect(await keksInUse()).toEqual({ "vault:1": 4 + 2 });
    // Each master-wrapped key went to Vault once, through `encrypt` under its own derivation context.
    expect(standIn().counts.encrypt - encrypted).toBe(3 + 2);
    expect(await keyMaterial(await unseal(SWITCHED, database(env.DB)))).toEqual(
      expect.objectContaining(materialBefore),
    );

    // MASTER_KEY removed: a cold isolate opens every key through Vault alone.
    forgetKeys();
    await expectAllReveal(VAULT_ONLY, credentials);
    for (const tenant of tenants) {
      const chain = await send(VAULT_ONLY, "GET", "/api/v1/audit/verify", { key: tenant.adminKey });
      expect(chain.body).toMatchObject({ ok: true });
    }
    const later = await createTenantWith(VAULT_ONLY, "Vault only");
    tenants.push(later);
    credentials.push(await storeWith(VAULT_ONLY, later));
    expect(await dataKeyKeks(later.id)).toEqual(["vault:1"]);
  });
});

describe("a rotated Transit key version", () => {
  it("moves every DEK to the new version through Vault's rewrap, after which min_decryption_version can be raised", async () => {
    const oldDek = await env.DB.prepare(
      "SELECT tenant_id, version, wrapped_key FROM data_keys ORDER BY tenant_id LIMIT 1",
    ).first<{ tenant_id: string; version: number; wrapped_key: string }>();
    if (!oldDek) throw new Error("no data key");
    expect(standIn().rotate()).toBe(2);
    // The keyring opened before the rotation still names vault:1; the cron reads Vault's latest version afresh.
    expect(await kekRewrapNeeded(SWITCHED)).toEqual({
      target: { provider: "vault", version: 2 },
      needed: true,
    });

    const before = { ...standIn().counts };
    const keys = (await wrappedKeys()).length;
    expect(await cronRewrap(Date.now() + 10 * MINUTE)).toBe("completed");
    expect(await keksInUse()).toEqual({ "vault:2": keys });
    // Vault to Vault: the DEKs never left Vault in plaintext (no decrypt, no encrypt), one rewrap per key.
    expect(standIn().counts.rewrap - before.rewrap).toBe(keys);
    expect(standIn().counts.decrypt - before.decrypt).toBe(0);
    expect(standIn().counts.encrypt - before.encrypt).toBe(0);

    // Nothing depends on version 1 any more: raising min_decryption_version breaks no read.
    standIn().setMinDecryptionVersion(2);
    forgetKeys();
    await expectAllReveal(VAULT_ONLY, credentials);
    // Control: a DEK still wrapped under version 1 would no longer open.
    await expectIntegrityError(
      (await unseal(VAULT_ONLY, database(env.DB))).keks.unwrap(
        { kek: { provider: "vault", version: 1 }, wrapped: oldDek.wrapped_key },
        dekBinding(oldDek.tenant_id, oldDek.version),
        DEK_USE,
      ),
    );
    const later = await createTenantWith(VAULT_ONLY, "after the Transit rotation");
    expect(await dataKeyKeks(later.id)).toEqual(["vault:2"]);
  });
});

describe("Vault unreachable at cold start", () => {
  it("answers 503 SEALED and creates nothing, the cron claims no re-wrap, and everything decrypts once Vault is back", async () => {
    standIn().goUnreachable();
    const before = await rowCounts();
    const created = await send(SWITCHED, "POST", "/api/v1/tenants", {
      key: env.BOOTSTRAP_TOKEN,
      body: { name: "never created" },
    });
    expect(created.status).toBe(503);
    expect(created.headers.get("content-type")).toContain("application/problem+json");
    expect(created.body).toMatchObject({ code: "SEALED", detail: "Vault Transit cannot be reached." });
    expect(JSON.stringify(created.body)).not.toContain(SWITCHED.VAULT_TOKEN as string);
    const [credential] = credentials;
    if (!credential) throw new Error("no credential");
    const revealed = await send(SWITCHED, "POST", `/api/v1/credentials/${credential.id}/reveal`, {
      key: credential.tenant.adminKey,
      body: {},
    });
    expect(revealed.status).toBe(503);
    expect(revealed.body).toMatchObject({ code: "SEALED" });
    await expect(startKekRewrap(SWITCHED, Date.now() + 20 * MINUTE)).rejects.toMatchObject({
      code: "SEALED",
    });
    expect(await rowCounts()).toEqual(before);
    expect(await rewrapRuns()).toHaveLength(2);

    standIn().comeBack();
    forgetKeys();
    await expectAllReveal(SWITCHED, credentials);
    expect((await createTenantWith(SWITCHED, "Vault is back")).id).toMatch(/\S/);
  });
});
