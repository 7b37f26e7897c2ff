/**
 * The migration OUT of Vault Transit (vault:1 -> master:2), as docs/storage.md tells an operator to do it:
 * set a new master secret MASTER_KEY_2, KEK_VERSION=2 and KEK_PROVIDER=master while VAULT_* stay set, let
 * the cron's re-wrap run, then remove VAULT_*. Removing VAULT_* too early is refused with a clear sealed
 * error, never silent data loss.
 *
 * Project `kek-master-2`: the worker's own bindings are the deployment after the switch (KEK_VERSION=2,
 * MASTER_KEY_2, VAULT_ADDR and VAULT_TOKEN still set). Before it, the deployment used Vault alone.
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import type { Bindings } from "../../src/env";
import { kekRewrapNeeded, startKekRewrap } from "../../src/vault/kek-rewrap";
import { forgetKeys, unseal } from "../../src/vault/keyring";
import { sessionFromSetCookie } from "../auth/jwt-forge";
import { rowCounts } from "../crypto/support";
import {
  createSystemKeysWith,
  createTenantWith,
  cronRewrap,
  envWith,
  expectAllReveal,
  keksInUse,
  keyMaterial,
  rewrapRuns,
  type StoredCredential,
  send,
  storeWith,
  useTransitStandIn,
} from "./kek-fixtures";

const SWITCHED = env as Bindings;
/** Before: Vault wraps everything and no master secret is set. */
const VAULT_ONLY = envWith({
  KEK_PROVIDER: "vault",
  KEK_VERSION: "1",
  MASTER_KEY: undefined,
  MASTER_KEY_2: undefined,
});
/** The end of the migration: VAULT_* removed. */
const MASTER_ONLY = envWith({ VAULT_ADDR: undefined, VAULT_TOKEN: undefined });

const standIn = useTransitStandIn(SWITCHED);
beforeEach(() => forgetKeys());

describe("migration out of Vault Transit", () => {
  it("moves every DEK and system key from vault:1 to master:2; VAULT_* removed too early seals, removed after, nothing needs Vault", async () => {
    // Before: Vault only. Its system keys were drawn at random (no master secret to derive them from).
    await createSystemKeysWith(VAULT_ONLY);
    const tenants = [];
    const credentials: StoredCredential[] = [];
    for (let i = 0; i < 3; i++) {
      const tenant = await createTenantWith(VAULT_ONLY, `on Vault ${i}`);
      tenants.push(tenant);
      credentials.push(await storeWith(VAULT_ONLY, tenant));
    }
    const [first] = tenants;
    if (!first) throw new Error("no tenant");
    const signedIn = await send(VAULT_ONLY, "POST", "/api/v1/auth/session", {
      body: { key: first.adminKey },
    });
    const session = sessionFromSetCookie(signedIn.headers.get("set-cookie"));
    expect(session).toBeTruthy();
    expect(await keksInUse()).toEqual({ "vault:1": 3 + 2 });
    const materialBefore = await keyMaterial(await unseal(VAULT_ONLY, database(env.DB)));

    // The switch back to master:2 (VAULT_* kept): new DEKs under master:2, Vault's keys still open.
    forgetKeys();
    const after = await createTenantWith(SWITCHED, "after the switch to master");
    credentials.push(await storeWith(SWITCHED, after));
    expect(await kekRewrapNeeded(SWITCHED)).toEqual({
      target: { provider: "master", version: 2 },
      needed: true,
    });
    await expectAllReveal(SWITCHED, credentials);

    // VAULT_* removed before the re-wrap: sealed, naming the missing setting, and nothing is created.
    forgetKeys();
    const counts = await rowCounts();
    const early = await send(MASTER_ONLY, "POST", "/api/v1/tenants", {
      key: env.BOOTSTRAP_TOKEN,
      body: { name: "never created" },
    });
    expect(early.status).toBe(503);
    expect(early.body).toMatchObject({
      code: "SEALED",
      detail: "Keys are wrapped by Vault Transit but VAULT_ADDR is not set.",
    });
    expect(await rowCounts()).toEqual(counts);

    // The cron's re-wrap: every key leaves Vault through `decrypt`, once.
    forgetKeys();
    const decrypted = standIn().counts.decrypt;
    expect(await cronRewrap(Date.now())).toBe("completed");
    expect(await rewrapRuns()).toEqual([{ state: "completed", step: "rewrap", error: null }]);
    expect(await keksInUse()).toEqual({ "master:2": 4 + 2 });
    expect(standIn().counts.decrypt - decrypted).toBe(3 + 2);
    expect(await keyMaterial(await unseal(SWITCHED, database(env.DB)))).toEqual(
      expect.objectContaining(materialBefore),
    );

    // VAULT_* removed, and Vault gone for good: every key opens from MASTER_KEY_2, audit chains verify, the
    // session signed while on Vault still verifies.
    standIn().goUnreachable();
    forgetKeys();
    const vaultRequests = standIn().log.length;
    await expectAllReveal(MASTER_ONLY, credentials);
    for (const tenant of tenants) {
      const chain = await send(MASTER_ONLY, "GET", "/api/v1/audit/verify", { key: tenant.adminKey });
      expect(chain.body).toMatchObject({ ok: true });
    }
    const whoAmI = await send(MASTER_ONLY, "GET", "/api/v1/auth/session", {
      headers: { cookie: `__Host-kw_session=${session}` },
    });
    expect(whoAmI.body).toMatchObject({ tenant_id: first.id });
    expect(await startKekRewrap(MASTER_ONLY, Date.now() + 600_000)).toBeNull();
    expect(standIn().log.length).toBe(vaultRequests);
  });
});
