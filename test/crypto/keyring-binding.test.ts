import { env } from "cloudflare:workers";
import { and, eq, sql } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  decryptText,
  deriveKek,
  encryptText,
  type FieldContext,
  importMasterKey,
  unwrapDek,
} from "../../src/crypto/envelope";
import { dataKeys } from "../../src/db/schema";
import { activeDek, dekFor, newDataKey } from "../../src/vault/data-keys";
import { forgetKeys, type Unsealed, unseal } from "../../src/vault/keyring";
import { createTenant } from "../helpers/api";
import { b64, db, expectIntegrityError, flipBit, hex, indexOfBytes, rowCounts, unb64 } from "./support";

/**
 * threat model cases 3, 6 and 7 against the real D1-backed keyring: tenants are created through the
 * worker (POST /api/v1/tenants), their DEKs are resolved by `dekFor` exactly as the vault does.
 */

beforeEach(() => forgetKeys());
afterEach(() => forgetKeys());

async function keys(): Promise<Unsealed> {
  return unseal(env, db());
}

/** The vault's resolver: the header's version selects exactly one DEK of exactly this tenant. */
function resolverFor(k: Unsealed, tenantId: string, asked: number[] = []) {
  return (version: number) => {
    asked.push(version);
    return dekFor(k, db(), tenantId, version);
  };
}

async function dataKeyRow(tenantId: string, version: number) {
  return db()
    .select()
    .from(dataKeys)
    .where(and(eq(dataKeys.tenantId, tenantId), eq(dataKeys.version, version)))
    .get();
}

async function insertDataKey(k: Unsealed, tenantId: string, version: number, status: "active" | "retiring") {
  await db()
    .insert(dataKeys)
    .values({ ...(await newDataKey(k, tenantId, version, Date.now())), status });
  return dekFor(k, db(), tenantId, version);
}

/** Master KEK v1, derived here from the test's MASTER_KEY as the keyring derives it. */
async function masterKek1(): Promise<CryptoKey> {
  return deriveKek(await importMasterKey(env.MASTER_KEY), 1);
}

const SECRET = "sk_live_51HcanarySecretValue0123456789";

describe("a ciphertext moved to another place fails to decrypt (threat model case 3)", () => {
  it("rejects a ciphertext copied to another record id, another field or another tenant with IntegrityError, never plaintext", async () => {
    const tenantA = await createTenant("binding A");
    const tenantB = await createTenant("binding B");
    const k = await keys();
    const origin: FieldContext = { tenantId: tenantA.id, recordId: "cred_origin", field: "secret" };
    const blob = await encryptText(await dekFor(k, db(), tenantA.id, 1), 1, origin, SECRET);
    expect(await decryptText(resolverFor(k, tenantA.id), origin, blob)).toBe(SECRET);

    const moves: { label: string; tenant: string; context: FieldContext }[] = [
      { label: "another record id", tenant: tenantA.id, context: { ...origin, recordId: "cred_other" } },
      { label: "another field", tenant: tenantA.id, context: { ...origin, field: "client_secret" } },
      {
        label: "record and field swapped",
        tenant: tenantA.id,
        context: { ...origin, recordId: "secret", field: "cred_origin" },
      },
      {
        label: "tenant B's row, with B's own DEK v1",
        tenant: tenantB.id,
        context: { ...origin, tenantId: tenantB.id },
      },
      {
        label: "the original DEK but tenant B in the context",
        tenant: tenantA.id,
        context: { ...origin, tenantId: tenantB.id },
      },
      { label: "tenant A's context but B's DEK", tenant: tenantB.id, context: origin },
    ];
    for (const move of moves) {
      await expectIntegrityError(decryptText(resolverFor(k, move.tenant), move.context, blob)).catch(
        (error) => {
          throw new Error(`${move.label}: ${error}`);
        },
      );
    }
    // B's DEK is real and works for B's own data, so the cross-tenant failures above are not vacuous.
    const bContext: FieldContext = { tenantId: tenantB.id, recordId: "cred_origin", field: "secret" };
    const bBlob = await encryptText(await dekFor(k, db(), tenantB.id, 1), 1, bContext, SECRET);
    expect(await decryptText(resolverFor(k, tenantB.id), bContext, bBlob)).toBe(SECRET);
  });

  it("keeps the AAD parts unambiguous: shifting characters between tenant, record and field boundaries fails", async () => {
    const tenant = await createTenant("aad parts");
    const k = await keys();
    const dek = await dekFor(k, db(), tenant.id, 1);
    const resolve = resolverFor(k, tenant.id);
    const origin: FieldContext = { tenantId: tenant.id, recordId: "a:b", field: "c" };
    const blob = await encryptText(dek, 1, origin, SECRET);
    const lookalikes: FieldContext[] = [
      { tenantId: tenant.id, recordId: "a", field: "b:c" },
      { tenantId: tenant.id, recordId: "a:b:c", field: "" },
      { tenantId: tenant.id, recordId: "a:b", field: "c " },
      { tenantId: tenant.id, recordId: 'a:b","c', field: "" },
      { tenantId: tenant.id, recordId: "a:b", field: "C" },
      { tenantId: `${tenant.id}:a`, recordId: "b", field: "c" },
    ];
    for (const context of lookalikes) await expectIntegrityError(decryptText(resolve, context, blob));
    expect(await decryptText(resolve, origin, blob)).toBe(SECRET);
  });
});

