import { sql } from "drizzle-orm";
import { bytesEqual } from "../crypto/constant-time";
import { utf8 } from "../crypto/encoding";
import { importMasterKey, keyCheckValue } from "../crypto/envelope";
import type { Database } from "../db/client";
import { ApiError } from "../errors";
import { forgetDataKeys } from "./data-keys";
import { type KekConfig, type KeyringEnv, kekConfigFrom, kekFingerprint } from "./kek-config";
import { type KekRef, masterSecretName } from "./kek-ref";
import { KeyEncryption } from "./key-encryption";
import { MasterKeks } from "./master-keks";
import { VaultKeks, vaultCall } from "./vault-keks";
import { VaultTransit } from "./vault-transit";

/** The opened keyring: every KEK this deployment can use, and where new keys are wrapped. */
export interface Unsealed {
  keks: KeyEncryption;
}

let unsealed: { fingerprint: string; value: Promise<Unsealed> } | undefined;

/**
 * Opens the keyring once per isolate and configuration. Fails closed, as Vault does: a missing or wrong
 * master secret, a secret removed while a stored key still depends on it, or an unreachable Vault seals the
 * service (503 SEALED) instead of creating new keys. See docs/storage.md for the rotation procedure.
 */
export function unseal(env: KeyringEnv, db: Database): Promise<Unsealed> {
  let config: KekConfig;
  try {
    config = kekConfigFrom(env);
  } catch (error) {
    return Promise.reject(error);
  }
  const fingerprint = kekFingerprint(config);
  if (unsealed?.fingerprint !== fingerprint) {
    const value = openKeyring(config, db);
    unsealed = { fingerprint, value };
    value.catch(() => {
      if (unsealed?.value === value) unsealed = undefined;
    });
  }
  return unsealed.value;
}

/** Test hook and isolate hygiene: forget the unsealed keyring and every cached key. */
export function forgetKeys(): void {
  unsealed = undefined;
  forgetDataKeys();
}

interface KeyringRow {
  version: number;
  check_value: string;
  /** Whether any data key or system key is wrapped under this master version. */
  in_use: number;
}

