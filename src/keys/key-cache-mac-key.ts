/**
 * The key that MACs what verify keeps in the location's Workers Cache API (the key entries of
 * src/keys/key-cache-tier.ts and the feed-view snapshots of src/keys/feed-view-snapshot.ts), and the MAC itself.
 * An object whose MAC does not verify is only a miss, so this key may change (it costs misses, never a wrong
 * answer); what it must be is a secret no other Worker on the zone holds, and at hand as soon as an isolate starts.
 */
import { fromBase64, toBase64, utf8 } from "../crypto/encoding";
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

/** Whether keyCacheMacKey derives the key (no I/O: microseconds of CPU) rather than unsealing a stored one. */
export function keyCacheMacKeyIsDerived(env: KeyringEnv): boolean {
  return oldestMasterSecret(env) !== undefined;
}

function oldestMasterSecret(env: KeyringEnv): string | undefined {
  let oldest: [version: number, secret: string] | undefined;
  for (const entry of masterSecretsFrom(env))
    if (oldest === undefined || entry[0] < oldest[0]) oldest = entry;
  return oldest?.[1];
}

/**
 * Every object this deployment puts in the location's cache lives under this host, which nothing serves: the
 * URL is only a cache key. The Cache API is shared by every Worker on the zone, so whatever it returns may have
 * been written by one of them: each object carries an HMAC-SHA-256 under the entry key in this header, and is
 * used only if it verifies.
 */
export const KEY_CACHE_ORIGIN = "https://key-cache.keywarden.invalid";
export const KEY_CACHE_MAC_HEADER = "x-keywarden-mac";

/**
 * What a key entry's MAC covers: the format, the key hash the entry is stored under, and the body as sent.
 * Binding the hash means an authentic entry copied under another key's URL is refused too (the cache-side twin
 * of AAD binding, threat model case 3).
 */
export function keyCacheMacInput(hash: string, body: string): Uint8Array<ArrayBuffer> {
  return utf8(`v1\n${hash}\n${body}`);
}

/**
 * What a feed-view snapshot's MAC covers (src/keys/feed-view-snapshot.ts). Domain separation: an entry's input
 * starts with "v", a snapshot's with "f", so no entry MAC is ever a snapshot MAC, nor the reverse, whatever the
 * bodies (an authentic object moved under the other kind's URL is refused).
 */
export function feedViewMacInput(body: string): Uint8Array<ArrayBuffer> {
  return utf8(`feed-view v1\n${body}`);
}

/** Signs `text` (the MAC over `input`) and stores it under `url`, with `headers`. */
export async function putMaced(
  cache: Cache,
  url: string,
  key: CryptoKey,
  text: string,
  input: Uint8Array<ArrayBuffer>,
  headers: Record<string, string>,
): Promise<void> {
  const mac = await crypto.subtle.sign("HMAC", key, input);
  const signed = { ...headers, [KEY_CACHE_MAC_HEADER]: toBase64(new Uint8Array(mac)) };
  await cache.put(url, new Response(text, { headers: signed }));
}

/**
 * The body under `url` parsed as JSON if its MAC (over `input(body)`) verifies; null for a miss, a missing or
 * wrong MAC, a body that is not JSON, and any failure of the cache. crypto.subtle.verify compares in constant
 * time (threat model case 24); a malformed MAC is a mismatch. Any Worker on the zone can plant an object here,
 * so nothing is read unless it carries a MAC header and declares a length of at most `maxBytes`: a planted
 * body of hundreds of megabytes would otherwise exhaust the isolate's memory before the MAC could refuse it.
 */
export async function matchMaced(
  cache: Cache,
  url: string,
  key: CryptoKey,
  input: (body: string) => Uint8Array<ArrayBuffer>,
  maxBytes: number,
): Promise<unknown> {
  try {
    const response = await cache.match(url);
    if (!response) return null;
    const mac = response.headers.get(KEY_CACHE_MAC_HEADER);
    const length = Number(response.headers.get("content-length") ?? Number.NaN);
    if (mac === null || !Number.isSafeInteger(length) || length < 0 || length > maxBytes) {
      await response.body?.cancel();
      return null;
    }
    const text = await response.text();
    if (text.length > maxBytes) return null;
    const signature = fromBase64(mac);
    if (!(await crypto.subtle.verify("HMAC", key, signature, input(text)))) return null;
    return JSON.parse(text);
  } catch {
    return null;
  }
}
