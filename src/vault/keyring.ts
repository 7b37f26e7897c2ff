import { and, eq, sql } from "drizzle-orm";
import { BoundedCache } from "../cache/bounded-cache";
import { bytesEqual } from "../crypto/constant-time";
import { utf8 } from "../crypto/encoding";
import {
  createWrappedDek,
  deriveHmacKey,
  deriveKek,
  IntegrityError,
  importMasterKey,
  keyCheckValue,
  unwrapDek,
} from "../crypto/envelope";
import type { Database } from "../db/client";
import { dataKeys, keyring } from "../db/schema";
import { ApiError } from "../errors";

export interface Unsealed {
  master: CryptoKey;
  kek: CryptoKey;
  kekVersion: number;
}

let unsealed: { fingerprint: string; value: Promise<Unsealed> } | undefined;
const deks = new BoundedCache<Promise<CryptoKey>>(1_000, 10 * 60_000);

/**
 * Checks the deployed MASTER_KEY against the stored key-check value. A missing or wrong key
 * seals the service (503) rather than creating new keys: fail closed, as Vault does.
 */
export function unseal(env: Pick<Env, "MASTER_KEY" | "KEK_VERSION">, db: Database): Promise<Unsealed> {
  const fingerprint = `${env.KEK_VERSION}:${env.MASTER_KEY ?? ""}`;
  if (unsealed?.fingerprint !== fingerprint) {
    const value = openKeyring(env, db);
    unsealed = { fingerprint, value };
    value.catch(() => {
      if (unsealed?.value === value) unsealed = undefined;
    });
  }
  return unsealed.value;
}

async function openKeyring(env: Pick<Env, "MASTER_KEY" | "KEK_VERSION">, db: Database): Promise<Unsealed> {
  const kekVersion = Number(env.KEK_VERSION);
  let master: CryptoKey;
  try {
    if (!Number.isInteger(kekVersion) || kekVersion < 1) throw new TypeError("bad KEK_VERSION");
    master = await importMasterKey(env.MASTER_KEY);
  } catch {
    throw new ApiError("SEALED", "The master key is missing or malformed.");
  }
  const expected = await keyCheckValue(master, kekVersion);
  // First start only: record the check value, but never while any wrapped DEK exists, so a wrong
  // key on a populated database can never adopt itself as the new truth.
  await db.run(
    sql`INSERT OR IGNORE INTO keyring (kek_version, check_value, created_at)
        SELECT ${kekVersion}, ${expected}, ${Date.now()} WHERE NOT EXISTS (SELECT 1 FROM data_keys)`,
  );
  const row = await db.select().from(keyring).where(eq(keyring.kekVersion, kekVersion)).get();
  if (!row || !bytesEqual(utf8(row.checkValue), utf8(expected))) {
    throw new ApiError("SEALED", "The master key does not match the stored key-check value.");
  }
  return { master, kek: await deriveKek(master, kekVersion), kekVersion };
}

/** Test hook and isolate hygiene: forget the unsealed keyring and every cached DEK. */
export function forgetKeys(): void {
  unsealed = undefined;
  deks.clear();
}

const purposeKeys = new WeakMap<Unsealed, Map<string, Promise<CryptoKey>>>();

/** HMAC key for one purpose (session JWTs, audit identifiers ...), derived once per isolate. */
export function purposeKey(keys: Unsealed, purpose: string): Promise<CryptoKey> {
  let forKeys = purposeKeys.get(keys);
  if (!forKeys) {
    forKeys = new Map();
    purposeKeys.set(keys, forKeys);
  }
  let key = forKeys.get(purpose);
  if (!key) {
    key = deriveHmacKey(keys.master, purpose);
    forKeys.set(purpose, key);
  }
  return key;
}

/** A fresh DEK v1 for a new tenant; the caller inserts it in the same batch as the tenant. */
export async function newTenantDek(keys: Unsealed, tenantId: string) {
  const { wrapped, dek } = await createWrappedDek(keys.kek, tenantId, 1, keys.kekVersion);
  deks.set(`${tenantId}:1`, Promise.resolve(dek));
  return {
    tenantId,
    version: 1,
    kekVersion: keys.kekVersion,
    wrappedKey: wrapped,
    encryptionCount: 0,
    status: "active" as const,
    createdAt: Date.now(),
  };
}

/**
 * Resolves exactly the DEK version a ciphertext names, for its own tenant only. A missing,
 * retired-and-deleted or foreign version fails closed: there is no "try the others" fallback.
 */
export function dekFor(keys: Unsealed, db: Database, tenantId: string, version: number): Promise<CryptoKey> {
  const cacheKey = `${tenantId}:${version}`;
  const cached = deks.get(cacheKey);
  if (cached) return cached;
  const loading = (async () => {
    const row = await db
      .select()
      .from(dataKeys)
      .where(and(eq(dataKeys.tenantId, tenantId), eq(dataKeys.version, version)))
      .get();
    if (!row) throw new IntegrityError("no such data key version for this tenant");
    if (row.kekVersion !== keys.kekVersion)
      throw new IntegrityError("data key wrapped under another KEK version");
    return unwrapDek(keys.kek, row.wrappedKey, tenantId, version, row.kekVersion);
  })();
  deks.set(cacheKey, loading);
  loading.catch(() => deks.delete(cacheKey));
  return loading;
}

/** The tenant's active DEK, and the statement that counts the encryptions about to be made with it. */
export async function activeDek(keys: Unsealed, db: Database, tenantId: string, encryptions: number) {
  const row = await db
    .select({ version: dataKeys.version })
    .from(dataKeys)
    .where(and(eq(dataKeys.tenantId, tenantId), eq(dataKeys.status, "active")))
    .get();
  if (!row) throw new ApiError("KEY_UNAVAILABLE", "The tenant has no active data key.");
  return {
    version: row.version,
    key: await dekFor(keys, db, tenantId, row.version),
    countEncryptions: db
      .update(dataKeys)
      .set({ encryptionCount: sql`${dataKeys.encryptionCount} + ${encryptions}` })
      .where(and(eq(dataKeys.tenantId, tenantId), eq(dataKeys.version, row.version))),
  };
}
