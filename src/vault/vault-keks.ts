import { IntegrityError, type UnwrapAs } from "../crypto/envelope";
import { ApiError } from "../errors";
import type { KekRef } from "./kek-ref";
import { VaultRefused, VaultTransit, VaultUnavailable } from "./vault-transit";
import { vaultContext, type WrapBinding } from "./wrap-binding";

/**
 * Data keys wrapped by a HashiCorp Vault Transit key. Vault holds the KEK and never releases it: Keywarden
 * sends the DEK to `encrypt` once, and gets it back from `decrypt` when an isolate first needs it (then it is
 * cached like any DEK). The key must be a derived key, so each DEK's context (tenant, DEK version) selects
 * its own Vault-side key.
 */
export class VaultKeks {
  constructor(
    private readonly transit: VaultTransit,
    /** The Transit key's latest version when the keyring opened: where the re-wrap moves every DEK. */
    readonly latestVersion: number,
  ) {}

  async wrap(key: CryptoKey, binding: WrapBinding): Promise<{ kek: KekRef; wrapped: string }> {
    const raw = new Uint8Array((await crypto.subtle.exportKey("raw", key)) as ArrayBuffer);
    try {
      const { ciphertext, version } = await vaultCall(() => this.transit.encrypt(raw, vaultContext(binding)));
      return { kek: { provider: "vault", version }, wrapped: ciphertext };
    } finally {
      raw.fill(0);
    }
  }

  async unwrap(version: number, wrapped: string, binding: WrapBinding, as: UnwrapAs): Promise<CryptoKey> {
    if (ciphertextVersion(wrapped) !== version)
      throw new IntegrityError("wrapped key names another Vault version");
    const raw = await vaultCall(() => this.transit.decrypt(wrapped, vaultContext(binding)));
    try {
      if (raw.byteLength !== as.bytes) throw new IntegrityError("wrapped key has the wrong length");
      return await crypto.subtle.importKey("raw", raw, as.algorithm, as.extractable ?? false, as.usages);
    } finally {
      raw.fill(0);
    }
  }

  /** The Transit key's latest version as Vault reports it now: a rotation since the keyring opened shows. */
  async currentVersion(): Promise<number> {
    return (await vaultCall(() => this.transit.keyInfo())).latestVersion;
  }

  /** Vault's own `rewrap`: the key moves to the latest version without its plaintext leaving Vault. */
  async rewrap(wrapped: string, binding: WrapBinding): Promise<{ kek: KekRef; wrapped: string }> {
    const { ciphertext, version } = await vaultCall(() =>
      this.transit.rewrap(wrapped, vaultContext(binding)),
    );
    return { kek: { provider: "vault", version }, wrapped: ciphertext };
  }
}

function ciphertextVersion(wrapped: string): number {
  try {
    return VaultTransit.versionOf(wrapped);
  } catch {
    throw new IntegrityError("wrapped key is not a Vault ciphertext");
  }
}

/**
 * Vault out of reach (network, timeout, sealed, 5xx) seals Keywarden: 503, nothing written. Refused
 * credentials or a missing key are configuration faults and seal too; only a ciphertext Vault cannot
 * authenticate is an integrity failure of that one key.
 */
export async function vaultCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof VaultUnavailable) throw new ApiError("SEALED", "Vault Transit cannot be reached.");
    if (error instanceof VaultRefused) {
      if (error.reason === "ciphertext") throw new IntegrityError("Vault could not decrypt the wrapped key");
      throw new ApiError(
        "SEALED",
        error.reason === "credentials"
          ? "Vault refused Keywarden's credentials."
          : "Vault refused the Transit request (check VAULT_TRANSIT_MOUNT, VAULT_TRANSIT_KEY and the policy).",
      );
    }
    throw error;
  }
}