describe("the header's key version selects exactly one DEK, with no fallback (threat model case 6)", () => {
  it("fails closed for a blob under a retired-and-deleted DEK version even though the tenant's v1 still exists", async () => {
    const tenant = await createTenant("retired version");
    const k = await keys();
    const dek2 = await insertDataKey(k, tenant.id, 2, "active");
    await db()
      .update(dataKeys)
      .set({ status: "retiring" })
      .where(and(eq(dataKeys.tenantId, tenant.id), eq(dataKeys.version, 1)));
    const context: FieldContext = { tenantId: tenant.id, recordId: "cred_rot", field: "secret" };
    const v1Blob = await encryptText(await dekFor(k, db(), tenant.id, 1), 1, context, "under v1");
    const v2Blob = await encryptText(dek2, 2, context, "under v2");
    expect(await decryptText(resolverFor(k, tenant.id), context, v2Blob)).toBe("under v2");
    // A retiring (not deleted) version still decrypts: it is "previous", not gone.
    expect(await decryptText(resolverFor(k, tenant.id), context, v1Blob)).toBe("under v1");

    await db()
      .delete(dataKeys)
      .where(and(eq(dataKeys.tenantId, tenant.id), eq(dataKeys.version, 2)));
    forgetKeys(); // a fresh isolate: the DEK cache must not be what keeps v2 alive
    const fresh = await keys();

    const asked: number[] = [];
    await expectIntegrityError(
      decryptText(resolverFor(fresh, tenant.id, asked), context, v2Blob),
      /no such data key/,
    );
    expect(asked).toEqual([2]); // asked for v2 once, never tried v1
    expect(await decryptText(resolverFor(fresh, tenant.id), context, v1Blob)).toBe("under v1");
    await expectIntegrityError(dekFor(fresh, db(), tenant.id, 2));
  });

  it("fails closed for a header naming a DEK version the tenant never had (0, 2, 2^31-1, 2^32-1)", async () => {
    const tenant = await createTenant("nonexistent version");
    const k = await keys();
    const context: FieldContext = { tenantId: tenant.id, recordId: "cred_x", field: "secret" };
    const bytes = unb64(await encryptText(await dekFor(k, db(), tenant.id, 1), 1, context, SECRET));
    for (const version of [0, 2, 0x7fffffff, 0xffffffff]) {
      const copy = bytes.slice();
      new DataView(copy.buffer).setUint32(1, version);
      const asked: number[] = [];
      await expectIntegrityError(
        decryptText(resolverFor(k, tenant.id, asked), context, b64(copy)),
        /no such data key/,
      );
      expect(asked).toEqual([version]);
    }
    const before = await rowCounts();
    await expectIntegrityError(dekFor(k, db(), tenant.id, 3));
    expect(await rowCounts()).toEqual(before);
  });

  it("fails closed for tenant A when the header names a version that exists only for tenant B", async () => {
    const tenantA = await createTenant("version owner A");
    const tenantB = await createTenant("version owner B");
    const k = await keys();
    const bDek3 = await insertDataKey(k, tenantB.id, 3, "active");
    const aContext: FieldContext = { tenantId: tenantA.id, recordId: "cred_a", field: "secret" };
    const bContext: FieldContext = { tenantId: tenantB.id, recordId: "cred_a", field: "secret" };

    // B's v3 is real: B's own blob under it decrypts.
    const bBlob = await encryptText(bDek3, 3, bContext, SECRET);
    expect(await decryptText(resolverFor(k, tenantB.id), bContext, bBlob)).toBe(SECRET);

    // A blob sealed under B's v3 but bound to A's context, and B's own v3 blob planted in A's row.
    const forged = await encryptText(bDek3, 3, aContext, SECRET);
    for (const blob of [forged, bBlob]) {
      const asked: number[] = [];
      await expectIntegrityError(
        decryptText(resolverFor(k, tenantA.id, asked), aContext, blob),
        /no such data key/,
      );
      expect(asked).toEqual([3]);
    }
    await expectIntegrityError(dekFor(k, db(), tenantA.id, 3));
    expect(await dataKeyRow(tenantA.id, 3)).toBeUndefined();
  });
});

