/**
 * Which key-encryption key wraps a DEK: a version of the deployment's master secret (`MASTER_KEY`,
 * `MASTER_KEY_<N>`) or a version of a HashiCorp Vault Transit key.
 */
export const KEK_PROVIDERS = ["master", "vault"] as const;
export type KekProvider = (typeof KEK_PROVIDERS)[number];

export interface KekRef {
  provider: KekProvider;
  version: number;
}

export const sameKek = (a: KekRef, b: KekRef) => a.provider === b.provider && a.version === b.version;

/** `master:2`, `vault:3`: how a KEK is named in errors, the status route and docs. */
export const kekName = (ref: KekRef) => `${ref.provider}:${ref.version}`;

/** The Workers secret that holds master version `version`. */
export const masterSecretName = (version: number) => (version === 1 ? "MASTER_KEY" : `MASTER_KEY_${version}`);
