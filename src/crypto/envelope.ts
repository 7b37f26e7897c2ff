import { fromBase64, toBase64, toHex, utf8 } from "./encoding";
import { randomBytes } from "./random";

/**
 * Envelope encryption (NIST SP 800-57 Pt 1 §6.2.1.3 key wrapping): MASTER_KEY --HKDF--> KEK(v)
 * wraps each tenant's DEK(v); the DEK encrypts fields with AES-256-GCM. Pure WebCrypto, no I/O.
 */

export const BLOB_FORMAT_VERSION = 1;
const IV_BYTES = 12; // 96-bit IVs: the only length GCM handles without GHASH-ing the IV (SP 800-38D §8.2.2)
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + 4 + IV_BYTES;

export const AES_256_GCM = { name: "AES-GCM", length: 256 } as const;
export const HMAC_SHA_256 = { name: "HMAC", hash: "SHA-256" } as const;

/** The one error decryption raises: tampered, truncated, extended, moved or wrong-key ciphertext. */
export class IntegrityError extends Error {
  constructor(message = "ciphertext failed authentication") {
    super(message);
    this.name = "IntegrityError";
  }
}

/** Where a ciphertext lives. Bound into the AAD so a blob copied anywhere else fails to decrypt. */
export interface FieldContext {
  tenantId: string;
  recordId: string;
  field: string;
}

export async function importMasterKey(masterKeyBase64: string): Promise<CryptoKey> {
  const raw = fromBase64(masterKeyBase64);
  if (raw.byteLength !== 32) throw new TypeError("MASTER_KEY must be 32 bytes");
  return crypto.subtle.importKey("raw", raw, "HKDF", false, ["deriveKey", "deriveBits"]);
}

function hkdf(info: string) {
  // Fixed salt: the master key is already uniformly random (RFC 5869 §3.1 allows a constant salt).
  return { name: "HKDF", hash: "SHA-256", salt: utf8("keywarden/v1"), info: utf8(info) };
}

/** Non-extractable, wrap-only KEK for one version: a leaked process dump still never exports it. */
export function deriveKek(master: CryptoKey, kekVersion: number): Promise<CryptoKey> {
  return crypto.subtle.deriveKey(hkdf(`kek:${kekVersion}`), master, { name: "AES-GCM", length: 256 }, false, [
    "wrapKey",
    "unwrapKey",
  ]);
}

/**
 * HMAC key for a named purpose (session JWTs, audit identifiers ...). Extractable only when it is about to be
 * wrapped for storage (src/vault/system-keys.ts).
 */
export function deriveHmacKey(master: CryptoKey, purpose: string, extractable = false): Promise<CryptoKey> {
  return crypto.subtle.deriveKey(hkdf(`hmac:${purpose}`), master, HMAC_SHA_256, extractable, [
    "sign",
    "verify",
  ]);
}

/**
 * The HMAC key of verify's Workers Cache API entries (src/keys/key-cache-mac-key.ts), straight from a master
 * secret so a fresh isolate has it without a D1 read. Its own HKDF label (RFC 5869 §3.2), outside the `hmac:`
 * namespace of the stored purpose keys' first values, so it equals no other key Keywarden derives.
 */
export function deriveKeyCacheMacKey(master: CryptoKey): Promise<CryptoKey> {
  return crypto.subtle.deriveKey(hkdf("key-cache-mac:v1"), master, HMAC_SHA_256, false, ["sign", "verify"]);
}

/**
 * Key-check value: proves the deployed MASTER_KEY is the one the data was written under without
 * revealing anything about it. A mismatch seals the service instead of minting fresh keys.
 */
export async function keyCheckValue(master: CryptoKey, kekVersion: number): Promise<string> {
  const bits = await crypto.subtle.deriveBits(hkdf(`kcv:${kekVersion}`), master, 256);
  return toHex(bits);
}

/** AAD of a wrapped DEK: the tenant and DEK version it belongs to, and the master KEK version wrapping it. */
export function dekAad(tenantId: string, dekVersion: number, kekVersion: number): Uint8Array<ArrayBuffer> {
  return utf8(JSON.stringify(["kw-dek", BLOB_FORMAT_VERSION, tenantId, dekVersion, kekVersion]));
}

/** A fresh, extractable AES-256 DEK: extractable only until it is wrapped and imported again. */
export async function generateDek(): Promise<CryptoKey> {
  return (await crypto.subtle.generateKey(AES_256_GCM, true, ["encrypt", "decrypt"])) as CryptoKey;
}

/** Wraps an extractable key under a KEK, bound to `aad`: [iv:12][wrapped key + tag], base64. */
export async function wrapUnder(
  kek: CryptoKey,
  key: CryptoKey,
  aad: Uint8Array<ArrayBuffer>,
): Promise<string> {
  const iv = randomBytes(IV_BYTES);
  const wrapped = await crypto.subtle.wrapKey("raw", key, kek, { name: "AES-GCM", iv, additionalData: aad });
  return toBase64(concat(iv, new Uint8Array(wrapped)));
}

export interface UnwrapAs {
  algorithm: typeof AES_256_GCM | typeof HMAC_SHA_256;
  usages: string[];
  /** Key bytes; a wrapped key of any other length is rejected before WebCrypto sees it. */
  bytes: number;
  /** Only a re-wrap asks for an extractable key, to wrap it again under another KEK. */
  extractable?: boolean;
}