describe("a corrupted wrapped DEK fails closed for its tenant only (threat model case 7)", () => {
  it("makes tenant A's decrypts fail with a clear IntegrityError, leaves B working, and creates no new DEK", async () => {
    const tenantA = await createTenant("corrupt A");
    const tenantB = await createTenant("corrupt B");
    const k = await keys();
    const aContext: FieldContext = { tenantId: tenantA.id, recordId: "cred_a", field: "secret" };
    const bContext: FieldContext = { tenantId: tenantB.id, recordId: "cred_b", field: "secret" };
    const aBlob = await encryptText(await dekFor(k, db(), tenantA.id, 1), 1, aContext, "A's secret");
    const bBlob = await encryptText(await dekFor(k, db(), tenantB.id, 1), 1, bContext, "B's secret");
    const original = (await dataKeyRow(tenantA.id, 1))?.wrappedKey as string;
    const originalBytes = unb64(original);
    const bRowBefore = await dataKeyRow(tenantB.id, 1);

    const corruptions = [
      { label: "one bit flipped in the IV", value: flipBit(originalBytes, 3) },
      { label: "one bit flipped in the wrapped key", value: flipBit(originalBytes, 12 * 8 + 100) },
      { label: "one bit flipped in the tag", value: flipBit(originalBytes, originalBytes.length * 8 - 1) },
      { label: "truncated by one byte", value: b64(originalBytes.subarray(0, -1)) },
      { label: "one byte appended", value: b64(new Uint8Array([...originalBytes, 0])) },
      { label: "not base64", value: "%%%not-base64%%%" },
      { label: "empty", value: "" },
    ];
    const countsBefore = await rowCounts();
    for (const corruption of corruptions) {
      await db()
        .update(dataKeys)
        .set({ wrappedKey: corruption.value })
        .where(and(eq(dataKeys.tenantId, tenantA.id), eq(dataKeys.version, 1)));
      forgetKeys();
      const fresh = await keys();
      const label = `wrapped DEK ${corruption.label}`;

      const error = await expectIntegrityError(
        decryptText(resolverFor(fresh, tenantA.id), aContext, aBlob),
        /wrapped key/,
      );
      expect(error.message, label).not.toContain(corruption.value || "\u0001");
      await expectIntegrityError(activeDek(fresh, db(), tenantA.id, 1));
      // Asking again does not "heal" it by minting a key either (no poisoned or replaced cache entry).
      await expectIntegrityError(decryptText(resolverFor(fresh, tenantA.id), aContext, aBlob));

      expect(await decryptText(resolverFor(fresh, tenantB.id), bContext, bBlob), label).toBe("B's secret");
      expect(await rowCounts(), label).toEqual(countsBefore);
      expect((await dataKeyRow(tenantA.id, 1))?.wrappedKey, label).toBe(corruption.value);
      expect(await dataKeyRow(tenantB.id, 1), label).toEqual(bRowBefore);
    }

    // Restoring the stored row restores A: the failures were not cached and nothing was re-keyed.
    await db()
      .update(dataKeys)
      .set({ wrappedKey: original })
      .where(and(eq(dataKeys.tenantId, tenantA.id), eq(dataKeys.version, 1)));
    expect(await decryptText(resolverFor(await keys(), tenantA.id), aContext, aBlob)).toBe("A's secret");
    expect(await rowCounts()).toEqual(countsBefore);
  });
});

