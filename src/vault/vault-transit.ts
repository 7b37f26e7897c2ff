/**
 * A client for HashiCorp Vault's Transit secrets engine HTTP API (developer.hashicorp.com/vault/api-docs/
 * secret/transit): read key, encrypt, decrypt and rewrap against one named key, authenticated by a token or
 * by AppRole login (developer.hashicorp.com/vault/api-docs/auth/approle).
 *
 * Keywarden wraps DEKs with a *derived* key (`derived: true`): Vault derives a per-request key from the key
 * version and the `context` (HKDF-SHA256), so a wrapped DEK only unwraps with the context it was wrapped
 * with (its tenant and DEK version). A non-derived key ignores `context`, and a DEK moved to another tenant's
 * row would still unwrap; `keyInfo().derived` lets the caller refuse such a key.
 *
 * Every call follows the outbound rule (threat model case 31): https only (checked in vault-config.ts), no
 * redirect followed, a timeout, a cap on what is read back. Errors are two classes a caller can act on:
 * - VaultUnavailable: Vault cannot answer now (network error, timeout, 5xx, 429, sealed, standby, an answer
 *   that is not Vault's documented one). The keyring reports sealed (503); retrying later may succeed.
 * - VaultRefused: Vault answered and said no (permission denied, unknown key, a ciphertext that does not
 *   decrypt under this key and context, a version below min_decryption_version). Retrying will not help.
 * No message ever carries a token, a secret id, a plaintext or a context; Vault's own error strings are
 * included only when they contain none of this request's inputs, and truncated.
 */
import { readCapped } from "../catalog/run-probe";
import { fromBase64, toBase64 } from "../crypto/encoding";
import type { VaultConfig } from "./vault-config";

export const VAULT_TIMEOUT_MS = 5_000;
/** Every answer used here is a small JSON document; nothing past this is buffered. */
export const MAX_VAULT_BODY_BYTES = 64 * 1024;
/** A cached AppRole token is replaced after this share of its lease, well before Vault expires it. */
export const TOKEN_REFRESH_FRACTION = 0.8;
const MAX_VAULT_ERROR_CHARS = 200;

export type VaultOperation = "login" | "keyInfo" | "encrypt" | "decrypt" | "rewrap";

export class VaultError extends Error {
  constructor(
    message: string,
    readonly operation: VaultOperation,
    readonly status?: number,
  ) {
    super(message);
    this.name = "VaultError";
  }
}

/** Vault could not be reached or cannot serve now: network, timeout, 5xx, 429, sealed, standby. */
export class VaultUnavailable extends VaultError {
  constructor(message: string, operation: VaultOperation, status?: number) {
    super(message, operation, status);
    this.name = "VaultUnavailable";
  }
}

/**
 * Why Vault refused, for the caller's mapping:
 * - `credentials`: the token or AppRole login was refused (403, or any refusal of the login itself);
 * - `unknown_key`: the Transit key does not exist (read key 404, "encryption key not found");
 * - `ciphertext`: this ciphertext does not decrypt under this key and context (tampered, wrong context,
 *   below min_decryption_version, newer than the key, not a Transit ciphertext at all);
 * - `request`: any other 4xx.
 */
export type VaultRefusal = "credentials" | "unknown_key" | "ciphertext" | "request";

/** Vault answered and refused: permission denied, unknown key, a ciphertext that fails to decrypt. */
export class VaultRefused extends VaultError {
  constructor(
    message: string,
    operation: VaultOperation,
    readonly reason: VaultRefusal,
    status?: number,
  ) {
    super(message, operation, status);
    this.name = "VaultRefused";
  }
}

export interface TransitKeyInfo {
  latestVersion: number;
  minDecryptionVersion: number;
  derived: boolean;
  type: string;
}

export interface TransitCiphertext {
  /** `vault:v<version>:<base64>`, stored as is. */
  ciphertext: string;
  version: number;
}

export interface VaultTransitOptions {
  /** Per request, login included. Default VAULT_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Clock for the AppRole token's lease (ms since the epoch). Default Date.now. */
  now?: () => number;
}

