import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import {
  createWrappedDek,
  decryptText,
  deriveHmacKey,
  deriveKek,
  encryptText,
  importMasterKey,
  keyCheckValue,
  unwrapDek,
} from "../../src/crypto/envelope";
import {
  b64,
  casesNotRejectedWithIntegrityError,
  expectIntegrityError,
  flipBit,
  hex,
  randomMasterKey,
  unb64,
} from "./support";

/** Key hierarchy properties: non-extractable keys, key-check values, and the wrapped DEK's AAD binding. */

let master: CryptoKey;
let kek1: CryptoKey;

beforeAll(async () => {
  master = await importMasterKey(env.MASTER_KEY);
  kek1 = await deriveKek(master, 1);
});

async function expectNotExportable(key: CryptoKey) {
  expect(key.extractable).toBe(false);
  for (const format of ["raw", "jwk", "pkcs8", "spki"] as const) {
    await expect(crypto.subtle.exportKey(format, key), format).rejects.toThrow();
  }
}

describe("key material never leaves WebCrypto", () => {
  it("imports the master key as a non-extractable HKDF key that exportKey refuses", async () => {
    expect(master.algorithm.name).toBe("HKDF");
    expect([...master.usages].sort()).toEqual(["deriveBits", "deriveKey"]);
    await expectNotExportable(master);
  });

  it("derives non-extractable, wrap/unwrap-only KEKs that exportKey refuses", async () => {
    for (const version of [1, 2]) {
      const kek = await deriveKek(master, version);
      expect(kek.algorithm).toMatchObject({ name: "AES-GCM", length: 256 });
      expect([...kek.usages].sort()).toEqual(["unwrapKey", "wrapKey"]);
      await expectNotExportable(kek);
      // Wrap-only: the KEK cannot be used to encrypt data directly.
      await expect(
        crypto.subtle.encrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, kek, new Uint8Array(1)),
      ).rejects.toThrow();
    }
  });

  it("returns non-extractable, encrypt/decrypt-only DEKs from createWrappedDek and unwrapDek", async () => {
    const { wrapped, dek } = await createWrappedDek(kek1, "ten_extract", 1, 1);
    const again = await unwrapDek(kek1, wrapped, "ten_extract", 1, 1);
    for (const key of [dek, again]) {
      expect(key.algorithm).toMatchObject({ name: "AES-GCM", length: 256 });
      expect([...key.usages].sort()).toEqual(["decrypt", "encrypt"]);
      await expectNotExportable(key);
      // A DEK cannot wrap (and so export) another key either.
      await expect(
        crypto.subtle.wrapKey("raw", key, kek1, { name: "AES-GCM", iv: new Uint8Array(12) }),
      ).rejects.toThrow();
    }
    // Both handles are the same key.
    const context = { tenantId: "ten_extract", recordId: "r", field: "f" };
    expect(
      await decryptText(async () => again, context, await encryptText(dek, 1, context, "same key")),
    ).toBe("same key");
  });

  it("derives non-extractable, sign/verify-only HMAC keys, distinct per purpose", async () => {
    const jwt = await deriveHmacKey(master, "session-jwt");
    const audit = await deriveHmacKey(master, "audit-id");
    for (const key of [jwt, audit]) {
      expect([...key.usages].sort()).toEqual(["sign", "verify"]);
      await expectNotExportable(key);
    }
    const message = new TextEncoder().encode("same message");
    const [a, b] = await Promise.all([
      crypto.subtle.sign("HMAC", jwt, message),
      crypto.subtle.sign("HMAC", audit, message),
    ]);
    expect(hex(new Uint8Array(a))).not.toBe(hex(new Uint8Array(b)));
  });

  it("rejects a master key that is not exactly 32 bytes of canonical base64", async () => {
    const right = unb64(env.MASTER_KEY);
    for (const bad of [
      "",
      b64(right.subarray(0, 31)),
      b64(new Uint8Array([...right, 0])),
      hex(right),
      `${env.MASTER_KEY}\n`,
      env.MASTER_KEY.replace(/=$/, ""),
    ]) {
      await expect(importMasterKey(bad), JSON.stringify(bad)).rejects.toThrow();
    }
  });
});

