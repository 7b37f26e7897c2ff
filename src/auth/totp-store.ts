import { openValues } from "../credentials/sealed-fields";
import type { Database } from "../db/client";
import type { adminTotp } from "../db/schema";
import type { Bindings } from "../env";
import { unseal } from "../vault/keyring";
import { fromBase32 } from "./totp";

/** A key's TOTP secret is sealed with its tenant's DEK, AAD-bound to that key. */
export function totpRecord(owner: { tenantId: string; keyId: string }) {
  return { tenantId: owner.tenantId, recordId: `totp:${owner.keyId}` };
}

export async function totpSecretOf(env: Bindings, db: Database, row: typeof adminTotp.$inferSelect) {
  const keys = await unseal(env, db);
  const { secret } = await openValues(keys, db, totpRecord(row), { secret: row.sealedSecret });
  return fromBase32(secret as string);
}
