/**
 * A read-only client for HashiCorp Vault's KV secrets engine, version 2 (developer.hashicorp.com/vault/api-
 * docs/secret/kv/kv-v2): read a secret version (`GET /v1/<mount>/data/<path>[?version=N]`) and list a folder
 * (`LIST /v1/<mount>/metadata/<path>`, sent as `GET …?list=true`, the form Vault's HTTP API documents for
 * clients that cannot send the LIST verb, as a Worker's fetch cannot).
 *
 * Every call follows the outbound rule (threat model case 31): the address has passed the SSRF guard
 * (vault-kv-import.ts), no redirect is followed, each request has a timeout, and at most
 * MAX_VAULT_KV_BODY_BYTES of an answer is read. The token travels only in X-Vault-Token; no error message
 * carries it, a secret's path or a value, and Vault's own error text is kept only when it repeats none of
 * the request's inputs (`vaultErrors`, shared with the Transit client).
 */
import { readCapped } from "../catalog/run-probe";
import { vaultErrors } from "../vault/vault-transit";

export const VAULT_KV_TIMEOUT_MS = 5_000;
/** A credential set is a few short strings; anything larger than this is not one (and is not buffered). */
export const MAX_VAULT_KV_BODY_BYTES = 64 * 1024;

/**
 * What went wrong, for the import's mapping:
 * - `unavailable`: no answer, a timeout, a redirect, 412/429/5xx, or an answer not shaped as documented;
 * - `sealed`: 503 "Vault is sealed";
 * - `denied`: 401/403, the token may not read this path (Vault's ACLs are per path);
 * - `not_found`: 404, no secret (or no such version, or an empty folder);
 * - `deleted`: 404 with the version's metadata: soft-deleted (`deletion_time` passed) or destroyed;
 * - `refused`: any other 4xx.
 */
export type VaultKvFailure = "unavailable" | "sealed" | "denied" | "not_found" | "deleted" | "refused";

export class VaultKvError extends Error {
  constructor(
    readonly failure: VaultKvFailure,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = "VaultKvError";
  }
}

export interface VaultKvSource {
  /** `https://host[:port]`, already checked by the outbound guard. */
  address: string;
  token: string;
  namespace?: string;
  /** Where the KV v2 engine is mounted, e.g. `secret` or `team/kv`. */
  mount: string;
}

export interface VaultSecret {
  data: Record<string, unknown>;
  version: number;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Each segment percent-encoded: a path can never leave `<mount>/data/` (dot segments are refused earlier). */
export function encodeVaultPath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

export class VaultKvClient {
  constructor(
    private readonly source: VaultKvSource,
    private readonly fetcher: typeof fetch = fetch,
    private readonly timeoutMs = VAULT_KV_TIMEOUT_MS,
  ) {}

  /** The secret's data at its latest version, or at `version`. */
  async read(path: string, version?: number): Promise<VaultSecret> {
    const query = version === undefined ? "" : `?version=${version}`;
    const body = await this.get(`data/${encodeVaultPath(path)}${query}`);
    const data = isObject(body.data) ? body.data : undefined;
    const metadata = isObject(data?.metadata) ? data.metadata : undefined;
    if (!data || !isObject(data.data) || typeof metadata?.version !== "number") {
      throw new VaultKvError(
        "unavailable",
        "Vault answered a read without data.data and data.metadata.version",
      );
    }
    return { data: data.data, version: metadata.version };
  }

  /** The names in a folder; sub-folders end with `/`. `folder` is "" for the mount's top level. */
  async list(folder: string): Promise<string[]> {
    const body = await this.get(`metadata/${encodeVaultPath(folder)}?list=true`);
    const keys = isObject(body.data) ? body.data.keys : undefined;
    if (!Array.isArray(keys) || !keys.every((key): key is string => typeof key === "string")) {
      throw new VaultKvError("unavailable", "Vault answered a list without data.keys");
    }
    return keys;
  }

  private async get(path: string): Promise<Json> {
    const { address, token, namespace, mount } = this.source;
    const headers: Record<string, string> = { "X-Vault-Token": token, "X-Vault-Request": "true" };
    if (namespace) headers["X-Vault-Namespace"] = namespace;
    // Called unbound: workerd refuses a `fetch` invoked as a method of another object.
    const doFetch = this.fetcher;
    let status: number;
    let text: string;
    try {
      const response = await doFetch(`${address}/v1/${encodeVaultPath(mount)}/${path}`, {
        method: "GET",
        headers,
        redirect: "manual",
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = response.status;
      text = await readCapped(response, MAX_VAULT_KV_BODY_BYTES);
    } catch (error) {
      // The thrown error may quote the request (URL, headers): only its kind is kept.
      const timeout =
        error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
      throw new VaultKvError(
        "unavailable",
        `Vault did not answer (${timeout ? "timeout" : "network error"})`,
      );
    }
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (status >= 200 && status < 300) {
      if (isObject(body)) return body;
      throw new VaultKvError(
        "unavailable",
        `Vault answered ${status} with a body that is not its JSON (or is over 64 KiB)`,
        status,
      );
    }
    return this.fail(status, body);
  }

  /**
   * The error a non-2xx answer calls for. 3xx is a standby node pointing elsewhere (never followed: threat
   * model case 31); 412 a performance standby behind; 429 and 5xx busy, sealed or without an active node.
   */
  private fail(status: number, body: unknown): never {
    if (status >= 300 && status < 400) {
      throw new VaultKvError(
        "unavailable",
        `Vault answered ${status}, a redirect, which is never followed`,
        status,
      );
    }
    const detail = vaultErrors(body, [this.source.token]);
    const message = `Vault answered ${status}${detail ? `: ${detail}` : ""}`;
    if (status === 503 && detail.includes("Vault is sealed"))
      throw new VaultKvError("sealed", message, status);
    if (status === 412 || status === 429 || status >= 500)
      throw new VaultKvError("unavailable", message, status);
    if (status === 401 || status === 403) throw new VaultKvError("denied", message, status);
    if (status === 404) {
      // A deleted or destroyed version answers 404 with its metadata (the KV plugin's pathDataRead).
      const metadata = isObject(body) && isObject(body.data) ? body.data.metadata : undefined;
      const gone =
        isObject(metadata) &&
        ((typeof metadata.deletion_time === "string" && metadata.deletion_time !== "") ||
          metadata.destroyed === true);
      throw new VaultKvError(gone ? "deleted" : "not_found", message, status);
    }
    throw new VaultKvError("refused", message, status);
  }
}