/** `vault:v<N>:<base64>`, the default version template of a Transit ciphertext. */
const CIPHERTEXT = /^vault:v([1-9][0-9]{0,8}):[A-Za-z0-9+/]+={0,2}$/;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function positiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
}

/**
 * Vault's `errors` strings, kept only when none of them contains one of this request's inputs (a Vault
 * behind a misbehaving proxy, or a future Vault, could echo a field), then truncated.
 */
export function vaultErrors(body: unknown, inputs: readonly string[]): string {
  if (!isObject(body) || !Array.isArray(body.errors)) return "";
  const strings = body.errors.filter((entry): entry is string => typeof entry === "string");
  const needles = inputs.filter((input) => input.length >= 4);
  if (strings.some((entry) => needles.some((needle) => entry.includes(needle)))) {
    return "(Vault's error text withheld: it repeats part of the request)";
  }
  const text = strings
    .join("; ")
    .replace(/\p{Cc}/gu, " ")
    .trim();
  return text.length > MAX_VAULT_ERROR_CHARS ? `${text.slice(0, MAX_VAULT_ERROR_CHARS - 1)}…` : text;
}

/** "encryption key not found" is the text Transit answers (400) when the named key does not exist. */
function refusal(operation: VaultOperation, status: number, body: unknown): VaultRefusal {
  if (operation === "login" || status === 401 || status === 403) return "credentials";
  const errors = isObject(body) && Array.isArray(body.errors) ? body.errors : [];
  if ((operation === "keyInfo" && status === 404) || errors.includes("encryption key not found")) {
    return "unknown_key";
  }
  if ((operation === "decrypt" || operation === "rewrap") && status === 400) return "ciphertext";
  return "request";
}

function describe(operation: VaultOperation, status: number, detail: string): string {
  return `Vault ${operation} answered ${status}${detail ? `: ${detail}` : ""}`;
}

/** An AppRole login in flight or done: its token once known, and when to log in again. */
interface Session {
  token: Promise<string>;
  value?: string;
  refreshAt: number;
}

interface Answer {
  status: number;
  body: unknown;
}

export class VaultTransit {
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private session: Session | undefined;

  constructor(
    private readonly config: VaultConfig,
    private readonly fetcher: typeof fetch = fetch,
    options: VaultTransitOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? VAULT_TIMEOUT_MS;
    this.now = options.now ?? Date.now;
  }

  /** The version in a Transit ciphertext's `vault:v<N>:` prefix. Throws a TypeError on anything else. */
  static versionOf(ciphertext: string): number {
    const match = CIPHERTEXT.exec(ciphertext);
    if (!match?.[1]) throw new TypeError("not a Vault Transit ciphertext (vault:v<N>:<base64>)");
    return Number(match[1]);
  }

  /** GET /v1/<mount>/keys/<name>: the key's versions, whether it is derived, and its type. */
  async keyInfo(): Promise<TransitKeyInfo> {
    const data = await this.transit("keyInfo", "GET", `keys/${this.keyPath()}`, undefined, []);
    const { latest_version, min_decryption_version, derived, type } = data;
    if (
      !positiveInteger(latest_version) ||
      !positiveInteger(min_decryption_version) ||
      typeof derived !== "boolean" ||
      typeof type !== "string"
    ) {
      throw new VaultUnavailable("Vault keyInfo answered without the documented key fields", "keyInfo", 200);
    }
    return { latestVersion: latest_version, minDecryptionVersion: min_decryption_version, derived, type };
  }

  /** POST /v1/<mount>/encrypt/<name>: wraps `plaintext` under the latest key version and `context`. */
  async encrypt(plaintext: Uint8Array, context: Uint8Array): Promise<TransitCiphertext> {
    const body = { plaintext: toBase64(plaintext), context: this.contextOf(context) };
    const data = await this.transit("encrypt", "POST", `encrypt/${this.keyPath()}`, body, [
      body.plaintext,
      body.context,
    ]);
    return this.ciphertextOf("encrypt", data);
  }

