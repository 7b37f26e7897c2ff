/**
 * The key that MACs verify's Workers Cache API entries (src/keys/key-cache-tier.ts). An entry whose MAC does
 * not verify is only a miss, so this key may change (it costs misses, never a wrong answer); what it must be
 * is a secret no other Worker on the zone holds, and at hand as soon as an isolate starts.
 */
import { deriveKeyCacheMacKey, importMasterKey } from "../crypto/envelope";
import { database } from "../db/client";
import { type KeyringEnv, masterSecretsFrom } from "../vault/kek-config";
import { unseal } from "../vault/keyring";
import { purposeKey } from "../vault/system-keys";

/** The system key that MACs the entries of a deployment with no master secret (Vault only). */
export const KEY_CACHE_PURPOSE = "key-cache";

/**
 * With a master secret present, the key is derived from the oldest one (HKDF, no D1 read): every isolate of the
 * deployment holds that version from the moment a newer one is added until it is retired at the end of a KEK
 * rotation, so old and new isolates agree throughout the rotation and only the retirement changes the key.
 * Without one (Vault only), it is the stored `key-cache` system key, unsealed through D1 and Vault. A malformed
 * secret rejects, as a sealed keyring does: the tier then fails closed to D1.
 */
export async function keyCacheMacKey(env: KeyringEnv, d1: D1Database): Promise<CryptoKey> {
  const secret = oldestMasterSecret(env);
  if (secret !== undefined) return deriveKeyCacheMacKey(await importMasterKey(secret));
  const db = database(d1);
  return purposeKey(await unseal(env, db), db, KEY_CACHE_PURPOSE);
}

function oldestMasterSecret(env: KeyringEnv): string | undefined {
  let oldest: [version: number, secret: string] | undefined;
  for (const entry of masterSecretsFrom(env))
    if (oldest === undefined || entry[0] < oldest[0]) oldest = entry;
  return oldest?.[1];
}
