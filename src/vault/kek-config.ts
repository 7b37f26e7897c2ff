import type { Bindings } from "../env";
import { ApiError } from "../errors";
import { type KekProvider, masterSecretName } from "./kek-ref";
import { type VaultConfig, vaultConfigFrom } from "./vault-config";

/** Everything the keyring reads from the environment. `MASTER_KEY_<N>` secrets are found by name. */
export type KeyringEnv = Pick<Bindings, "MASTER_KEY" | "KEK_VERSION"> &
  Partial<
    Pick<
      Bindings,
      | "KEK_PROVIDER"
      | "VAULT_ADDR"
      | "VAULT_TOKEN"
      | "VAULT_ROLE_ID"
      | "VAULT_SECRET_ID"
      | "VAULT_APPROLE_MOUNT"
      | "VAULT_NAMESPACE"
      | "VAULT_TRANSIT_MOUNT"
      | "VAULT_TRANSIT_KEY"
    >
  >;

export interface KekConfig {
  /** The provider that wraps new data keys. */
  provider: KekProvider;
  /** `KEK_VERSION`: the master version new data keys are wrapped under while the provider is `master`. */
  masterVersion: number;
  /** Every master secret present, by version (base64 text as set; checked when the keyring opens). */
  masterSecrets: Map<number, string>;
  vault: VaultConfig | null;
}

/** Version 1 is `MASTER_KEY`; `MASTER_KEY_1` would be a second name for it and is not read. */
const VERSIONED_SECRET = /^MASTER_KEY_([2-9]|[1-9][0-9]+)$/;

const sealed = (detail: string) => new ApiError("SEALED", detail);

/** Reads the KEK settings, or seals with a message that names the setting at fault (never its value). */
export function kekConfigFrom(env: KeyringEnv): KekConfig {
  const config = kekSettingsFrom(env);
  if (config.provider === "master" && !config.masterSecrets.has(config.masterVersion))
    throw sealed(`The master key is missing: ${masterSecretName(config.masterVersion)} is not set.`);
  return config;
}

/**
 * The KEK settings as configured, whether or not the current master secret is present (the status route
 * reports a sealed deployment's target); seals only on a malformed setting.
 */
export function kekSettingsFrom(env: KeyringEnv): KekConfig {
  const provider = env.KEK_PROVIDER === undefined || env.KEK_PROVIDER === "" ? "master" : env.KEK_PROVIDER;
  if (provider !== "master" && provider !== "vault")
    throw sealed('KEK_PROVIDER must be "master" or "vault".');
  const masterVersion = Number(env.KEK_VERSION);
  if (!Number.isInteger(masterVersion) || masterVersion < 1 || String(masterVersion) !== env.KEK_VERSION)
    throw sealed("KEK_VERSION must be a positive integer.");
  const masterSecrets = masterSecretsFrom(env);
  let vault: VaultConfig | null;
  try {
    vault = vaultConfigFrom(env);
  } catch (error) {
    throw sealed(error instanceof Error ? error.message : "The Vault settings are invalid.");
  }
  if (provider === "vault" && !vault) throw sealed("KEK_PROVIDER is vault but VAULT_ADDR is not set.");
  return { provider, masterVersion, masterSecrets, vault };
}

/** Every master secret present (set and not empty), by version. */
export function masterSecretsFrom(env: KeyringEnv): Map<number, string> {
  const masterSecrets = new Map<number, string>();
  if (env.MASTER_KEY) masterSecrets.set(1, env.MASTER_KEY);
  for (const [name, value] of Object.entries(env)) {
    const match = VERSIONED_SECRET.exec(name);
    if (match && typeof value === "string" && value !== "") masterSecrets.set(Number(match[1]), value);
  }
  return masterSecrets;
}

/** What identifies one configuration: the unsealed keyring is cached per isolate under it. */
export function kekFingerprint(config: KekConfig): string {
  return JSON.stringify([
    config.provider,
    config.masterVersion,
    [...config.masterSecrets].sort(([a], [b]) => a - b),
    config.vault,
  ]);
}