  /** POST /v1/<mount>/decrypt/<name>: the plaintext, if `ciphertext` was made under this key and `context`. */
  async decrypt(ciphertext: string, context: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    this.assertCiphertext("decrypt", ciphertext);
    const body = { ciphertext, context: this.contextOf(context) };
    const data = await this.transit("decrypt", "POST", `decrypt/${this.keyPath()}`, body, [body.context]);
    if (typeof data.plaintext !== "string") {
      throw new VaultUnavailable("Vault decrypt answered without data.plaintext", "decrypt", 200);
    }
    try {
      return fromBase64(data.plaintext);
    } catch {
      throw new VaultUnavailable("Vault decrypt answered a plaintext that is not base64", "decrypt", 200);
    }
  }

  /**
   * POST /v1/<mount>/rewrap/<name>: the same plaintext under the key's latest version, without it leaving
   * Vault. A derived key needs the same `context` the ciphertext was made with (Vault decrypts, then
   * encrypts again, with it).
   */
  async rewrap(ciphertext: string, context: Uint8Array): Promise<TransitCiphertext> {
    this.assertCiphertext("rewrap", ciphertext);
    const body = { ciphertext, context: this.contextOf(context) };
    const data = await this.transit("rewrap", "POST", `rewrap/${this.keyPath()}`, body, [body.context]);
    return this.ciphertextOf("rewrap", data);
  }

  /** A stored value that is not a Transit ciphertext is refused like one Vault cannot decrypt, unsent. */
  private assertCiphertext(operation: VaultOperation, ciphertext: string): void {
    if (!CIPHERTEXT.test(ciphertext)) {
      throw new VaultRefused(
        `Vault ${operation} not sent: the value is not a Transit ciphertext`,
        operation,
        "ciphertext",
      );
    }
  }

  private keyPath(): string {
    return encodeURIComponent(this.config.keyName);
  }

  private contextOf(context: Uint8Array): string {
    // A derived key refuses an empty context; failing here keeps the request from leaving at all.
    if (context.byteLength === 0) throw new TypeError("a Transit context must not be empty");
    return toBase64(context);
  }

  /** `data.ciphertext` and its version; `data.key_version` (Vault 1.11+) must agree with the prefix. */
  private ciphertextOf(operation: VaultOperation, data: Json): TransitCiphertext {
    const { ciphertext, key_version } = data;
    let version: number;
    try {
      version = VaultTransit.versionOf(typeof ciphertext === "string" ? ciphertext : "");
    } catch {
      throw new VaultUnavailable(`Vault ${operation} answered without a Transit ciphertext`, operation, 200);
    }
    if (key_version !== undefined && key_version !== version) {
      throw new VaultUnavailable(
        `Vault ${operation} answered a key_version its ciphertext does not carry`,
        operation,
        200,
      );
    }
    return { ciphertext: ciphertext as string, version };
  }

  /**
   * One Transit call with the current token. An AppRole token Vault no longer accepts (403: expired, revoked,
   * or its lease ended early) is replaced by one fresh login and the call is sent once more.
   */
  private async transit(
    operation: VaultOperation,
    method: "GET" | "POST",
    path: string,
    body: Json | undefined,
    inputs: readonly string[],
  ): Promise<Json> {
    const url = `${this.config.address}/v1/${this.config.transitMount}/${path}`;
    const { token, fresh } = await this.token();
    let answer = await this.send(operation, method, url, body, token);
    if (answer.status === 403 && this.config.auth.method === "approle" && !fresh) {
      if (this.session?.value === token) this.session = undefined;
      answer = await this.send(operation, method, url, body, (await this.token()).token);
    }
    if (answer.status >= 200 && answer.status < 300) {
      if (isObject(answer.body) && isObject(answer.body.data)) return answer.body.data;
      throw new VaultUnavailable(`Vault ${operation} answered ${answer.status} without data`, operation, 200);
    }
    return this.fail(operation, answer, [...inputs, ...this.secrets()]);
  }

