import { utf8 } from "../crypto/encoding";
import { BLOB_FORMAT_VERSION, dekAad } from "../crypto/envelope";

/**
 * What a wrapped key belongs to, bound into its wrapping: a tenant's DEK of one version, or one system purpose
 * key. A wrapped key copied to another tenant, version or purpose fails to unwrap (threat model case 7).
 */
export type WrapBinding =
  | { kind: "dek"; tenantId: string; dekVersion: number }
  | { kind: "system"; purpose: string };

/** AAD under a master KEK, which also names the master version (so a row claiming another version fails). */
export function masterAad(binding: WrapBinding, kekVersion: number): Uint8Array<ArrayBuffer> {
  return binding.kind === "dek"
    ? dekAad(binding.tenantId, binding.dekVersion, kekVersion)
    : utf8(JSON.stringify(["kw-system-key", BLOB_FORMAT_VERSION, binding.purpose, kekVersion]));
}

/**
 * Vault Transit `context` for a derived key: Vault derives a distinct key per context, so a ciphertext only
 * decrypts under the binding it was made for. It holds no Vault key version: `rewrap` keeps the context.
 */
export function vaultContext(binding: WrapBinding): Uint8Array<ArrayBuffer> {
  return utf8(
    JSON.stringify(
      binding.kind === "dek"
        ? ["kw-dek", BLOB_FORMAT_VERSION, binding.tenantId, binding.dekVersion]
        : ["kw-system-key", BLOB_FORMAT_VERSION, binding.purpose],
    ),
  );
}
