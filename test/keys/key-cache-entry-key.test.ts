/**
 * The key that MACs the Workers Cache API entries (src/keys/key-cache-mac-key.ts) and what an isolate's first
 * lookups wait for: with a master secret the key is derived from it (no D1 read), and a lookup never waits for
 * the key to load (it reads D1 as if the cache were off). The Vault-only deployment's stored key is tested in
 * test/keys/key-cache-vault.test.ts (the `kek-vault` project).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { toBase64 } from "../../src/crypto/encoding";
import { deriveHmacKey, importMasterKey } from "../../src/crypto/envelope";
import { hashKey } from "../../src/crypto/keys";
import { KEY_CACHE_MAC_HEADER, keyCacheMacInput, keyCacheMacKey } from "../../src/keys/key-cache-mac-key";
import { cacheUrl } from "../../src/keys/key-cache-tier";
import { forgetKeys } from "../../src/vault/keyring";
import { call, createKey, createTenant } from "../helpers/api";
import { envWith } from "../helpers/env";
import {
  countingCache,
  countingD1,
  deploymentEntryKey,
  freshCache,
  locationHolding,
  otherIsolate,
  runningIsolate,
} from "./key-cache-support";

/** A D1 binding that must not be used: every call is counted and fails. */
function untouchableD1(): { db: D1Database; calls: () => number } {
  let calls = 0;
  const refuse = () => {
    calls += 1;
    throw new Error("the entry key read D1 (test)");
  };
  const db = { prepare: refuse, batch: refuse, exec: refuse, withSession: refuse, dump: refuse };
  return { db: db as unknown as D1Database, calls: () => calls };
}

/** 32 random bytes, base64: a master secret of another deployment. */
function anotherMasterSecret(): string {
  return toBase64(crypto.getRandomValues(new Uint8Array(32)));
}

/** A fixed second master version, as a KEK rotation adds it. */
const MASTER_KEY_2 = "brX9LIDCjKphOIdUs+Vw0LggLIA4zP05nnlobPRnQck=";

async function macUnder(key: CryptoKey, hash: string, text: string): Promise<string> {
  return toBase64(new Uint8Array(await crypto.subtle.sign("HMAC", key, keyCacheMacInput(hash, text))));
}

/** The entry key of a deployment configured as `settings` say, loaded with no usable D1. */
async function entryKeyOf(settings: Record<string, string | undefined>): Promise<CryptoKey> {
  return keyCacheMacKey(envWith(settings), untouchableD1().db);
}

const SAMPLE_HASH = "ab".repeat(32);
const sampleMac = (key: CryptoKey) => macUnder(key, SAMPLE_HASH, '{"v":1}');

describe("an isolate's first lookups and the entry key", () => {
  it("answers a fresh isolate's first lookup from D1 without waiting for an entry key that is not at hand (stored, Vault only), and serves the location's entries once it has loaded", async () => {
    const tenant = await createTenant("entry key not loaded");
    const first = await createKey(tenant, { name: "first" });
    const second = await createKey(tenant, { name: "second" });
    const [firstHash, secondHash] = await Promise.all([hashKey(first.key), hashKey(second.key)]);
    const now = Date.now();
    const location = await locationHolding([firstHash, secondHash], now);

    // An entry key that loads only when the test says so: an old lookup would wait for it for ever.
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const cache = countingCache(location);
    const fresh = otherIsolate({
      cache: cache.cache,
      entryKey: () => gate.then(deploymentEntryKey),
      entryKeyAtHand: false,
    });
    const d1 = countingD1();
    expect(await fresh.tiers.lookup(d1.db, firstHash, now + 10)).toMatchObject({ id: first.id });
    expect(d1.counts.sessionKeyReads).toBe(1);
    // The Cache API was not asked: without the key its answer could not be checked.
    expect(cache.counts).toEqual({ match: 0, put: 0, delete: 0 });

    release();
    await fresh.settle();
    // The read's entry was put once the key loaded (off the response path) ...
    expect(cache.counts.put).toBe(1);
    // ... and the next miss is served by the location's cache, with no D1 read.
    expect(await fresh.tiers.lookup(d1.db, secondHash, now + 11)).toMatchObject({ id: second.id });
    expect(d1.counts.sessionKeyReads).toBe(1);
    expect(cache.counts.match).toBe(1);
  });

  it("serves a fresh isolate's first lookup from the location's cache when the entry key is at hand (derived): it waits for the key, not for D1", async () => {
    const tenant = await createTenant("entry key at hand");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const now = Date.now();
    const location = await locationHolding([hash], now);
    const cache = countingCache(location);
    const fresh = otherIsolate({ cache: cache.cache });
    const d1 = countingD1();
    expect(await fresh.tiers.lookup(d1.db, hash, now + 10)).toMatchObject({ id: key.id });
    // The feed's window (no snapshot shared here), and no key read.
    expect(d1.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 0, feedReads: 1 });
    expect(cache.counts.match).toBe(1);
  });

  it("derives the entry key from the master secret without reading D1 (no keyring, no system_keys row)", async () => {
    // Nothing unsealed in this isolate yet: a key that came from the keyring would have to read D1 now.
    forgetKeys();
    const d1 = untouchableD1();
    const derived = await keyCacheMacKey(env, d1.db);
    expect(d1.calls()).toBe(0);
    expect(derived.extractable).toBe(false);
    expect(derived.usages.sort()).toEqual(["sign", "verify"]);
    // The same key as every other isolate of the deployment loads (the Worker's binding, the tests' helper).
    expect(await sampleMac(derived)).toBe(await sampleMac(await deploymentEntryKey()));

    // A running isolate keyed this way serves the location's entries with no D1 read at all.
    const tenant = await createTenant("entry key derived");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const now = Date.now();
    const location = await locationHolding([hash], now);
    const reader = await runningIsolate({ cache: location, entryKey: () => keyCacheMacKey(env, d1.db) });
    const reads = countingD1();
    expect(await reader.tiers.lookup(reads.db, hash, now + 10)).toMatchObject({ id: key.id });
    expect(reads.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 0, feedReads: 1 });
    expect(d1.calls()).toBe(0);
  });

  it("keys old and new isolates alike through a KEK rotation (the oldest master secret present), and changes only when it is retired", async () => {
    const before = await sampleMac(await entryKeyOf({ KEK_VERSION: "1", MASTER_KEY_2: undefined }));
    const added = await sampleMac(await entryKeyOf({ KEK_VERSION: "1", MASTER_KEY_2 }));
    const switched = await sampleMac(await entryKeyOf({ KEK_VERSION: "2", MASTER_KEY_2 }));
    const retired = await sampleMac(
      await entryKeyOf({ KEK_VERSION: "2", MASTER_KEY: undefined, MASTER_KEY_2 }),
    );
    expect(added).toBe(before);
    expect(switched).toBe(before);
    // Retiring MASTER_KEY changes the key: entries signed before are misses, read again and re-signed.
    expect(retired).not.toBe(before);
  });

  it("derives a key that equals no stored purpose key's first value (its own HKDF label)", async () => {
    // A `key-cache` purpose key first derived from MASTER_KEY (as the stored one was) is not the entry key.
    const root = await importMasterKey(env.MASTER_KEY);
    const purposeDerived = await deriveHmacKey(root, "key-cache");
    expect(await sampleMac(purposeDerived)).not.toBe(await sampleMac(await deploymentEntryKey()));
  });
});