describe("key-check values", () => {
  it("gives different key-check values for different master keys and for different KEK versions", async () => {
    const other = await importMasterKey(randomMasterKey());
    const values = [
      await keyCheckValue(master, 1),
      await keyCheckValue(master, 2),
      await keyCheckValue(other, 1),
      await keyCheckValue(other, 2),
    ];
    expect(new Set(values).size).toBe(4);
    for (const value of values) expect(value).toMatch(/^[0-9a-f]{64}$/);
    // Deterministic for the same key and version (otherwise it could never unseal).
    expect(await keyCheckValue(await importMasterKey(env.MASTER_KEY), 1)).toBe(values[0]);
    // And it is not the master key itself in any encoding.
    expect(values[0]).not.toContain(hex(unb64(env.MASTER_KEY)));
  });

  it("derives a different KEK per version: a DEK wrapped under KEK v1 does not unwrap under KEK v2 or another master", async () => {
    const { wrapped } = await createWrappedDek(kek1, "ten_kekv", 1, 1);
    const kek2 = await deriveKek(master, 2);
    const foreign = await deriveKek(await importMasterKey(randomMasterKey()), 1);
    await expectIntegrityError(unwrapDek(kek2, wrapped, "ten_kekv", 1, 1));
    await expectIntegrityError(unwrapDek(foreign, wrapped, "ten_kekv", 1, 1));
    expect((await unwrapDek(kek1, wrapped, "ten_kekv", 1, 1)).extractable).toBe(false);
  });
});

describe("wrapped DEK AAD binding", () => {
  it("unwraps a DEK only for the tenant, DEK version and KEK version it was wrapped for", async () => {
    const { wrapped } = await createWrappedDek(kek1, "ten_owner", 3, 1);
    expect(await unwrapDek(kek1, wrapped, "ten_owner", 3, 1)).toBeDefined();
    await expectIntegrityError(unwrapDek(kek1, wrapped, "ten_other", 3, 1), /failed authentication/);
    await expectIntegrityError(unwrapDek(kek1, wrapped, "ten_owner", 2, 1), /failed authentication/);
    await expectIntegrityError(unwrapDek(kek1, wrapped, "ten_owner", 3, 2), /failed authentication/);
    await expectIntegrityError(unwrapDek(kek1, wrapped, "ten_owne", 3, 1), /failed authentication/);
  });

  it("rejects every single-bit flip, truncation and extension of a wrapped DEK with IntegrityError", async () => {
    const { wrapped } = await createWrappedDek(kek1, "ten_flip", 1, 1);
    const bytes = unb64(wrapped);
    expect(bytes.length).toBe(12 + 32 + 16);
    expect(wrapped).not.toContain("="); // 60 bytes: no padding, so every variant below really differs
    const variants: { label: string; text: string }[] = [];
    for (let bit = 0; bit < bytes.length * 8; bit++)
      variants.push({ label: `bit ${bit}`, text: flipBit(bytes, bit) });
    for (let length = 0; length < bytes.length; length++)
      variants.push({ label: `first ${length} bytes`, text: b64(bytes.subarray(0, length)) });
    variants.push(
      { label: "zero byte appended", text: b64(new Uint8Array([...bytes, 0])) },
      { label: "tag repeated", text: b64(new Uint8Array([...bytes, ...bytes.subarray(-16)])) },
      { label: "trailing space", text: `${wrapped} ` },
      { label: "newline inside", text: `${wrapped.slice(0, 40)}\n${wrapped.slice(40)}` },
      { label: "empty", text: "" },
    );
    expect(
      await casesNotRejectedWithIntegrityError(
        variants,
        (v) => unwrapDek(kek1, v.text, "ten_flip", 1, 1),
        (v) => v.label,
      ),
    ).toEqual([]);
  });
});
