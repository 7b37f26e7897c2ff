/**
 * The Workers Cache API tier's entries are authenticated (src/keys/key-cache-tier.ts): the cache is shared by
 * every Worker on the zone, so anything it returns may have been planted by one of them. These tests write to
 * the cache directly, as such a Worker would, and read through "another isolate" (test/keys/key-cache-support.ts)
 * or through POST /keys/verify itself.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { toBase64 } from "../../src/crypto/encoding";
import { HMAC_SHA_256 } from "../../src/crypto/envelope";
import { generateKey, hashKey } from "../../src/crypto/keys";
import { KEY_CACHE_MAC_HEADER, KEY_CACHE_ORIGIN, keyCacheMacInput } from "../../src/keys/key-cache-mac-key";
import { cacheUrl } from "../../src/keys/key-cache-tier";
import { KEY_FEED_POLL_INTERVAL_MS } from "../../src/keys/key-change-feed";
import type { KeyRecord } from "../../src/keys/key-record";
import { call, createKey, createTenant, type TestTenant, verify } from "../helpers/api";
import {
  countingCache,
  countingD1,
  deploymentEntryKey,
  freshCache,
  locationHolding,
  otherIsolate,
  runningIsolate,
} from "./key-cache-support";

interface Entry {
  body: { v: number; seq: number; readAt: number; record: KeyRecord | null };
  mac: string | null;
}

async function entryAt(cache: Cache, hash: string): Promise<Entry | null> {
  const response = await cache.match(cacheUrl(hash));
  if (!response) return null;
  return { mac: response.headers.get(KEY_CACHE_MAC_HEADER), body: JSON.parse(await response.text()) };
}

/** Writes an entry under a key's URL, as any Worker on the zone can; `mac` null leaves the header out. */
async function plant(cache: Cache, hash: string, body: unknown, mac: string | null): Promise<void> {
  const headers: Record<string, string> = {
    "cache-control": "max-age=86400",
    "content-type": "application/json",
  };
  if (mac !== null) headers[KEY_CACHE_MAC_HEADER] = mac;
  await cache.put(
    cacheUrl(hash),
    new Response(typeof body === "string" ? body : JSON.stringify(body), { headers }),
  );
}

async function macUnder(key: CryptoKey, hash: string, text: string): Promise<string> {
  return toBase64(new Uint8Array(await crypto.subtle.sign("HMAC", key, keyCacheMacInput(hash, text))));
}

/** The MAC key of another deployment sharing the zone (or of an attacker): a random HMAC-SHA-256 key. */
async function anotherSecret(): Promise<CryptoKey> {
  return (await crypto.subtle.generateKey(HMAC_SHA_256, false, ["sign", "verify"])) as CryptoKey;
}

/** Whether the entry under `hash` is this deployment's own, authentic for that hash. */
async function isAuthentic(cache: Cache, hash: string): Promise<boolean> {
  const response = await cache.match(cacheUrl(hash));
  const mac = response?.headers.get(KEY_CACHE_MAC_HEADER);
  if (!response || !mac) return false;
  return (await macUnder(await deploymentEntryKey(), hash, await response.text())) === mac;
}

