// Test fixture: a plain-JS copy of the envelope format in src/crypto/envelope.ts (and the master-KEK AAD of
// src/vault/wrap-binding.ts), so the keyring stage can seed 10,000 tenants' DEKs and 100,000 sealed fields
// straight into D1. bench/keyring.mjs checks it both ways before anything is measured: Node opens the DEK and
// the field the worker wrote through the API, and the worker reveals a field Node sealed. A drift fails loudly.
import { webcrypto } from "node:crypto";

const { subtle } = webcrypto;
const FORMAT = 1;
const IV_BYTES = 12;
const HEADER_BYTES = 1 + 4 + IV_BYTES;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

const toBase64 = (bytes) => Buffer.from(bytes).toString("base64");
const fromBase64 = (text) => new Uint8Array(Buffer.from(text, "base64"));
const iv = () => webcrypto.getRandomValues(new Uint8Array(IV_BYTES));

/** `dekAad`: ["kw-dek", 1, tenant, DEK version, master KEK version]. */
const dekAad = (tenantId, dekVersion, kekVersion) =>
  encoder.encode(JSON.stringify(["kw-dek", FORMAT, tenantId, dekVersion, kekVersion]));

/** `fieldAad`: ["kw-field", 1, tenant, record id, field, DEK version]. */
const fieldAad = ({ tenantId, recordId, field }, dekVersion) =>
  encoder.encode(JSON.stringify(["kw-field", FORMAT, tenantId, recordId, field, dekVersion]));

/**
 * The master KEK of one version: HKDF-SHA-256 of MASTER_KEY(_<N>) with salt "keywarden/v1" and info `kek:<v>`.
 * The worker derives it for wrapKey/unwrapKey; an AES-GCM wrap of a raw key is the encryption of its bytes, so
 * this copy derives it for encrypt/decrypt and gives the same bytes.
 */
export async function deriveMasterKek(masterKeyBase64, kekVersion) {
  const root = await subtle.importKey("raw", fromBase64(masterKeyBase64), "HKDF", false, ["deriveKey"]);
  return subtle.deriveKey(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: encoder.encode("keywarden/v1"),
      info: encoder.encode(`kek:${kekVersion}`),
    },
    root,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

/** A new DEK: its raw bytes (to wrap) and the AES-GCM key (to seal fields with). */
export async function newDek() {
  const raw = webcrypto.getRandomValues(new Uint8Array(32));
  return { raw, key: await importDek(raw) };
}

export const importDek = (raw) => subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);

/** `wrapUnder` for a DEK under master KEK `kekVersion`: base64(iv || AES-GCM(raw DEK)). */
export async function wrapDek(kek, raw, tenantId, dekVersion, kekVersion) {
  const nonce = iv();
  const sealed = await subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: dekAad(tenantId, dekVersion, kekVersion) },
    kek,
    raw,
  );
  return toBase64(Buffer.concat([nonce, new Uint8Array(sealed)]));
}

/** The raw DEK inside a wrapped one (throws if it does not authenticate). */
export async function unwrapDek(kek, wrapped, tenantId, dekVersion, kekVersion) {
  const bytes = fromBase64(wrapped);
  return new Uint8Array(
    await subtle.decrypt(
      {
        name: "AES-GCM",
        iv: bytes.subarray(0, IV_BYTES),
        additionalData: dekAad(tenantId, dekVersion, kekVersion),
      },
      kek,
      bytes.subarray(IV_BYTES),
    ),
  );
}

/** `encryptText`: base64([format 1][DEK version, u32 BE][iv][ciphertext + tag]). */
export async function sealField(dek, dekVersion, context, text) {
  const header = new Uint8Array(HEADER_BYTES);
  header[0] = FORMAT;
  new DataView(header.buffer).setUint32(1, dekVersion);
  const nonce = iv();
  header.set(nonce, 5);
  const sealed = await subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: fieldAad(context, dekVersion) },
    dek,
    encoder.encode(text),
  );
  return toBase64(Buffer.concat([header, new Uint8Array(sealed)]));
}

/** The DEK version a field blob names in its header. */
export const blobDekVersion = (blob) => Buffer.from(blob, "base64").readUInt32BE(1);

/** `decryptText` with the DEK the blob's header names (`dekFor(version)`). */
export async function openField(dekFor, context, blob) {
  const bytes = fromBase64(blob);
  if (bytes[0] !== FORMAT) throw new Error("unknown ciphertext format");
  const version = new DataView(bytes.buffer, bytes.byteOffset).getUint32(1);
  const plain = await subtle.decrypt(
    {
      name: "AES-GCM",
      iv: bytes.subarray(5, HEADER_BYTES),
      additionalData: fieldAad(context, version),
    },
    await dekFor(version),
    bytes.subarray(HEADER_BYTES),
  );
  return decoder.decode(plain);
}

/** `maskValue` (src/catalog/mask.ts) for the ASCII values the stage seeds: a sixth of each end, at most 4. */
export function maskValue(value) {
  if (value.length < 12) return "••••";
  const shown = Math.min(4, Math.floor(value.length / 6));
  return `${value.slice(0, shown)}…${value.slice(value.length - shown)}`;
}