export async function unwrapUnder(
  kek: CryptoKey,
  wrapped: string,
  aad: Uint8Array<ArrayBuffer>,
  as: UnwrapAs,
): Promise<CryptoKey> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = fromBase64(wrapped);
  } catch {
    throw new IntegrityError("wrapped key is not valid base64");
  }
  if (bytes.byteLength !== IV_BYTES + as.bytes + TAG_BYTES)
    throw new IntegrityError("wrapped key has the wrong length");
  try {
    return await crypto.subtle.unwrapKey(
      "raw",
      bytes.subarray(IV_BYTES),
      kek,
      { name: "AES-GCM", iv: bytes.subarray(0, IV_BYTES), additionalData: aad },
      as.algorithm,
      as.extractable ?? false,
      as.usages,
    );
  } catch {
    throw new IntegrityError("wrapped key failed authentication");
  }
}

/** How a DEK is unwrapped for use: non-extractable, encrypt and decrypt only. */
export const DEK_USE: UnwrapAs = { algorithm: AES_256_GCM, usages: ["encrypt", "decrypt"], bytes: 32 };

export async function createWrappedDek(
  kek: CryptoKey,
  tenantId: string,
  dekVersion: number,
  kekVersion: number,
): Promise<{ wrapped: string; dek: CryptoKey }> {
  const wrapped = await wrapUnder(kek, await generateDek(), dekAad(tenantId, dekVersion, kekVersion));
  // Use the unwrapped, non-extractable copy from here on, so the extractable one is dropped at once.
  return { wrapped, dek: await unwrapDek(kek, wrapped, tenantId, dekVersion, kekVersion) };
}

export function unwrapDek(
  kek: CryptoKey,
  wrapped: string,
  tenantId: string,
  dekVersion: number,
  kekVersion: number,
): Promise<CryptoKey> {
  return unwrapUnder(kek, wrapped, dekAad(tenantId, dekVersion, kekVersion), DEK_USE);
}

function fieldAad(context: FieldContext, keyVersion: number): Uint8Array<ArrayBuffer> {
  // JSON array encoding keeps the parts unambiguous: no separator can be smuggled inside a part.
  return utf8(
    JSON.stringify([
      "kw-field",
      BLOB_FORMAT_VERSION,
      context.tenantId,
      context.recordId,
      context.field,
      keyVersion,
    ]),
  );
}

/** Blob: [format:1][key version:4 BE][iv:12][ciphertext+tag], base64. */
export async function encryptBytes(
  dek: CryptoKey,
  keyVersion: number,
  context: FieldContext,
  plaintext: Uint8Array,
): Promise<string> {
  // The header holds the version in 4 bytes; anything else would write a blob that can never decrypt.
  if (!Number.isInteger(keyVersion) || keyVersion < 0 || keyVersion > 0xffffffff) {
    throw new RangeError("key version must be an integer in [0, 2^32 - 1]");
  }
  const header = new Uint8Array(HEADER_BYTES);
  header[0] = BLOB_FORMAT_VERSION;
  new DataView(header.buffer).setUint32(1, keyVersion);
  const iv = randomBytes(IV_BYTES);
  header.set(iv, 5);
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: fieldAad(context, keyVersion) },
    dek,
    plaintext as Uint8Array<ArrayBuffer>,
  );
  return toBase64(concat(header, new Uint8Array(sealed)));
}

export function encryptText(dek: CryptoKey, keyVersion: number, context: FieldContext, text: string) {
  return encryptBytes(dek, keyVersion, context, utf8(text));
}

export interface ParsedBlob {
  keyVersion: number;
  iv: Uint8Array<ArrayBuffer>;
  sealed: Uint8Array<ArrayBuffer>;
}

/** Strict parser: reads the header only. Length extension and truncation are caught by the GCM tag. */
export function parseBlob(blob: string): ParsedBlob {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = fromBase64(blob);
  } catch {
    throw new IntegrityError("ciphertext is not valid base64");
  }
  if (bytes.byteLength < HEADER_BYTES + TAG_BYTES) throw new IntegrityError("ciphertext is truncated");
  if (bytes[0] !== BLOB_FORMAT_VERSION) throw new IntegrityError("unknown ciphertext format");
  return {
    keyVersion: new DataView(bytes.buffer).getUint32(1),
    iv: bytes.subarray(5, HEADER_BYTES),
    sealed: bytes.subarray(HEADER_BYTES),
  };
}

/**
 * The header's version picks exactly one DEK through `dekFor`; there is no "try every key"
 * fallback, which would turn a version mix-up into a silent downgrade (Vault's keyring rule).
 */
export async function decryptBytes(
  dekFor: (keyVersion: number) => Promise<CryptoKey>,
  context: FieldContext,
  blob: string,
): Promise<Uint8Array> {
  const parsed = parseBlob(blob);
  const dek = await dekFor(parsed.keyVersion);
  try {
    return new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: parsed.iv, additionalData: fieldAad(context, parsed.keyVersion) },
        dek,
        parsed.sealed,
      ),
    );
  } catch {
    throw new IntegrityError();
  }
}

export async function decryptText(
  dekFor: (keyVersion: number) => Promise<CryptoKey>,
  context: FieldContext,
  blob: string,
): Promise<string> {
  return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
    await decryptBytes(dekFor, context, blob),
  );
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}
