import { eq } from "drizzle-orm";
import { deriveHmacKey, HMAC_SHA_256, type UnwrapAs } from "../crypto/envelope";
import type { Database } from "../db/client";
import { systemKeys } from "../db/schema";
import type { Unsealed } from "./keyring";
import type { WrapBinding } from "./wrap-binding";

/** HMAC-SHA-256 keys are 64 bytes, the hash's block size (the WebCrypto default length). */
export const PURPOSE_KEY: UnwrapAs = { algorithm: HMAC_SHA_256, usages: ["sign", "verify"], bytes: 64 };

export const systemKeyBinding = (purpose: string): WrapBinding => ({ kind: "system", purpose });

const cache = new WeakMap<Unsealed, Map<string, Promise<CryptoKey>>>();

/**
 * The HMAC key of one purpose (session JWTs, audit chain identifiers ...), loaded once per isolate. It is
 * stored wrapped under a KEK and re-wrapped with the data keys, so it outlives the master secret it was first
 * derived from: audit chains keep verifying and sessions stay valid across a KEK rotation.
 */
export function purposeKey(keys: Unsealed, db: Database, purpose: string): Promise<CryptoKey> {
  let forKeys = cache.get(keys);
  if (!forKeys) {
    forKeys = new Map();
    cache.set(keys, forKeys);
  }
  let key = forKeys.get(purpose);
  if (!key) {
    const loading = loadPurposeKey(keys, db, purpose);
    forKeys.set(purpose, loading);
    const entries = forKeys;
    loading.catch(() => entries.delete(purpose));
    key = loading;
  }
  return key;
}

async function loadPurposeKey(keys: Unsealed, db: Database, purpose: string): Promise<CryptoKey> {
  const read = () => db.select().from(systemKeys).where(eq(systemKeys.purpose, purpose)).get();
  let row = await read();
  if (!row) {
    const { kek, wrapped } = await keys.keks.wrap(
      await firstPurposeKey(keys, purpose),
      systemKeyBinding(purpose),
    );
    // Of two isolates creating it at once, the first row wins and both use it.
    await db
      .insert(systemKeys)
      .values({
        purpose,
        kekProvider: kek.provider,
        kekVersion: kek.version,
        wrappedKey: wrapped,
        createdAt: Date.now(),
      })
      .onConflictDoNothing();
    row = await read();
    if (!row) throw new Error(`system key ${purpose} was not stored`);
  }
  return keys.keks.unwrap(
    { kek: { provider: row.kekProvider, version: row.kekVersion }, wrapped: row.wrappedKey },
    systemKeyBinding(purpose),
    PURPOSE_KEY,
  );
}

/**
 * A purpose key's first value. With a verified master secret it is derived from the oldest one, exactly as
 * Keywarden derived purpose keys before they were stored, so audit chains written then still verify. Without
 * one (Vault only) it is random.
 */
async function firstPurposeKey(keys: Unsealed, purpose: string): Promise<CryptoKey> {
  const oldest = keys.keks.master.oldestRoot();
  if (!oldest) return (await crypto.subtle.generateKey(HMAC_SHA_256, true, ["sign", "verify"])) as CryptoKey;
  return deriveHmacKey(oldest, purpose, true);
}