async function revokedKey(tenant: TestTenant, scopes = ["orders:read"]) {
  const key = await createKey(tenant, { scopes });
  const hash = await hashKey(key.key);
  const record = await otherIsolate().tiers.lookup(env.DB, hash, Date.now());
  expect((await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status).toBe(200);
  return { key, hash, record: record as KeyRecord };
}

/** One lookup by a fresh isolate at the location, its background work (the overwrite) done. */
async function readThrough(location: Cache, hash: string, at: number) {
  const other = await runningIsolate({ cache: location });
  const d1 = countingD1();
  const record = await other.tiers.lookup(d1.db, hash, at);
  await other.settle();
  return { record, sessionKeyReads: d1.counts.sessionKeyReads };
}

/** What a forger writes for a revoked key: the key's record made usable, stamped far ahead of the feed. */
function forgedBody(record: KeyRecord, now: number) {
  return {
    v: 1,
    seq: 1e12,
    readAt: now,
    record: { ...record, enabled: true, revoked: false, scopes: ["admin"] },
  };
}

describe("forged Cache API entries", () => {
  it("refuses a forged Cache API entry that makes a revoked key valid, reads D1 and overwrites it (threat model case 11)", async () => {
    const tenant = await createTenant("mac forged revoked");
    const { hash, record } = await revokedKey(tenant);
    const location = await freshCache();
    const now = Date.now();
    const forged = forgedBody(record, now);
    // Without a MAC, and with a MAC of the right length made under no key this deployment holds.
    for (const mac of [null, toBase64(new Uint8Array(32)), "not base64!"]) {
      await plant(location, hash, forged, mac);
      const read = await readThrough(location, hash, now + 10);
      expect(read.record).toMatchObject({ id: record.id, revoked: true, scopes: ["orders:read"] });
      expect(read.sessionKeyReads).toBe(1);
      expect((await entryAt(location, hash))?.body.record?.revoked).toBe(true);
      expect(await isAuthentic(location, hash)).toBe(true);
    }
  });

  it("answers NOT_FOUND through POST /keys/verify for a never-issued key whose forged entry sits in the location's cache (threat model case 9)", async () => {
    const tenant = await createTenant("mac forged unknown");
    const template = await createKey(tenant);
    const record = await otherIsolate().tiers.lookup(env.DB, await hashKey(template.key), Date.now());
    const neverIssued = generateKey("kw", "live", "basic");
    const hash = await hashKey(neverIssued);
    const forged = {
      ...forgedBody(record as KeyRecord, Date.now()),
      record: { ...record, scopes: ["admin"] },
    };
    await plant(caches.default, hash, forged, toBase64(new Uint8Array(32)));

    expect(await verify(tenant, neverIssued)).toEqual({ valid: false, code: "NOT_FOUND" });
    // The route's own cache tier replaced the forgery with its authentic "no such key".
    await expect.poll(() => isAuthentic(caches.default, hash)).toBe(true);
    expect((await entryAt(caches.default, hash))?.body.record).toBeNull();
  });

  it("refuses an authentic entry moved under another key's hash (threat model case 3, for the cache)", async () => {
    const tenant = await createTenant("mac moved entry");
    const valid = await createKey(tenant, { scopes: ["orders:read", "orders:write"] });
    const validHash = await hashKey(valid.key);
    const { hash: revokedHash, record: revoked } = await revokedKey(tenant);
    const now = Date.now();
    const location = await locationHolding([validHash], now);
    const response = await location.match(cacheUrl(validHash));
    expect(response?.headers.get(KEY_CACHE_MAC_HEADER)).toBeTruthy();
    // The valid key's entry, byte for byte with its MAC, copied under the revoked key's URL.
    await location.put(cacheUrl(revokedHash), response as Response);

    const reader = await runningIsolate({ cache: location });
    const d1 = countingD1();
    expect(await reader.tiers.lookup(d1.db, revokedHash, now + 10)).toMatchObject({
      id: revoked.id,
      revoked: true,
    });
    expect(d1.counts.sessionKeyReads).toBe(1);
    // The valid key's own entry is still served where it belongs.
    const own = countingD1();
    expect(await reader.tiers.lookup(own.db, validHash, now + 11)).toMatchObject({ id: valid.id });
    expect(own.counts.sessionKeyReads).toBe(0);
  });

  it("refuses an entry whose MAC was made under another deployment secret, and an authentic entry with a tampered body (threat model cases 3 and 4)", async () => {
    const tenant = await createTenant("mac other secret");
    const { hash, record } = await revokedKey(tenant);
    const location = await freshCache();
    const now = Date.now();

    // Another deployment on the zone (a staging Keywarden) writes its own, correctly MACed entries ...
    const staging = await runningIsolate({ cache: location, entryKey: anotherSecret });
    await staging.tiers.lookup(env.DB, hash, now);
    await staging.settle();
    expect((await entryAt(location, hash))?.mac).toBeTruthy();
    let read = await readThrough(location, hash, now + 10);
    expect(read.record?.revoked).toBe(true);
    expect(read.sessionKeyReads).toBe(1);
    // ... and what it (or a forger holding its secret) MACs is no more than a forgery here.
    const text = JSON.stringify(forgedBody(record, now));
    await plant(location, hash, text, await macUnder(await anotherSecret(), hash, text));
    read = await readThrough(location, hash, now + 20);
    expect(read.record?.revoked).toBe(true);
    expect(read.sessionKeyReads).toBe(1);

    // This deployment's own authentic entry for the revoked key, with the body edited and the MAC kept.
    expect(await isAuthentic(location, hash)).toBe(true);
    const authentic = await location.match(cacheUrl(hash));
    const mac = authentic?.headers.get(KEY_CACHE_MAC_HEADER) ?? null;
    const original = (await authentic?.text()) ?? "";
    expect(original).toContain('"revoked":true');
    for (const tampered of [
      original.replace('"revoked":true', '"revoked":false'),
      original.replace(/"seq":\d+/, '"seq":1000000000000'),
      `${original} `,
    ]) {
      expect(tampered).not.toBe(original);
      await plant(location, hash, tampered, mac);
      read = await readThrough(location, hash, now + 30);
      expect(read.record?.revoked).toBe(true);
      expect(read.sessionKeyReads, tampered).toBe(1);
    }
  });
});

describe("authentic Cache API entries", () => {
  it("serves an authentic entry without a D1 read, loading the entry key once per isolate", async () => {
    const tenant = await createTenant("mac authentic");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const other = await createKey(tenant, { name: "second" });
    const otherHash = await hashKey(other.key);
    const now = Date.now();
    const location = await locationHolding([hash, otherHash], now);
    expect(await isAuthentic(location, hash)).toBe(true);
    expect(new URL(cacheUrl(hash)).origin).toBe(KEY_CACHE_ORIGIN);

    let loads = 0;
    const cache = countingCache(location);
    const reader = await runningIsolate({
      cache: cache.cache,
      entryKey: () => {
        loads += 1;
        return deploymentEntryKey();
      },
    });
    const d1 = countingD1();
    expect(await reader.tiers.lookup(d1.db, hash, now + 10)).toMatchObject({ id: key.id, enabled: true });
    expect(await reader.tiers.lookup(d1.db, otherHash, now + 11)).toMatchObject({ id: other.id });
    expect(d1.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 0, feedReads: 1 });
    expect(cache.counts).toEqual({ match: 2, put: 0, delete: 0 });
    expect(loads).toBe(1);
  });

  it("fails closed to D1 while the entry key cannot be loaded (a sealed keyring): asks the cache nothing and writes nothing, and retries the load after a poll interval", async () => {
    const tenant = await createTenant("mac sealed");
    const hashes: string[] = [];
    for (const name of ["a", "b", "c", "d"])
      hashes.push(await hashKey((await createKey(tenant, { name })).key));
    const [first, second, third, fourth] = hashes as [string, string, string, string];
    const now = Date.now();
    const location = await locationHolding(hashes, now);
    for (const hash of hashes) expect(await isAuthentic(location, hash)).toBe(true);

    let loads = 0;
    let sealed = true;
    const cache = countingCache(location);
    // A stored key (Vault only), not at hand: lookups do not wait for its load.
    const reader = otherIsolate({
      cache: cache.cache,
      entryKeyAtHand: false,
      entryKey: () => {
        loads += 1;
        return sealed ? Promise.reject(new Error("sealed (test)")) : deploymentEntryKey();
      },
    });
    const d1 = countingD1();
    expect(await reader.tiers.lookup(d1.db, first, now + 10)).not.toBeNull();
    await reader.settle();
    expect(d1.counts.sessionKeyReads).toBe(1);
    expect(cache.counts).toEqual({ match: 0, put: 0, delete: 0 });
    expect(loads).toBe(1);

    // The keyring opens again. Within a poll interval of the failure the tier stays off (no load per miss) ...
    sealed = false;
    const soon = countingD1();
    expect(await reader.tiers.lookup(soon.db, second, now + 11)).not.toBeNull();
    await reader.settle();
    expect(soon.counts.sessionKeyReads).toBe(1);
    expect(cache.counts).toEqual({ match: 0, put: 0, delete: 0 });
    expect(loads).toBe(1);
    // ... after it the miss that finds the retry due starts the load (and reads D1 while it runs) ...
    const retry = countingD1();
    expect(await reader.tiers.lookup(retry.db, third, now + 10 + KEY_FEED_POLL_INTERVAL_MS)).not.toBeNull();
    expect(retry.counts.sessionKeyReads).toBe(1);
    expect(loads).toBe(2);
    await reader.settle();
    // ... and once it has loaded the location's entries are served again.
    const later = countingD1();
    expect(await reader.tiers.lookup(later.db, fourth, now + 11 + KEY_FEED_POLL_INTERVAL_MS)).not.toBeNull();
    expect(later.counts.sessionKeyReads).toBe(0);
    expect(loads).toBe(2);
  });
});
