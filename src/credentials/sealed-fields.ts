import type { FieldSpec } from "../catalog/types";
import { maskValue } from "../catalog/validate";
import { decryptText, encryptText } from "../crypto/envelope";
import type { Database } from "../db/client";
import { type ActiveDekRead, countEncryptionsStatement, dekFor, sealingDek } from "../vault/data-keys";
import type { Unsealed } from "../vault/keyring";

/**
 * Seals named values for one record. The record id and the value's name go into the AAD, so a blob copied
 * to another record, another name or another tenant fails authentication (threat model case 3). The active
 * DEK is read here unless the caller read it in its own batch (`activeDek`: what `activeDekQuery` found).
 */
export async function sealValues(
  keys: Unsealed,
  db: Database,
  target: { tenantId: string; recordId: string },
  values: Readonly<Record<string, string>>,
  activeDek?: ActiveDekRead,
) {
  const dek = await sealingDek(keys, db, target.tenantId, activeDek);
  const sealed = await sealWith(dek, target, values);
  // Every value of one call is sealed under the same DEK: the row stores its version (src/vault/sealed-records.ts).
  return {
    sealed,
    dekVersion: dek.version,
    countEncryptions: countEncryptionsStatement(db, dek, Object.keys(values).length),
  };
}

/**
 * Seals one record's values under a DEK the caller already holds, so a batch of records (a DEK re-encryption
 * chunk) reads the active DEK and counts its encryptions once. Same AAD binding as `sealValues`.
 */
export async function sealWith(
  dek: { key: CryptoKey; version: number },
  target: { tenantId: string; recordId: string },
  values: Readonly<Record<string, string>>,
): Promise<Record<string, string>> {
  const sealed: Record<string, string> = {};
  for (const [field, value] of Object.entries(values)) {
    sealed[field] = await encryptText(dek.key, dek.version, { ...target, field }, value);
  }
  return sealed;
}

export async function openValues(
  keys: Unsealed,
  db: Database,
  source: { tenantId: string; recordId: string },
  sealed: Readonly<Record<string, string>>,
): Promise<Record<string, string>> {
  const plain: Record<string, string> = {};
  for (const [field, blob] of Object.entries(sealed)) {
    plain[field] = await decryptText(
      (version) => dekFor(keys, db, source.tenantId, version),
      { ...source, field },
      blob,
    );
  }
  return plain;
}

/** A credential version's record id: versions of one credential cannot stand in for each other. */
export function credentialRecordId(credentialId: string, version: number): string {
  return `${credentialId}#${version}`;
}

/** Display form of a credential's values: secrets masked, identifiers (region, shop domain) as entered. */
export function displayValues(
  specs: readonly FieldSpec[],
  values: Readonly<Record<string, string>>,
): Record<string, string> {
  const display: Record<string, string> = {};
  for (const spec of specs) {
    const value = values[spec.name];
    if (value !== undefined) display[spec.name] = spec.secret ? maskValue(value) : value;
  }
  return display;
}