describe("wrapped DEKs in D1", () => {
  it("stores only the wrapped DEK: the raw DEK bytes appear nowhere in the database", async () => {
    const tenant = await createTenant("raw bytes");
    const k = await keys();
    const row = await dataKeyRow(tenant.id, 1);
    expect(row).toBeDefined();
    const wrapped = unb64(row?.wrappedKey as string);
    expect(wrapped.length).toBe(12 + 32 + 16);

    // Recover the raw key the way only a KEK holder can (same AAD layout as src/crypto/envelope.ts),
    // then prove it is the tenant's DEK by decrypting with it.
    const aad = new TextEncoder().encode(JSON.stringify(["kw-dek", 1, tenant.id, 1, 1]));
    const extractable = await crypto.subtle.unwrapKey(
      "raw",
      wrapped.subarray(12),
      await masterKek1(),
      { name: "AES-GCM", iv: wrapped.subarray(0, 12), additionalData: aad },
      { name: "AES-GCM" },
      true,
      ["encrypt", "decrypt"],
    );
    const raw = new Uint8Array((await crypto.subtle.exportKey("raw", extractable)) as ArrayBuffer);
    expect(raw.length).toBe(32);
    const context: FieldContext = { tenantId: tenant.id, recordId: "cred_raw", field: "secret" };
    const blob = await encryptText(await dekFor(k, db(), tenant.id, 1), 1, context, SECRET);
    expect(await decryptText(async () => extractable, context, blob)).toBe(SECRET);

    expect(row?.wrappedKey).not.toBe(b64(raw));
    expect(indexOfBytes(wrapped, raw)).toBe(-1);
    expect(indexOfBytes(wrapped, raw.subarray(0, 8))).toBe(-1);

    // Whole-database dump: no table holds the raw DEK in any common encoding, nor the master key.
    const tables = await env.DB.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%'",
    ).all<{ name: string }>();
    const tableNames = tables.results.map((t) => t.name);
    expect(tableNames).toEqual(expect.arrayContaining(["data_keys", "keyring", "tenants", "api_keys"]));
    let dump = "";
    for (const name of tableNames) {
      const rows = await env.DB.prepare(`SELECT * FROM "${name}"`).all();
      dump += JSON.stringify(rows.results);
    }
    expect(dump).toContain(row?.wrappedKey as string);
    const rawB64 = b64(raw);
    for (const needle of [
      rawB64,
      rawB64.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, ""),
      hex(raw),
      hex(raw).toUpperCase(),
      env.MASTER_KEY,
      hex(unb64(env.MASTER_KEY)),
    ]) {
      expect(dump.includes(needle)).toBe(false);
    }
  });

  it("refuses a wrapped DEK row copied to another tenant: the AAD binds tenant, DEK version and KEK version", async () => {
    const tenantA = await createTenant("wrap owner A");
    const tenantB = await createTenant("wrap thief B");
    const k = await keys();
    const aRow = await dataKeyRow(tenantA.id, 1);
    const bContext: FieldContext = { tenantId: tenantB.id, recordId: "cred_b", field: "secret" };
    const bBlob = await encryptText(await dekFor(k, db(), tenantB.id, 1), 1, bContext, SECRET);

    await db()
      .update(dataKeys)
      .set({ wrappedKey: aRow?.wrappedKey as string })
      .where(and(eq(dataKeys.tenantId, tenantB.id), eq(dataKeys.version, 1)));
    forgetKeys();
    const fresh = await keys();
    await expectIntegrityError(dekFor(fresh, db(), tenantB.id, 1), /wrapped key failed authentication/);
    await expectIntegrityError(decryptText(resolverFor(fresh, tenantB.id), bContext, bBlob));

    // The same bytes as A's v2 row in A's own tenant fail too (version is bound), as does unwrapping
    // them for another KEK version.
    await db()
      .insert(dataKeys)
      .values({ ...(aRow as NonNullable<typeof aRow>), version: 2, status: "retiring" });
    await expectIntegrityError(dekFor(fresh, db(), tenantA.id, 2), /wrapped key failed authentication/);
    await expectIntegrityError(unwrapDek(await masterKek1(), aRow?.wrappedKey as string, tenantA.id, 1, 2));
    // ... while the original row still unwraps for A.
    expect(await dekFor(fresh, db(), tenantA.id, 1)).toBeDefined();
  });

  it("rejects a data_keys row that claims another KEK version instead of trying the current KEK", async () => {
    const tenant = await createTenant("kek version");
    await db().update(dataKeys).set({ kekVersion: 2 }).where(eq(dataKeys.tenantId, tenant.id));
    forgetKeys();
    await expectIntegrityError(dekFor(await keys(), db(), tenant.id, 1), /KEK version/);
  });

  it("hands out non-extractable, encrypt/decrypt-only DEKs from dekFor and activeDek", async () => {
    const tenant = await createTenant("non-extractable");
    const k = await keys();
    const viaDekFor = await dekFor(k, db(), tenant.id, 1);
    forgetKeys();
    const active = await activeDek(await keys(), db(), tenant.id, 0);
    for (const dek of [viaDekFor, active.key]) {
      expect(dek.extractable).toBe(false);
      expect([...dek.usages].sort()).toEqual(["decrypt", "encrypt"]);
      expect(dek.algorithm).toMatchObject({ name: "AES-GCM", length: 256 });
      await expect(crypto.subtle.exportKey("raw", dek)).rejects.toThrow();
      await expect(crypto.subtle.exportKey("jwk", dek)).rejects.toThrow();
    }
  });

  it("counts encryptions against the active DEK in data_keys.encryption_count", async () => {
    const tenant = await createTenant("counter");
    const k = await keys();
    const first = await activeDek(k, db(), tenant.id, 5);
    expect(first.version).toBe(1);
    await first.countEncryptions;
    await (await activeDek(k, db(), tenant.id, 2)).countEncryptions;
    expect((await dataKeyRow(tenant.id, 1))?.encryptionCount).toBe(7);
    const count = await db().get<{ n: number }>(
      sql`SELECT count(*) AS n FROM data_keys WHERE tenant_id = ${tenant.id}`,
    );
    expect(Number(count?.n)).toBe(1);
  });
});
