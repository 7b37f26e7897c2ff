/**
 * KEK rotation master:1 -> master:2 end to end, as docs/storage.md ("KEK rotation") tells an operator to do
 * it: add MASTER_KEY_2, switch KEK_VERSION to 2, let the cron's re-wrap run, remove MASTER_KEY. And the old
 * secret removed too early: sealed with a clear error, never silent data loss (threat model case 8).
 *
 * Project `kek-master-2`: the worker's own bindings hold MASTER_KEY, MASTER_KEY_2 and KEK_VERSION=2 (after
 * the switch); the deployment before it is `MASTER_1_ONLY` (kek-fixtures.ts).
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import { kekRewrapNeeded, startKekRewrap } from "../../src/vault/kek-rewrap";
import { forgetKeys, unseal } from "../../src/vault/keyring";
import { sessionFromSetCookie } from "../auth/jwt-forge";
import { rowCounts } from "../crypto/support";
import {
  createKeyWith,
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
  verifyWith,
} from "./kek-fixtures";

/** After the switch, both secrets present: the project's own configuration. */
const SWITCHED = env;
/** An isolate still on the old version after step 1 of the procedure (MASTER_KEY_2 added). */
const OLD_WITH_2 = envWith({ KEK_VERSION: "1" });
/** The end of the procedure: MASTER_KEY removed. */
const MASTER_2_ONLY = envWith({ MASTER_KEY: undefined });

beforeEach(() => forgetKeys());

describe("KEK rotation master:1 -> master:2 without downtime", () => {
  it("re-wraps every DEK and system key under master:2 through the cron, after which MASTER_KEY can go", async () => {
    // Before: one master secret. Three tenants with credentials, API keys and a signed-in session.
    await createSystemKeysWith(MASTER_1_ONLY);
    const tenants = [];
    const credentials: StoredCredential[] = [];
    const apiKeys: string[] = [];
    for (let i = 0; i < 3; i++) {
      const tenant = await createTenantWith(MASTER_1_ONLY, `before switch ${i}`);
      tenants.push(tenant);
      credentials.push(await storeWith(MASTER_1_ONLY, tenant), await storeWith(MASTER_1_ONLY, tenant));
      apiKeys.push(await createKeyWith(MASTER_1_ONLY, tenant));
    }
    const [first] = tenants;
    if (!first) throw new Error("no tenant");
    const signedIn = await send(MASTER_1_ONLY, "POST", "/api/v1/auth/session", {
      body: { key: first.adminKey },
    });
    expect(signedIn.status).toBe(201);
    const session = sessionFromSetCookie(signedIn.headers.get("set-cookie"));
    expect(session).toBeTruthy();
    expect(await keksInUse()).toEqual({ "master:1": 3 + 2 });
    const materialBefore = await keyMaterial(await unseal(MASTER_1_ONLY, database(env.DB)));

    // The switch: KEK_VERSION=2 with both secrets. Not sealed; new tenants' DEKs go under master:2 at once,
    // and keys still under master:1 keep working.
    forgetKeys();
    const after = await createTenantWith(SWITCHED, "after switch");
    credentials.push(await storeWith(SWITCHED, after));
    expect(
      await env.DB.prepare("SELECT kek_provider, kek_version FROM data_keys WHERE tenant_id = ?")
        .bind(after.id)
        .all(),
    ).toMatchObject({ results: [{ kek_provider: "master", kek_version: 2 }] });
    await expectAllReveal(SWITCHED, credentials);
    expect(await kekRewrapNeeded(SWITCHED)).toEqual({
      target: { provider: "master", version: 2 },
      needed: true,
    });

    // The cron starts the re-wrap; when it ends nothing depends on master:1.
    const now = Date.now();
    expect(await cronRewrap(now)).toBe("completed");
    expect(await rewrapRuns()).toEqual([{ state: "completed", step: "rewrap", error: null }]);
    expect(await keksInUse()).toEqual({ "master:2": 4 + 2 });
    expect((await kekRewrapNeeded(SWITCHED)).needed).toBe(false);
    // Wrapped again, not replaced: the same DEKs and system keys, bit for bit.
    const materialAfter = await keyMaterial(await unseal(SWITCHED, database(env.DB)));
    for (const [id, digest] of Object.entries(materialBefore)) expect(materialAfter[id], id).toBe(digest);
    // A second tick finds nothing to do and claims nothing.
    expect(await startKekRewrap(SWITCHED, now + 300_000)).toBeNull();

    // MASTER_KEY removed: a cold isolate unseals, every credential reveals, every key verifies, each audit
    // chain still verifies (its key was re-wrapped, not replaced) and the session from before still works.
    forgetKeys();
    await expectAllReveal(MASTER_2_ONLY, credentials);
    for (const [i, tenant] of tenants.entries()) {
      const verified = await verifyWith(MASTER_2_ONLY, tenant, apiKeys[i] as string);
      expect(verified.body).toMatchObject({ valid: true });
      const chain = await send(MASTER_2_ONLY, "GET", "/api/v1/audit/verify", { key: tenant.adminKey });
      expect(chain.status).toBe(200);
      expect(chain.body).toMatchObject({ ok: true });
      expect(chain.body.rows as number).toBeGreaterThan(1);
    }
    const whoAmI = await send(MASTER_2_ONLY, "GET", "/api/v1/auth/session", {
      headers: { cookie: `__Host-kw_session=${session}` },
    });
    expect(whoAmI.status).toBe(200);
    expect(whoAmI.body).toMatchObject({ tenant_id: first.id });
    expect(await startKekRewrap(MASTER_2_ONLY, now + 600_000)).toBeNull();
  });
});

describe("the old master secret removed too early (threat model case 8)", () => {
  it("answers 503 SEALED naming MASTER_KEY and creates nothing while DEKs still depend on it; restored, everything decrypts", async () => {
    // Keys under master:1 (an isolate still on the old configuration made them), with master:2 switched to.
    const tenant = await createTenantWith(OLD_WITH_2, "old DEK");
    const credentials = [await storeWith(OLD_WITH_2, tenant)];
    forgetKeys();
    await expectAllReveal(SWITCHED, credentials);
    expect((await keksInUse())["master:1"]).toBeGreaterThanOrEqual(1);
    const before = await rowCounts();

    forgetKeys();
    const refused = await send(MASTER_2_ONLY, "POST", "/api/v1/tenants", {
      key: env.BOOTSTRAP_TOKEN,
      body: { name: "never created" },
    });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("content-type")).toContain("application/problem+json");
    expect(refused.body).toMatchObject({ code: "SEALED", status: 503 });
    expect(refused.body.detail).toMatch(/^MASTER_KEY was removed while stored keys still depend on it/);
    expect(JSON.stringify(refused.body)).not.toContain(env.MASTER_KEY);
    const reveal = await send(MASTER_2_ONLY, "POST", `/api/v1/credentials/${credentials[0]?.id}/reveal`, {
      key: tenant.adminKey,
      body: {},
    });
    expect(reveal.status).toBe(503);
    expect(reveal.body).toMatchObject({ code: "SEALED" });
    expect(await rowCounts()).toEqual(before);

    // MASTER_KEY set again: nothing was lost.
    forgetKeys();
    await expectAllReveal(SWITCHED, credentials);
    expect(await rowCounts()).toMatchObject({ tenants: before.tenants, data_keys: before.data_keys });
  });
});
