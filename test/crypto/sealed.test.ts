import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { dataKeys, keyring } from "../../src/db/schema";
import type { Bindings } from "../../src/env";
import { ApiError } from "../../src/errors";
import worker from "../../src/index";
import { forgetKeys, unseal } from "../../src/vault/keyring";
import { BASE, createTenant, freshClientIp } from "../helpers/api";
import { envWith } from "../helpers/env";
import { b64, db, hex, randomMasterKey, rowCounts, unb64 } from "./support";

/**
 * threat model case 8: a missing or wrong MASTER_KEY seals the service (503 SEALED), creates nothing,
 * and never adopts itself as the new key-check value.
 */

beforeEach(() => forgetKeys());
afterEach(() => forgetKeys());

type WorkerEnv = Bindings;

const right = unb64(env.MASTER_KEY);
const BAD_MASTER_KEYS: { label: string; value: string | undefined }[] = [
  { label: "missing", value: undefined },
  { label: "empty", value: "" },
  { label: "a different 32-byte key", value: randomMasterKey() },
  {
    label: "the right key with one bit flipped",
    value: b64(right.map((byte, i) => (i === 0 ? byte ^ 1 : byte))),
  },
  { label: "31 bytes", value: b64(right.subarray(0, 31)) },
  { label: "33 bytes", value: b64(new Uint8Array([...right, 0])) },
  { label: "the right key as hex", value: hex(right) },
  { label: "the right key with a trailing newline", value: `${env.MASTER_KEY}\n` },
];

async function keyringRows() {
  return db().select().from(keyring).all();
}

async function expectSealed(promise: Promise<unknown>, label: string) {
  let error: unknown;
  try {
    await promise;
  } catch (caught) {
    error = caught;
  }
  expect(error, label).toBeInstanceOf(ApiError);
  expect((error as ApiError).code, label).toBe("SEALED");
  expect((error as ApiError).status, label).toBe(503);
  return error as ApiError;
}

async function createTenantWith(workerEnv: WorkerEnv, name: string) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${BASE}/api/v1/tenants`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${env.BOOTSTRAP_TOKEN}`,
        "content-type": "application/json",
        // Its own client: every bootstrap attempt spends the caller's attempt budget.
        "cf-connecting-ip": freshClientIp(),
      },
      body: JSON.stringify({ name }),
    }),
    workerEnv,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return response;
}

