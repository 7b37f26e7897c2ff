import type { FieldSpec } from "../catalog/types";
import { maskValue } from "../catalog/validate";
import { decryptText, encryptText, type FieldContext } from "../crypto/envelope";
import type { Database } from "../db/client";
import { activeDek, dekFor, type Unsealed } from "../vault/keyring";

/**
 * A version's record id in the AAD: a blob copied to another credential, another version of the same
 * credential or another tenant names a different context and fails authentication (SECURITY.md case 3).
 */
function contextOf(tenantId: string, credentialId: string, version: number, field: string): FieldContext {
  return { tenantId, recordId: `${credentialId}#${version}`, field };
}

export async function sealFields(
  keys: Unsealed,
  db: Database,
  target: { tenantId: string; credentialId: string; version: number },
  specs: readonly FieldSpec[],
  values: Readonly<Record<string, string>>,
) {
  const names = specs.map((spec) => spec.name).filter((name) => values[name] !== undefined);
  const dek = await activeDek(keys, db, target.tenantId, names.length);
  const sealed: Record<string, string> = {};
  const display: Record<string, string> = {};
  for (const spec of specs) {
    const value = values[spec.name];
    if (value === undefined) continue;
    const context = contextOf(target.tenantId, target.credentialId, target.version, spec.name);
    sealed[spec.name] = await encryptText(dek.key, dek.version, context, value);
    display[spec.name] = spec.secret ? maskValue(value) : value;
  }
  return { sealed, display, countEncryptions: dek.countEncryptions };
}

export async function openFields(
  keys: Unsealed,
  db: Database,
  source: { tenantId: string; credentialId: string; version: number },
  sealed: Readonly<Record<string, string>>,
): Promise<Record<string, string>> {
  const plain: Record<string, string> = {};
  for (const [field, blob] of Object.entries(sealed)) {
    plain[field] = await decryptText(
      (version) => dekFor(keys, db, source.tenantId, version),
      contextOf(source.tenantId, source.credentialId, source.version, field),
      blob,
    );
  }
  return plain;
}