describe("entries signed under another deployment's master secret", () => {
  it("refuses an entry MACed under another deployment's derived key that makes a revoked key valid: a miss that reads D1 and overwrites it (threat model case 11)", async () => {
    const tenant = await createTenant("entry key other deployment");
    const key = await createKey(tenant, { scopes: ["orders:read"] });
    const hash = await hashKey(key.key);
    expect((await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status).toBe(200);
    const location = await freshCache();
    const now = Date.now();

    // A staging Keywarden on the same zone, with its own MASTER_KEY, caches the key before the revocation
    // would reach it, and signs what it writes with its own derived entry key.
    const staging = await entryKeyOf({ MASTER_KEY: anotherMasterSecret() });
    expect(await sampleMac(staging)).not.toBe(await sampleMac(await deploymentEntryKey()));
    const text = JSON.stringify({
      v: 1,
      seq: 1e12,
      readAt: now,
      record: { id: key.id, tenantId: tenant.id, enabled: true, revoked: false, scopes: ["admin"] },
    });
    await location.put(
      cacheUrl(hash),
      new Response(text, { headers: { [KEY_CACHE_MAC_HEADER]: await macUnder(staging, hash, text) } }),
    );

    const reader = await runningIsolate({ cache: location });
    const reads = countingD1();
    expect(await reader.tiers.lookup(reads.db, hash, now + 10)).toMatchObject({ id: key.id, revoked: true });
    expect(reads.counts.sessionKeyReads).toBe(1);
    await reader.settle();
    // Overwritten with this deployment's own entry: the revoked record, under this deployment's key.
    const response = await location.match(cacheUrl(hash));
    const written = (await response?.text()) ?? "";
    expect(JSON.parse(written).record.revoked).toBe(true);
    expect(response?.headers.get(KEY_CACHE_MAC_HEADER)).toBe(
      await macUnder(await deploymentEntryKey(), hash, written),
    );
  });
});

describe("a malformed master secret", () => {
  it("turns the Cache API tier off (no entry served or written) and never fails a lookup", async () => {
    for (const malformed of ["not base64!", toBase64(new Uint8Array(16))]) {
      await expect(entryKeyOf({ MASTER_KEY: malformed })).rejects.toThrow();
    }
    const tenant = await createTenant("entry key malformed");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const now = Date.now();
    const cache = countingCache(await locationHolding([hash], now));
    const broken = otherIsolate({
      cache: cache.cache,
      entryKey: () => keyCacheMacKey(envWith({ MASTER_KEY: "not base64!" }), env.DB),
    });
    expect(await broken.tiers.loadEntryKey(env.DB, now)).toBe(false);
    const reads = countingD1();
    expect(await broken.tiers.lookup(reads.db, hash, now + 10)).toMatchObject({ id: key.id, enabled: true });
    await broken.settle();
    expect(reads.counts.sessionKeyReads).toBe(1);
    expect(cache.counts).toEqual({ match: 0, put: 0, delete: 0 });
  });
});