describe("a missing or wrong master key seals the service (threat model case 8)", () => {
  it("makes unseal throw ApiError SEALED for a missing, empty, malformed or wrong MASTER_KEY", async () => {
    await createTenant("populated"); // a keyring row and wrapped DEKs exist
    const keyringBefore = await keyringRows();
    expect(keyringBefore).toHaveLength(1);
    for (const bad of BAD_MASTER_KEYS) {
      forgetKeys();
      const error = await expectSealed(unseal(envWith({ MASTER_KEY: bad.value }), db()), bad.label);
      if (bad.value) expect(error.message, bad.label).not.toContain(bad.value.trim());
    }
    expect(await keyringRows()).toEqual(keyringBefore);
    // The right key still unseals afterwards: nothing was overwritten.
    forgetKeys();
    await expect(unseal(env, db())).resolves.toMatchObject({
      keks: { target: { provider: "master", version: 1 } },
    });
  });

  it("does not let a cached unsealed keyring mask a different MASTER_KEY on a later call", async () => {
    await createTenant("cached");
    await unseal(env, db()); // cached and warm
    await expectSealed(
      unseal(envWith({ MASTER_KEY: randomMasterKey() }), db()),
      "wrong key after a warm cache",
    );
    await expectSealed(unseal(envWith({ MASTER_KEY: undefined }), db()), "missing key after a warm cache");
  });

  it("seals instead of minting a keyring row for an unknown KEK_VERSION on a database that holds wrapped DEKs", async () => {
    await createTenant("kek version");
    const before = await keyringRows();
    for (const version of ["2", "0", "-1", "1.5", "", "one"]) {
      forgetKeys();
      await expectSealed(
        unseal(envWith({ KEK_VERSION: version }), db()),
        `KEK_VERSION ${JSON.stringify(version)}`,
      );
    }
    expect(await keyringRows()).toEqual(before);
  });

  it("names MASTER_KEY, and records nothing, when one deploy switches to MASTER_KEY_2 and removes MASTER_KEY at once", async () => {
    await createTenant("switched and removed");
    const before = await keyringRows();
    forgetKeys();
    const error = await expectSealed(
      unseal(envWith({ MASTER_KEY: undefined, MASTER_KEY_2: randomMasterKey(), KEK_VERSION: "2" }), db()),
      "MASTER_KEY removed in the same deploy",
    );
    expect(error.detail).toMatch(/^MASTER_KEY was removed while stored keys still depend on it/);
    // Without a verified secret of a version in use, the new version cannot prove itself: nothing is recorded.
    expect(await keyringRows()).toEqual(before);
  });

  it("never lets a wrong key overwrite or add a keyring row once one exists, even before any DEK exists", async () => {
    // The delicate case: no wrapped DEK yet, so only the existing key-check value stands in the way.
    await unseal(env, db());
    const savedDataKeys = await db().select().from(dataKeys).all();
    await db().delete(dataKeys);
    try {
      const before = await keyringRows();
      expect(before).toHaveLength(1);
      for (const bad of BAD_MASTER_KEYS) {
        forgetKeys();
        await expectSealed(unseal(envWith({ MASTER_KEY: bad.value }), db()), bad.label);
        expect(await keyringRows(), bad.label).toEqual(before);
      }
    } finally {
      if (savedDataKeys.length > 0) await db().insert(dataKeys).values(savedDataKeys);
    }
  });

  it("answers POST /api/v1/tenants with 503 problem+json SEALED and creates nothing when MASTER_KEY is missing or wrong", async () => {
    await createTenant("existing"); // populated database with its keyring row
    const before = await rowCounts();
    const keyringBefore = await keyringRows();

    for (const bad of BAD_MASTER_KEYS) {
      forgetKeys();
      const response = await createTenantWith(envWith({ MASTER_KEY: bad.value }), `sealed ${bad.label}`);
      const text = await response.text();
      expect(response.status, bad.label).toBe(503);
      expect(response.headers.get("content-type"), bad.label).toContain("application/problem+json");
      expect(response.headers.get("cache-control"), bad.label).toBe("no-store");
      const body = JSON.parse(text) as Record<string, unknown>;
      expect(body, bad.label).toMatchObject({ code: "SEALED", status: 503 });
      expect(body, bad.label).not.toHaveProperty("admin_key");
      expect(text, bad.label).not.toContain("kw_live_");
      if (bad.value) expect(text, bad.label).not.toContain(bad.value.trim());
      expect(text, bad.label).not.toContain(env.MASTER_KEY);
      expect(await rowCounts(), bad.label).toEqual(before);
    }
    expect(await keyringRows()).toEqual(keyringBefore);

    // Control: the same call with the right key creates exactly one tenant, DEK and admin key, so the
    // counts above would have moved had anything been written.
    forgetKeys();
    const ok = await createTenantWith(env as unknown as WorkerEnv, "unsealed again");
    expect(ok.status).toBe(201);
    const after = await rowCounts();
    expect(after.tenants).toBe(before.tenants + 1);
    expect(after.data_keys).toBe(before.data_keys + 1);
    expect(after.api_keys).toBe(before.api_keys + 1);
    expect(after.keyring).toBe(before.keyring);
  });

  it("answers 503 SEALED even when the right key was cached by an earlier request in the same isolate", async () => {
    forgetKeys();
    const warm = await createTenantWith(env as unknown as WorkerEnv, "warm");
    expect(warm.status).toBe(201);
    const before = await rowCounts();
    // No forgetKeys() here on purpose.
    const response = await createTenantWith(envWith({ MASTER_KEY: randomMasterKey() }), "cold");
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ code: "SEALED" });
    expect(await rowCounts()).toEqual(before);
  });
});
