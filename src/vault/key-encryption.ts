import type { UnwrapAs } from "../crypto/envelope";
import { ApiError } from "../errors";
import type { KekRef } from "./kek-ref";
import type { MasterKeks } from "./master-keks";
import type { VaultKeks } from "./vault-keks";
import type { WrapBinding } from "./wrap-binding";

export interface WrappedKey {
  kek: KekRef;
  wrapped: string;
}

/**
 * Every KEK the keyring opened, behind one interface: new keys are wrapped under `target`; a stored key is
 * unwrapped by exactly the KEK its row names (never "try the others"); `rewrap` moves one to the target.
 */
export class KeyEncryption {
  constructor(
    readonly target: KekRef,
    readonly master: MasterKeks,
    /** Vault's keys, opened when the keyring opened or on first use (null: Vault is not configured). */
    private readonly openVault: (() => Promise<VaultKeks>) | null,
  ) {}

  /**
   * The target as it stands now. `target` is fixed when the keyring opens; Vault's latest version can move
   * after that (a Transit key rotated), so the re-wrap asks Vault afresh.
   */
  async currentTarget(): Promise<KekRef> {
    if (this.target.provider !== "vault") return this.target;
    return { provider: "vault", version: await (await this.vaultKeks()).currentVersion() };
  }

  /** Wraps an extractable key under the target KEK. */
  async wrap(key: CryptoKey, binding: WrapBinding): Promise<WrappedKey> {
    if (this.target.provider === "vault") return (await this.vaultKeks()).wrap(key, binding);
    return { kek: this.target, wrapped: await this.master.wrap(this.target.version, key, binding) };
  }

  async unwrap(stored: WrappedKey, binding: WrapBinding, as: UnwrapAs): Promise<CryptoKey> {
    return stored.kek.provider === "vault"
      ? (await this.vaultKeks()).unwrap(stored.kek.version, stored.wrapped, binding, as)
      : this.master.unwrap(stored.kek.version, stored.wrapped, binding, as);
  }

  /** `stored` wrapped again under the target KEK; within Vault, by Vault's rewrap. */
  async rewrap(
    stored: WrappedKey,
    binding: WrapBinding,
    as: Omit<UnwrapAs, "extractable">,
  ): Promise<WrappedKey> {
    if (stored.kek.provider === "vault" && this.target.provider === "vault")
      return (await this.vaultKeks()).rewrap(stored.wrapped, binding);
    // Extractable only for this moment: the key is wrapped again at once and dropped.
    return this.wrap(await this.unwrap(stored, binding, { ...as, extractable: true }), binding);
  }

  private vaultKeks(): Promise<VaultKeks> {
    if (!this.openVault)
      return Promise.reject(
        new ApiError("SEALED", "A key is wrapped by Vault Transit but VAULT_ADDR is not set."),
      );
    return this.openVault();
  }
}