  /**
   * The static token, or the AppRole session's: reused until TOKEN_REFRESH_FRACTION of its lease has
   * passed, and shared by concurrent calls while its login is in flight. `fresh` says this call logged in.
   */
  private async token(): Promise<{ token: string; fresh: boolean }> {
    const auth = this.config.auth;
    if (auth.method === "token") return { token: auth.token, fresh: false };
    const current = this.session;
    if (current && this.now() < current.refreshAt) return { token: await current.token, fresh: false };
    const session: Session = { token: Promise.resolve(""), refreshAt: Number.POSITIVE_INFINITY };
    session.token = this.login().then(
      ({ token, refreshAt }) => {
        session.value = token;
        session.refreshAt = refreshAt;
        return token;
      },
      (error: unknown) => {
        if (this.session === session) this.session = undefined;
        throw error;
      },
    );
    this.session = session;
    return { token: await session.token, fresh: true };
  }

  /** POST /v1/auth/<mount>/login {role_id, secret_id} -> auth.client_token, auth.lease_duration (s). */
  private async login(): Promise<{ token: string; refreshAt: number }> {
    const auth = this.config.auth;
    if (auth.method !== "approle") throw new TypeError("login is for AppRole only");
    const started = this.now();
    const url = `${this.config.address}/v1/auth/${auth.mount}/login`;
    const answer = await this.send("login", "POST", url, { role_id: auth.roleId, secret_id: auth.secretId });
    if (answer.status < 200 || answer.status >= 300) this.fail("login", answer, this.secrets());
    const session = isObject(answer.body) && isObject(answer.body.auth) ? answer.body.auth : undefined;
    const token = session?.client_token;
    const lease = session?.lease_duration;
    if (
      typeof token !== "string" ||
      !/^[\x21-\x7e]+$/.test(token) ||
      typeof lease !== "number" ||
      lease < 0
    ) {
      throw new VaultUnavailable("Vault login answered without auth.client_token", "login", answer.status);
    }
    // lease_duration 0 is a token without a TTL: kept until Vault refuses it.
    const refreshAt =
      lease === 0 ? Number.POSITIVE_INFINITY : started + lease * 1000 * TOKEN_REFRESH_FRACTION;
    return { token, refreshAt };
  }

  private secrets(): string[] {
    const auth = this.config.auth;
    return auth.method === "token" ? [auth.token] : [auth.roleId, auth.secretId];
  }

  private async send(
    operation: VaultOperation,
    method: "GET" | "POST",
    url: string,
    body: Json | undefined,
    token?: string,
  ): Promise<Answer> {
    const headers: Record<string, string> = { "X-Vault-Request": "true" };
    if (token !== undefined) headers["X-Vault-Token"] = token;
    if (this.config.namespace) headers["X-Vault-Namespace"] = this.config.namespace;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    // Called unbound: workerd refuses a `fetch` invoked as a method of another object.
    const doFetch = this.fetcher;
    let status: number;
    let text: string;
    try {
      const response = await doFetch(url, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        redirect: "manual",
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = response.status;
      text = await readCapped(response, MAX_VAULT_BODY_BYTES);
    } catch (error) {
      // The thrown error may quote the request (URL, headers); only its kind is kept.
      throw new VaultUnavailable(
        `Vault ${operation} did not answer (${isTimeout(error) ? "timeout" : "network error"})`,
        operation,
      );
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status, body: parsed };
  }

  /**
   * The error a non-2xx answer calls for. 3xx is a standby node pointing at the active one (never followed:
   * threat model case 31); 412 is a performance standby not yet caught up; 429 and 5xx are Vault busy,
   * sealed or without an active node. Every other 4xx is Vault refusing.
   */
  private fail(operation: VaultOperation, answer: Answer, inputs: readonly string[]): never {
    const { status, body } = answer;
    if (status >= 300 && status < 400) {
      throw new VaultUnavailable(
        `Vault ${operation} answered ${status} (a redirect, which is never followed: a standby node?)`,
        operation,
        status,
      );
    }
    const message = describe(operation, status, vaultErrors(body, inputs));
    if (status === 412 || status === 429 || status >= 500) {
      throw new VaultUnavailable(message, operation, status);
    }
    throw new VaultRefused(message, operation, refusal(operation, status, body), status);
  }
}
