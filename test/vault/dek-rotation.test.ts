/**
 * DEK rotation of one tenant under concurrent writes: every sealed table, writes racing the re-encryption
 * chunks, the retire guard, and what a deleted DEK leaves behind. Runs are claimed and their Workflows started
 * directly (never through the cron), so this file only touches its own tenants.
 */
import { introspectWorkflowInstance, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { totpSecretOf } from "../../src/auth/totp-store";
import { credentialRecordId, openValues, sealWith } from "../../src/credentials/sealed-fields";
import { IntegrityError, parseBlob } from "../../src/crypto/envelope";
import { database } from "../../src/db/client";
import { type adminTotp, credentialVersions } from "../../src/db/schema";
import { OVERLAP_ENDED } from "../../src/lifecycle/rotation-params";
import { activeDek } from "../../src/vault/data-keys";
import {
  createSuccessorDek,
  prepareReencryption,
  reencryptChunk,
  retireOldDeks,
} from "../../src/vault/dek-rotation";
import { unseal } from "../../src/vault/keyring";
import { SEALED_SOURCES } from "../../src/vault/sealed-records";
import { WIZARD_IDLE_MS, WIZARD_MAX_AGE_MS, type WizardSession } from "../../src/wizard/wizard-session";
import { callJson, createTenant, type TestTenant } from "../helpers/api";
import { storeCredential, stripeTestKey } from "../lifecycle/credential-rotation-fixtures";
import { deliveryKeyPair, registerEndpoint } from "../lifecycle/handoff-fixtures";
import {
  claimDekRun,
  dataKeysOf,
  dekAudit,
  dekRuns,
  type OpenedRow,
  rowsBelow,
  runDekWorkflow,
  sealedPlaintexts,
  sealedTenant,
  T0,
} from "./dek-rotation-fixtures";

const RETIRE_AT = T0 + WIZARD_MAX_AGE_MS;

async function reveal(tenant: TestTenant, id: string, version?: number) {
  return callJson<{ fields: Record<string, string>; code?: string }>(
    "POST",
    `/api/v1/credentials/${id}/reveal`,
    { key: tenant.adminKey, body: version === undefined ? {} : { version } },
  );
}

const drain = async (tenantId: string, version: number, chunk = 100) => {
  while ((await reencryptChunk(env, tenantId, version, chunk)).found > 0) {}
};

describe("DEK rotation under concurrent writes", () => {
  it("re-encrypts fields in every sealed table while writes race the chunks: none stays under the old DEK, which is deleted, and every field reads back as written", async () => {
    const fx = await sealedTenant("dek under writes");
    const { tenant } = fx;
    const before = await sealedPlaintexts(tenant.id);
    const tables = new Set([...before.keys()].map((key) => key.split(":")[0]));
    expect([...tables].sort()).toEqual(SEALED_SOURCES.map((source) => source.table).sort());
    expect([...before.values()].every((row) => row.dekVersion === 1)).toBe(true);

    const added: { id: string; value: string }[] = [];
    let newDeliverySecret = "";
    let newEndpointSecret = "";
    const params = await claimDekRun(tenant.id, T0, 1);
    const output = await runDekWorkflow(params, undefined, async () => {
      // Every kind of write, interleaved with one-row chunks: new rows, rows replaced in place, a row deleted.
      for (let i = 0; i < 2; i++) {
        const value = stripeTestKey();
        added.push({ id: await storeCredential(tenant, "stripe", { secret_key: value }), value });
      }
      newDeliverySecret = (await registerEndpoint(tenant, (await deliveryKeyPair()).publicJwk))
        .signing_secret;
      const revealed = await reveal(tenant, fx.credentials[1]?.id as string);
      expect(revealed.body.fields).toEqual({ secret_key: fx.credentials[1]?.value });
      const picked = await callJson<{ key: string }>("POST", `/api/v1/keys/${fx.pickup.keyId}/pickup`, {
        key: tenant.adminKey,
      });
      expect(picked.body.key).toBe(fx.pickup.plaintext);
      // Keeps its stored secret: the route copies the sealed value and its dek_version it read.
      const kept = await callJson("PUT", `/api/v1/credentials/${fx.credentials[0]?.id}/rotation`, {
        key: tenant.adminKey,
        body: { method: "external", policy_days: 60, endpoint_url: "https://rotate.example.com/stripe" },
      });
      expect(kept.status).toBe(200);
      const external = await callJson<{ signing_secret: string }>(
        "PUT",
        `/api/v1/credentials/${fx.credentials[2]?.id}/rotation`,
        {
          key: tenant.adminKey,
          body: { method: "external", policy_days: 30, endpoint_url: "https://rotate.example.com/other" },
        },
      );
      expect(external.status).toBe(200);
      newEndpointSecret = external.body.signing_secret;
    });
    expect(output).toBe("completed");

    expect(await rowsBelow(tenant.id, 2)).toBe(0);
    expect((await dataKeysOf(tenant.id)).map(({ version, status }) => ({ version, status }))).toEqual([
      { version: 2, status: "active" },
    ]);
    const after = await sealedPlaintexts(tenant.id);
    const expected = new Map<string, OpenedRow>();
    for (const [key, row] of before) expected.set(key, { dekVersion: 2, values: row.values });
    expected.delete(`key_handoffs:${fx.pickup.keyId}`);
    expected.set(`key_delivery_endpoints:${tenant.id}`, {
      dekVersion: 2,
      values: { signing_secret: newDeliverySecret },
    });
    expected.set(`credential_rotations:${fx.credentials[2]?.id}`, {
      dekVersion: 2,
      values: { signing_secret: newEndpointSecret },
    });
    for (const { id, value } of added)
      expected.set(`credential_versions:${id}/1`, { dekVersion: 2, values: { secret_key: value } });
    expect(after).toEqual(expected);
    expect(after.get(`credential_rotations:${fx.credentials[0]?.id}`)?.values).toEqual({
      signing_secret: fx.endpointSecret,
    });
    expect(after.get(`alert_channels:${fx.channel.id}`)?.values).toEqual(fx.channel.secrets);

    // And through the routes and readers that use them.
    for (const { id, value } of [...fx.credentials, ...added])
      expect((await reveal(tenant, id)).body.fields).toEqual({ secret_key: value });
    const db = database(env.DB);
    const totp = await db.query.adminTotp.findFirst({ where: (t, { eq }) => eq(t.keyId, fx.totp.keyId) });
    expect(await totpSecretOf(env, db, totp as typeof adminTotp.$inferSelect)).toEqual(fx.totp.secret);
    expect(await dekRuns(tenant.id)).toMatchObject([{ state: "completed", successor_id: "2" }]);
  });

  it("keeps a writer's value when the row changed between a chunk's read and its write (compare-and-set)", async () => {
    const tenant = await createTenant("dek compare-and-set");
    const value = stripeTestKey();
    const credential = await storeCredential(tenant, "stripe", { secret_key: value });
    await registerEndpoint(tenant, (await deliveryKeyPair()).publicJwk);
    const params = await claimDekRun(tenant.id);
    expect(await createSuccessorDek(env, params)).toBe(2);

    const prepared = await prepareReencryption(env, tenant.id, 2, 100);
    expect(prepared.found).toBe(2);
    // The endpoint is registered again (a new signing secret, sealed under v2) before the chunk writes.
    const replaced = await registerEndpoint(tenant, (await deliveryKeyPair()).publicJwk);
    expect(await prepared.commit()).toEqual({ found: 2, moved: 1 });

    const opened = await sealedPlaintexts(tenant.id);
    expect(opened.get(`key_delivery_endpoints:${tenant.id}`)).toEqual({
      dekVersion: 2,
      values: { signing_secret: replaced.signing_secret },
    });
    expect(opened.get(`credential_versions:${credential}/1`)).toEqual({
      dekVersion: 2,
      values: { secret_key: value },
    });
    expect(await rowsBelow(tenant.id, 2)).toBe(0);
  });
});

/** A new credential version written by a request that read the active DEK (v1) before the switch to v2. */
async function lateVersionUnderOldDek(
  tenant: TestTenant,
  credentialId: string,
  stale: Awaited<ReturnType<typeof activeDek>>,
) {
  const value = stripeTestKey();
  const sealed = await sealWith(
    stale,
    { tenantId: tenant.id, recordId: credentialRecordId(credentialId, 2) },
    { secret_key: value },
  );
  const db = database(env.DB);
  await db.batch([
    db.insert(credentialVersions).values({
      credentialId,
      tenantId: tenant.id,
      version: 2,
      sealedFields: sealed,
      dekVersion: stale.version,
      displayFields: {},
      stage: null,
      providerKeyId: null,
      createdBy: "late request",
      createdAt: T0,
    }),
    stale.countEncryptions,
  ]);
  return { value, blob: sealed.secret_key as string };
}

describe("retiring the old DEK", () => {
  it("refuses to delete a DEK a field still uses; the next attempt re-encrypts the field, then deletes", async () => {
    const tenant = await createTenant("dek retire guard");
    const credential = await storeCredential(tenant, "stripe", { secret_key: stripeTestKey() });
    const db = database(env.DB);
    const stale = await activeDek(await unseal(env, db), db, tenant.id, 1);
    const params = await claimDekRun(tenant.id);
    expect(await createSuccessorDek(env, params)).toBe(2);
    await drain(tenant.id, 2);
    // The write that read v1 before the switch lands after the last sweep.
    const late = await lateVersionUnderOldDek(tenant, credential, stale);

    expect(await retireOldDeks(env, params, 2, RETIRE_AT)).toBeNull();
    expect((await dataKeysOf(tenant.id)).map((row) => row.version)).toEqual([1, 2]);
    expect(await dekRuns(tenant.id)).toMatchObject([{ state: "in_progress" }]);
    expect((await dekAudit(tenant.id)).map((row) => row.action)).toEqual(["data_key.rotate"]);

    expect(await reencryptChunk(env, tenant.id, 2)).toEqual({ found: 1, moved: 1 });
    expect(await retireOldDeks(env, params, 2, RETIRE_AT)).toEqual([1]);
    expect((await dataKeysOf(tenant.id)).map((row) => row.version)).toEqual([2]);
    expect(await dekRuns(tenant.id)).toMatchObject([{ state: "completed" }]);
    expect((await dekAudit(tenant.id)).map((row) => row.action)).toEqual([
      "data_key.rotate",
      "data_key.retire",
    ]);
    expect((await reveal(tenant, credential, 2)).body.fields).toEqual({ secret_key: late.value });
  });

  it("in the Workflow, a field that arrives under the old DEK after the sweep makes the retire step keep it, sweep again and retire on the next attempt", async () => {
    const tenant = await createTenant("dek retire retry");
    const credential = await storeCredential(tenant, "stripe", { secret_key: stripeTestKey() });
    const db = database(env.DB);
    const stale = await activeDek(await unseal(env, db), db, tenant.id, 1);
    const params = await claimDekRun(tenant.id);
    await using instance = await introspectWorkflowInstance(env.DEK_ROTATION, params.runId);
    await instance.modify(async (m) => {
      await m.disableRetryDelays();
      // The late row lands after the first sweep read nothing.
      await m.mockStepResult({ name: "sweep-0" }, { found: 0, moved: 0 });
    });
    await env.DEK_ROTATION.create({ id: params.runId, params });
    await instance.waitForStepResult({ name: "overlap" });
    const late = await lateVersionUnderOldDek(tenant, credential, stale);
    await (await env.DEK_ROTATION.get(params.runId)).sendEvent({
      type: OVERLAP_ENDED,
      payload: { now: RETIRE_AT },
    });
    await instance.waitForStatus("complete");

    expect(await instance.waitForStepResult({ name: "retire" })).toBeNull();
    expect(await instance.waitForStepResult({ name: "sweep-2-0" })).toEqual({ found: 1, moved: 1 });
    expect(await instance.waitForStepResult({ name: "retire-2" })).toEqual([1]);
    expect((await dataKeysOf(tenant.id)).map((row) => row.version)).toEqual([2]);
    expect((await reveal(tenant, credential, 2)).body.fields).toEqual({ secret_key: late.value });
  });

  it("makes a blob naming the deleted DEK fail closed with IntegrityError, through the API too (threat model case 6)", async () => {
    const tenant = await createTenant("dek shredded");
    const credential = await storeCredential(tenant, "stripe", { secret_key: stripeTestKey() });
    const original = await env.DB.prepare(
      "SELECT sealed_fields FROM credential_versions WHERE credential_id = ?",
    )
      .bind(credential)
      .first<{ sealed_fields: string }>();
    const oldBlob = (JSON.parse(original?.sealed_fields as string) as Record<string, string>)
      .secret_key as string;
    expect(parseBlob(oldBlob).keyVersion).toBe(1);
    expect(await runDekWorkflow(await claimDekRun(tenant.id))).toBe("completed");
    expect((await dataKeysOf(tenant.id)).map((row) => row.version)).toEqual([2]);

    const db = database(env.DB);
    const target = { tenantId: tenant.id, recordId: credentialRecordId(credential, 1) };
    await expect(openValues(await unseal(env, db), db, target, { secret_key: oldBlob })).rejects.toThrow(
      IntegrityError,
    );
    // A stored row put back as it was before the rotation (a restored backup) does not decrypt, and says so.
    await env.DB.prepare(
      "UPDATE credential_versions SET sealed_fields = ?, dek_version = 1 WHERE credential_id = ?",
    )
      .bind(original?.sealed_fields, credential)
      .run();
    const refused = await reveal(tenant, credential);
    expect(refused.status).toBe(500);
    expect(refused.body.code).toBe("INTEGRITY_ERROR");
  });
});

describe("the retire wait covers every wizard", () => {
  it("arms a wizard's wipe WIZARD_MAX_AGE_MS after its creation however active it stays, so none outlives the retire wait", async () => {
    const stub = env.WIZARD_SESSION.get(env.WIZARD_SESSION.newUniqueId());
    const created = Date.now();
    expect((await stub.create("ten_wizard_age", "key_a", created)).ok).toBe(true);
    // Active again a few minutes before its seventh day: the idle bound alone would keep it a day longer.
    const lastTouch = created + WIZARD_MAX_AGE_MS - 5 * 60_000;
    const touched = await stub.apply("ten_wizard_age", { type: "navigate", step: "services" }, lastTouch);
    expect(touched.ok).toBe(true);
    expect(touched.ok && Date.parse(touched.value.expires_at)).toBe(created + WIZARD_MAX_AGE_MS);
    expect(created + WIZARD_MAX_AGE_MS).toBeLessThan(lastTouch + WIZARD_IDLE_MS);
    await runInDurableObject(stub, async (_instance: WizardSession, state) => {
      expect(await state.storage.getAlarm()).toBe(created + WIZARD_MAX_AGE_MS);
    });
  });
});
