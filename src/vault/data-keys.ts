import { and, eq, sql } from "drizzle-orm";
import { BoundedCache } from "../cache/bounded-cache";
import { DEK_USE, generateDek, IntegrityError } from "../crypto/envelope";
import type { Database } from "../db/client";
import { dataKeys } from "../db/schema";
import { ApiError } from "../errors";
import type { Unsealed } from "./keyring";

/** Every tenant DEK is replaced on this schedule (docs/storage.md, "Key rotation"). */
export const DEK_ROTATION_DAYS = 90;
export const DEK_ROTATION_MS = DEK_ROTATION_DAYS * 86_400_000;
/**
 * Encryptions after which a DEK is rotated at once, whatever its schedule: a quarter of the 2^32 invocations
 * NIST SP 800-38D §8.3 allows one AES-GCM key with random 96-bit IVs, so the bound is never approached.
 */
export const DEK_ROTATION_ENCRYPTIONS = 2 ** 30;

export type DataKeyRow = typeof dataKeys.$inferSelect;

/** Unwrapped DEKs by `tenant:version`. A DEK deleted at retirement stays usable here until its entry expires. */
const deks = new BoundedCache<Promise<CryptoKey>>(1_000, 10 * 60_000);

export function forgetDataKeys(): void {
  deks.clear();
}

/** Drops one DEK from this isolate's cache: a retired (deleted) DEK then fails closed here at once. */
export function forgetDataKey(tenantId: string, version: number): void {
  deks.delete(`${tenantId}:${version}`);
}

export const dekBinding = (tenantId: string, dekVersion: number) =>
  ({ kind: "dek", tenantId, dekVersion }) as const;

/**
 * A fresh DEK row for `tenantId` at `version`, wrapped under the target KEK; the caller inserts it in the
 * batch that needs it (a new tenant, or a DEK rotation).
 */
export async function newDataKey(keys: Unsealed, tenantId: string, version: number, now: number) {
  const { kek, wrapped } = await keys.keks.wrap(await generateDek(), dekBinding(tenantId, version));
  return {
    tenantId,
    version,
    kekProvider: kek.provider,
    kekVersion: kek.version,
    wrappedKey: wrapped,
    encryptionCount: 0,
    status: "active" as const,
    nextRotationAt: now + DEK_ROTATION_MS,
    retireAfter: null,
    createdAt: now,
  } satisfies DataKeyRow;
}

/** A new tenant's DEK v1; the caller inserts it in the same batch as the tenant. */
export function newTenantDek(keys: Unsealed, tenantId: string, now = Date.now()) {
  return newDataKey(keys, tenantId, 1, now);
}

/**
 * Resolves exactly the DEK version a ciphertext names, for its own tenant only. A missing, retired (deleted)
 * or foreign version fails closed: there is no "try the others" fallback. The row names the one KEK that
 * unwraps it.
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
    return keys.keks.unwrap(
      { kek: { provider: row.kekProvider, version: row.kekVersion }, wrapped: row.wrappedKey },
      dekBinding(tenantId, version),
      DEK_USE,
    );
  })();
  deks.set(cacheKey, loading);
  loading.catch(() => deks.delete(cacheKey));
  return loading;
}

/**
 * THE rule for which DEK seals new values: the tenant's DEK labelled `active` (a DEK rotation moves the label
 * in one batch, src/vault/dek-rotation.ts). A query, so a route can read it in the one D1 batch of its other
 * reads and hand what it found to the sealing (`sealValues`), which turns it into the key (`sealingDek`).
 */
export function activeDekQuery(db: Database, tenantId: string) {
  return db
    .select({ tenantId: dataKeys.tenantId, version: dataKeys.version })
    .from(dataKeys)
    .where(and(eq(dataKeys.tenantId, tenantId), eq(dataKeys.status, "active")));
}

/** What `activeDekQuery` found. */
export type ActiveDekRead = readonly { tenantId: string; version: number }[];

/** The DEK that seals a tenant's new values, unwrapped. */
export interface SealingDek {
  tenantId: string;
  version: number;
  key: CryptoKey;
}

/** The sealing DEK from what `activeDekQuery` found (read now when not given); none active is KEY_UNAVAILABLE. */
export async function sealingDek(
  keys: Unsealed,
  db: Database,
  tenantId: string,
  found?: ActiveDekRead,
): Promise<SealingDek> {
  const row = (found ?? (await activeDekQuery(db, tenantId).all()))[0];
  if (!row) throw new ApiError("KEY_UNAVAILABLE", "The tenant has no active data key.");
  // A read handed down from a route seals only the tenant it was read for.
  if (row.tenantId !== tenantId) throw new Error("A tenant's data key seals only its own values.");
  return { tenantId, version: row.version, key: await dekFor(keys, db, tenantId, row.version) };
}

/**
 * The statement that counts `encryptions` more made with `dek`, for the batch that stores them. The count
 * moves the DEK's rotation to now once it crosses DEK_ROTATION_ENCRYPTIONS.
 */
export function countEncryptionsStatement(
  db: Database,
  dek: Pick<SealingDek, "tenantId" | "version">,
  encryptions: number,
) {
  const now = Date.now();
  return db
    .update(dataKeys)
    .set({
      encryptionCount: sql`${dataKeys.encryptionCount} + ${encryptions}`,
      nextRotationAt: sql`CASE WHEN ${dataKeys.status} = 'active'
        AND ${dataKeys.encryptionCount} + ${encryptions} >= ${DEK_ROTATION_ENCRYPTIONS}
        THEN MIN(COALESCE(${dataKeys.nextRotationAt}, ${now}), ${now}) ELSE ${dataKeys.nextRotationAt} END`,
    })
    .where(and(eq(dataKeys.tenantId, dek.tenantId), eq(dataKeys.version, dek.version)));
}

/** The tenant's active DEK, read now, and the statement that counts the encryptions about to be made with it. */
export async function activeDek(keys: Unsealed, db: Database, tenantId: string, encryptions: number) {
  const dek = await sealingDek(keys, db, tenantId);
  return {
    version: dek.version,
    key: dek.key,
    countEncryptions: countEncryptionsStatement(db, dek, encryptions),
  };
}