async function openKeyring(config: KekConfig, db: Database): Promise<Unsealed> {
  const roots = new Map<number, CryptoKey>();
  for (const [version, secret] of config.masterSecrets) {
    try {
      roots.set(version, await importMasterKey(secret));
    } catch {
      throw new ApiError("SEALED", `The master key ${masterSecretName(version)} is malformed.`);
    }
  }
  const checkValues = new Map<number, string>();
  for (const [version, root] of roots) checkValues.set(version, await keyCheckValue(root, version));

  let vaultOpened: Promise<VaultKeks> | undefined;
  const vaultKeks = () => {
    if (!vaultOpened) {
      const opening = openVault(config);
      vaultOpened = opening;
      // An outage is not remembered: the next use tries Vault again.
      opening.catch(() => {
        if (vaultOpened === opening) vaultOpened = undefined;
      });
    }
    return vaultOpened;
  };
  let state = await readKeyringState(db);
  // Every recorded version must match its secret when present, and be present while anything depends on it.
  for (const row of state.rows) {
    const expected = checkValues.get(row.version);
    if (expected !== undefined && !matches(row.check_value, expected))
      throw new ApiError(
        "SEALED",
        `The master key does not match the stored key-check value (${masterSecretName(row.version)}).`,
      );
    if (expected === undefined && row.in_use)
      throw new ApiError(
        "SEALED",
        `${masterSecretName(row.version)} was removed while stored keys still depend on it. Set it again, ` +
          "and remove it only when GET /api/v1/keyring/status shows it removable.",
      );
  }
  const verified = state.rows.filter((row) => checkValues.has(row.version)).map((row) => row.version);

  const current = config.provider === "master" ? config.masterVersion : null;
  if (current !== null && !verified.includes(current)) {
    // A new master version is recorded only by someone who holds the keys already in use: on an empty
    // database, or with another recorded version's secret present and verified, or with Vault reachable for
    // the data keys Vault wraps. A wrong key on a populated database can never adopt itself.
    const provenByVault =
      state.vaultInUse &&
      config.vault !== null &&
      (await vaultKeks().then(
        () => true,
        () => false,
      ));
    await db.run(
      verified.length > 0 || provenByVault
        ? sql`INSERT OR IGNORE INTO keyring (kek_version, check_value, created_at)
              VALUES (${current}, ${checkValues.get(current)}, ${Date.now()})`
        : sql`INSERT OR IGNORE INTO keyring (kek_version, check_value, created_at)
              SELECT ${current}, ${checkValues.get(current)}, ${Date.now()}
              WHERE NOT EXISTS (SELECT 1 FROM data_keys) AND NOT EXISTS (SELECT 1 FROM keyring)`,
    );
    state = await readKeyringState(db);
    const recorded = state.rows.find((row) => row.version === current);
    if (!recorded || !matches(recorded.check_value, checkValues.get(current)))
      throw new ApiError("SEALED", "The master key does not match the stored key-check values.");
    verified.push(current);
  }

  // Vault is contacted at once when it wraps new keys or holds existing ones (unreachable: sealed), else on
  // first use: an isolate that opened before the switch to Vault still reads keys the re-wrap moved there.
  const vault = config.provider === "vault" || state.vaultInUse ? await vaultKeks() : null;
  const target: KekRef =
    config.provider === "vault" && vault
      ? { provider: "vault", version: vault.latestVersion }
      : { provider: "master", version: config.masterVersion };
  const verifyLater = async (version: number) => {
    const expected = checkValues.get(version);
    if (expected === undefined) return false;
    const row = await db.get<{ check_value: string }>(
      sql`SELECT check_value FROM keyring WHERE kek_version = ${version}`,
    );
    return row !== undefined && matches(row.check_value, expected);
  };
  return {
    keks: new KeyEncryption(
      target,
      new MasterKeks(roots, verified, verifyLater),
      config.vault ? vaultKeks : null,
    ),
  };
}

const matches = (stored: string, expected: string | undefined) =>
  expected !== undefined && bytesEqual(utf8(stored), utf8(expected));

/** One round trip: the recorded master versions and what depends on each, and whether Vault wraps anything. */
async function readKeyringState(db: Database): Promise<{ rows: KeyringRow[]; vaultInUse: boolean }> {
  const usesMaster = (table: string) =>
    `EXISTS (SELECT 1 FROM ${table} WHERE kek_provider = 'master' AND kek_version = k.kek_version)`;
  const [rows, vault] = await db.batch([
    db.all<KeyringRow>(
      sql.raw(
        `SELECT k.kek_version AS version, k.check_value,
                (${usesMaster("data_keys")} OR ${usesMaster("system_keys")}) AS in_use
         FROM keyring k ORDER BY k.kek_version`,
      ),
    ),
    db.all<{ in_use: number }>(
      sql.raw(
        `SELECT (EXISTS (SELECT 1 FROM data_keys WHERE kek_provider = 'vault')
                 OR EXISTS (SELECT 1 FROM system_keys WHERE kek_provider = 'vault')) AS in_use`,
      ),
    ),
  ]);
  return { rows, vaultInUse: Boolean(vault[0]?.in_use) };
}

/** Vault's Transit key as it stands now; unreachable, refusing or not a derived key, it seals. */
async function openVault(config: KekConfig): Promise<VaultKeks> {
  if (!config.vault)
    throw new ApiError("SEALED", "Keys are wrapped by Vault Transit but VAULT_ADDR is not set.");
  const transit = new VaultTransit(config.vault);
  const info = await vaultCall(() => transit.keyInfo());
  if (!info.derived)
    throw new ApiError("SEALED", "The Vault Transit key must be a derived key (created with derived=true).");
  return new VaultKeks(transit, info.latestVersion);
}
