/**
 * The Cache API entry key of a deployment with no master secret (Vault only): the stored `key-cache` system
 * key, wrapped by Vault Transit (src/keys/key-cache-mac-key.ts). Project `kek-vault` (vitest.config.ts): its
 * own workerd and database, bindings KEK_PROVIDER=vault with VAULT_* set, and the Transit stand-in.
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import type { Bindings } from "../../src/env";
import { KEY_CACHE_PURPOSE, keyCacheMacInput, keyCacheMacKey } from "../../src/keys/key-cache-mac-key";
import { forgetKeys } from "../../src/vault/keyring";
import { envWith } from "../helpers/env";
import { useTransitStandIn } from "../vault/kek-fixtures";
import { countingD1, freshCache, otherIsolate, runningIsolate } from "./key-cache-support";

/** The end of a migration into Vault: no master secret at all. */
const VAULT_ONLY = envWith({ MASTER_KEY: undefined });
const standIn = useTransitStandIn(env as Bindings);
beforeEach(() => forgetKeys());

async function storedKeyCacheRow() {
  return env.DB.prepare("SELECT kek_provider, wrapped_key FROM system_keys WHERE purpose = ?")
    .bind(KEY_CACHE_PURPOSE)
    .first<{ kek_provider: string; wrapped_key: string }>();
}

const sampleMac = async (key: CryptoKey) =>
  new Uint8Array(await crypto.subtle.sign("HMAC", key, keyCacheMacInput("ab".repeat(32), "{}")));

describe("a Vault-only deployment's Cache API entry key", () => {
  it("is the stored key-cache system key, wrapped by Vault, which every isolate loads alike", async () => {
    expect(await storedKeyCacheRow()).toBeNull();
    const first = await keyCacheMacKey(VAULT_ONLY, env.DB);
    const row = await storedKeyCacheRow();
    expect(row?.kek_provider).toBe("vault");
    expect(standIn().counts.encrypt).toBeGreaterThan(0);

    // Another isolate (nothing unsealed, nothing cached) unwraps the same row through Vault.
    forgetKeys();
    const second = await keyCacheMacKey(VAULT_ONLY, env.DB);
    expect(await storedKeyCacheRow()).toEqual(row);
    expect(await sampleMac(second)).toEqual(await sampleMac(first));
    // With MASTER_KEY still set (the deployment before its secret was removed) the key is derived instead.
    expect(await sampleMac(await keyCacheMacKey(env, env.DB))).not.toEqual(await sampleMac(first));
  });

  it("signs entries one isolate writes and another serves without a D1 read", async () => {
    const location = await freshCache();
    const unknownHash = "cd".repeat(32);
    const now = Date.now();
    const writer = otherIsolate({ cache: location, entryKey: () => keyCacheMacKey(VAULT_ONLY, env.DB) });
    expect(await writer.tiers.lookup(env.DB, unknownHash, now)).toBeNull();
    await writer.settle();

    forgetKeys();
    const reader = await runningIsolate({
      cache: location,
      entryKey: () => keyCacheMacKey(VAULT_ONLY, env.DB),
    });
    const reads = countingD1();
    expect(await reader.tiers.lookup(reads.db, unknownHash, now + 10)).toBeNull();
    expect(reads.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 0, feedReads: 1 });
  });
});
