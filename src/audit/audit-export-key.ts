import { calculateJwkThumbprint } from "jose";
import { utf8 } from "../crypto/encoding";
import { type Database, database } from "../db/client";
import type { KeyringEnv } from "../vault/kek-config";
import { type Unsealed, unseal } from "../vault/keyring";
import { purposeKey } from "../vault/system-keys";
import { AUDIT_SEAL_ALG } from "./audit-export-format";

/** The system key the seal key is derived from (src/vault/system-keys.ts), of this purpose only. */
export const AUDIT_SEAL_PURPOSE = "audit-export-seal";
const SEED_LABEL = "keywarden audit export seal Ed25519 v1";

/** PKCS #8 PrivateKeyInfo of an Ed25519 key without the 32-byte seed (RFC 8410 §7): version 0, id-Ed25519. */
const ED25519_PKCS8_PREFIX = new Uint8Array([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);

export interface SealKey {
  /** Non-extractable, sign only. */
  privateKey: CryptoKey;
  /** The public half as served: `kid` is its RFC 7638 thumbprint. */
  publicJwk: { kty: "OKP"; crv: "Ed25519"; x: string; kid: string; alg: typeof AUDIT_SEAL_ALG; use: "sig" };
}

const cache = new WeakMap<Unsealed, Promise<SealKey>>();

/**
 * The deployment's audit export signing key (Ed25519). Its 32-byte seed is HMAC-SHA-256 of a fixed label
 * under a system purpose key, a one-block PRF-based KDF (NIST SP 800-108r1 §4.1; RFC 8032 §5.1.5 takes any
 * 32 uniformly random bytes as the private key). The purpose key is stored wrapped under a KEK like every
 * system key and re-wrapped with them, so the seal key needs no table of its own, survives KEK rotation, and
 * its public key (and so every verifier's pinned copy) stays the same.
 */
export function auditSealKey(env: KeyringEnv & Pick<Env, "DB">, db: Database = database(env.DB)) {
  return unseal(env, db).then((keys) => {
    let key = cache.get(keys);
    if (!key) {
      key = deriveSealKey(keys, db);
      cache.set(keys, key);
      const loading = key;
      loading.catch(() => {
        if (cache.get(keys) === loading) cache.delete(keys);
      });
    }
    return key;
  });
}

async function deriveSealKey(keys: Unsealed, db: Database): Promise<SealKey> {
  const root = await purposeKey(keys, db, AUDIT_SEAL_PURPOSE);
  const seed = new Uint8Array(await crypto.subtle.sign("HMAC", root, utf8(SEED_LABEL)));
  const pkcs8 = new Uint8Array(ED25519_PKCS8_PREFIX.byteLength + seed.byteLength);
  pkcs8.set(ED25519_PKCS8_PREFIX);
  pkcs8.set(seed, ED25519_PKCS8_PREFIX.byteLength);
  try {
    // Extractable only to read the public half; the signing copy below is not.
    const exportable = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
    const { x } = (await crypto.subtle.exportKey("jwk", exportable)) as JsonWebKey;
    if (!x) throw new Error("the Ed25519 key has no public half");
    const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
    const jwk = { kty: "OKP", crv: "Ed25519", x } as const;
    return {
      privateKey,
      publicJwk: { ...jwk, kid: await calculateJwkThumbprint(jwk), alg: AUDIT_SEAL_ALG, use: "sig" },
    };
  } finally {
    seed.fill(0);
    pkcs8.fill(0);
  }
}

export function signWithSealKey(key: SealKey, data: Uint8Array<ArrayBuffer>): Promise<ArrayBuffer> {
  return crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, data);
}
