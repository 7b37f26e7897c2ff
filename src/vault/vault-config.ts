/**
 * HashiCorp Vault Transit as a KEK provider: its settings, read from the Worker's environment.
 *
 * VAULT_ADDR, VAULT_NAMESPACE, VAULT_TRANSIT_MOUNT, VAULT_TRANSIT_KEY and VAULT_APPROLE_MOUNT are plain vars;
 * VAULT_TOKEN and VAULT_SECRET_ID (and VAULT_ROLE_ID) are secrets (`wrangler secret put`). No error raised
 * here ever carries a value read from the environment: the address may hold userinfo, and the rest are
 * credentials.
 */
import { ApiError } from "../errors";
import { assertDeliverableUrl } from "../monitoring/outbound-url";

export const VAULT_ENV_NAMES = [
  "VAULT_ADDR",
  "VAULT_TOKEN",
  "VAULT_ROLE_ID",
  "VAULT_SECRET_ID",
  "VAULT_APPROLE_MOUNT",
  "VAULT_NAMESPACE",
  "VAULT_TRANSIT_MOUNT",
  "VAULT_TRANSIT_KEY",
] as const;

export type VaultEnvName = (typeof VAULT_ENV_NAMES)[number];

/** The environment as this module reads it; independent of the generated `Env` types. */
export type VaultEnv = Partial<Record<VaultEnvName, string>>;

export type VaultAuth =
  | { method: "token"; token: string }
  | { method: "approle"; roleId: string; secretId: string; mount: string };

export interface VaultConfig {
  /** `https://host[:port]`, no trailing slash: requests go to `${address}/v1/...`. */
  address: string;
  auth: VaultAuth;
  /** Sent as X-Vault-Namespace (Vault Enterprise / HCP) when set. */
  namespace?: string;
  /** Where the Transit engine is mounted, e.g. `transit` or `kms/transit`. */
  transitMount: string;
  /** The Transit key's name. */
  keyName: string;
}

export const DEFAULT_TRANSIT_MOUNT = "transit";
export const DEFAULT_TRANSIT_KEY = "keywarden";
export const DEFAULT_APPROLE_MOUNT = "approle";

/** A mount path: one or more segments of Vault's path characters, joined by `/`. */
export const MOUNT = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;
/** Vault's `framework.GenericNameRegex`: a word character at each end, `[\w.@-]` between. */
const KEY_NAME = /^\w([\w.@-]*\w)?$/;
/** A namespace path such as `admin` or `admin/team-a`. */
export const NAMESPACE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;
/** Token, role id and secret id travel in headers or JSON: visible ASCII only, so none can split a header. */
export const CREDENTIAL = /^[\x21-\x7e]+$/;

function present(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

/**
 * A Vault address: the outbound-call rule every other outbound call follows (threat model case 31: https
 * on port 443 or 8443, no userinfo, no literal loopback, private, link-local or metadata address), and no
 * path, query or fragment (a trailing slash is tolerated). Returns the origin; VALIDATION_FAILED names
 * `path`, never the value. Used for VAULT_ADDR and for the address of a Vault KV import.
 */
export function vaultOrigin(raw: string, path: string): string {
  let url: URL;
  try {
    url = assertDeliverableUrl(raw, false, path);
  } catch (error) {
    const reason =
      error instanceof ApiError ? (error.extras.errors?.[0]?.message ?? "is refused") : "is refused";
    throw new ApiError(
      "VALIDATION_FAILED",
      `${path} ${reason} (Vault must be reached at https://<public host>[:8443]).`,
      { errors: [{ path, message: reason }] },
    );
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) {
    const reason = "must be an origin only (https://host[:port]), with no path or query";
    throw new ApiError("VALIDATION_FAILED", `${path} ${reason}.`, { errors: [{ path, message: reason }] });
  }
  return url.origin;
}

function vaultAddress(raw: string): string {
  try {
    return vaultOrigin(raw, "VAULT_ADDR");
  } catch (error) {
    throw new TypeError(error instanceof ApiError ? error.detail : "VAULT_ADDR is refused.");
  }
}

function credential(name: VaultEnvName, value: string): string {
  if (!CREDENTIAL.test(value))
    throw new TypeError(`${name} contains characters a Vault credential never has.`);
  return value;
}

function mountPath(name: VaultEnvName, raw: string | undefined, fallback: string): string {
  const mount = (present(raw) ?? fallback).replace(/^\/+|\/+$/g, "");
  if (!MOUNT.test(mount) || mount.split("/").some((segment) => segment === "." || segment === "..")) {
    throw new TypeError(`${name} must be a Vault mount path such as "${fallback}".`);
  }
  return mount;
}

function vaultAuth(env: VaultEnv): VaultAuth {
  const token = present(env.VAULT_TOKEN);
  const roleId = present(env.VAULT_ROLE_ID);
  const secretId = present(env.VAULT_SECRET_ID);
  if (token && (roleId || secretId)) {
    throw new TypeError("Set either VAULT_TOKEN or VAULT_ROLE_ID with VAULT_SECRET_ID, not both.");
  }
  if (token) return { method: "token", token: credential("VAULT_TOKEN", token) };
  if (roleId && secretId) {
    return {
      method: "approle",
      roleId: credential("VAULT_ROLE_ID", roleId),
      secretId: credential("VAULT_SECRET_ID", secretId),
      mount: mountPath("VAULT_APPROLE_MOUNT", env.VAULT_APPROLE_MOUNT, DEFAULT_APPROLE_MOUNT),
    };
  }
  if (roleId || secretId) {
    throw new TypeError("AppRole needs both VAULT_ROLE_ID and VAULT_SECRET_ID; one of them is missing.");
  }
  throw new TypeError(
    "VAULT_ADDR is set but no Vault credential is: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID.",
  );
}

/**
 * The Vault settings, or null when VAULT_ADDR is unset or empty (Vault not configured). Throws a TypeError
 * naming the setting at fault when Vault is configured wrongly: an address that is not https (or breaks the
 * outbound-call rule), no credential, half an AppRole, or a malformed mount, key or namespace.
 */
export function vaultConfigFrom(env: VaultEnv): VaultConfig | null {
  const addr = present(env.VAULT_ADDR);
  if (!addr) return null;
  const address = vaultAddress(addr);
  const auth = vaultAuth(env);
  const transitMount = mountPath("VAULT_TRANSIT_MOUNT", env.VAULT_TRANSIT_MOUNT, DEFAULT_TRANSIT_MOUNT);
  const keyName = present(env.VAULT_TRANSIT_KEY) ?? DEFAULT_TRANSIT_KEY;
  if (!KEY_NAME.test(keyName)) {
    throw new TypeError("VAULT_TRANSIT_KEY must be a Vault key name (letters, digits, _ . @ -).");
  }
  const namespace = present(env.VAULT_NAMESPACE)?.replace(/^\/+|\/+$/g, "");
  if (namespace !== undefined && !NAMESPACE.test(namespace)) {
    throw new TypeError("VAULT_NAMESPACE must be a Vault namespace path such as admin or admin/team.");
  }
  return { address, auth, ...(namespace ? { namespace } : {}), transitMount, keyName };
}
