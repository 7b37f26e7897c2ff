/**
 * An in-memory HashiCorp Vault for msw, faithful to the documented HTTP API of the Transit secrets engine
 * (developer.hashicorp.com/vault/api-docs/secret/transit) and AppRole login
 * (developer.hashicorp.com/vault/api-docs/auth/approle), and to what Vault's source answers
 * (builtin/logical/transit, sdk/helper/keysutil):
 * - one named aes256-gcm96 key with versions: `rotate()` adds one, `setMinDecryptionVersion(n)` refuses
 *   older ciphertexts ("ciphertext or signature version is disallowed by policy (too old)");
 * - real encryption: AES-256-GCM with a random 96-bit nonce, `vault:v<N>:base64(nonce | ciphertext | tag)`,
 *   under the version's key or, for a derived key, under HKDF-SHA256(key, salt = none, info = context), as
 *   keysutil's Kdf_hkdf_sha256 does. A wrong context or a flipped bit fails as Vault fails: 400
 *   {"errors":["cipher: message authentication failed"]}. A derived key without a context is 400; a
 *   non-derived key ignores the context, as Vault does;
 * - read key (GET keys/:name) with `latest_version`, `min_decryption_version`, `derived`, `type`; encrypt
 *   and rewrap answer `ciphertext` and `key_version`; decrypt answers base64 `plaintext`;
 * - X-Vault-Token checked on every request (403 {"errors":["permission denied"]}), X-Vault-Namespace when
 *   the stand-in has a namespace, AppRole login issuing tokens with a lease; `expireTokens()` ends every
 *   issued token, as a TTL running out or a revocation would;
 * - `seal()`: every request is 503 {"errors":["Vault is sealed"]}; `goUnreachable()`: every request fails
 *   at the network level; `faults.next(operation, fault)` shapes one answer (see common.ts). The HTTP layer
 *   (all but the engine's routes, token check and answers) is ./vault-stand-in.ts, shared with the KV stand-in.
 */
import { BASE62, type MswRequest, randomFrom } from "../lifecycle/stand-ins/common";
import { VAULT_HTTP_MESSAGES, VaultStandIn, vaultEnvelope, vaultError } from "./vault-stand-in";

export type TransitOperation = "login" | "keyInfo" | "encrypt" | "decrypt" | "rewrap";

export interface TransitStandInOptions {
  /** https://host[:port], as VAULT_ADDR. */
  addr: string;
  /** A static token Vault accepts. */
  token?: string;
  /** An AppRole the stand-in knows. */
  roleId?: string;
  secretId?: string;
  /** Default "approle". */
  approleMount?: string;
  /** Default "keywarden". */
  keyName?: string;
  /** Default "transit". */
  mount?: string;
  /** When set, every request must carry X-Vault-Namespace with this value. */
  namespace?: string;
  /** Default true: the key Keywarden requires. */
  derived?: boolean;
  /** The lease of a token AppRole login issues, in seconds. Default 3600. */
  leaseSeconds?: number;
}

/** Vault's keysutil messages, verbatim. */
export const VAULT_MESSAGES = {
  ...VAULT_HTTP_MESSAGES,
  keyNotFound: "encryption key not found",
  authFailed: "cipher: message authentication failed",
  tooOld: "ciphertext or signature version is disallowed by policy (too old)",
  tooNew: "invalid ciphertext: version is too new",
  noPrefix: "invalid ciphertext: no prefix",
  wrongFields: "invalid ciphertext: wrong number of fields",
  badVersion: "invalid ciphertext: version number could not be decoded",
  badBase64: "invalid ciphertext: could not decode base64",
  badLength: "invalid ciphertext length",
  missingContext:
    "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key",
  missingPlaintext: "missing plaintext to encrypt",
  missingCiphertext: "missing ciphertext to decrypt",
  invalidLogin: "invalid role or secret ID",
  missingRoleId: "missing role_id",
} as const;

const NONCE_BYTES = 12;

function vaultData(data: Record<string, unknown>): Response {
  return vaultEnvelope({ data });
}

/** Go's base64.StdEncoding.DecodeString: padded standard alphabet, or null. */
function decodeBase64(text: string): Uint8Array<ArrayBuffer> | null {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return null;
  const binary = atob(text);
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

const TRANSIT_OPERATIONS: readonly TransitOperation[] = ["login", "keyInfo", "encrypt", "decrypt", "rewrap"];

interface TransitRoute {
  operation: TransitOperation;
  keyName?: string;
}

export class TransitStandIn extends VaultStandIn<TransitOperation, TransitRoute> {
  readonly keyName: string;
  readonly mount: string;
  readonly approleMount: string;
  readonly derived: boolean;
  private readonly versions = new Map<number, Uint8Array<ArrayBuffer>>();
  private minDecryptionVersion = 1;
  private readonly issuedTokens = new Set<string>();

  constructor(private readonly options: TransitStandInOptions) {
    super(options.addr, options.namespace);
    this.keyName = options.keyName ?? "keywarden";
    this.mount = options.mount ?? "transit";
    this.approleMount = options.approleMount ?? "approle";
    this.derived = options.derived ?? true;
    this.addVersion();
  }

  /** Requests per operation that reached the stand-in (an unreachable Vault receives none). */
  get counts(): Record<TransitOperation, number> {
    return Object.fromEntries(
      TRANSIT_OPERATIONS.map((operation) => [operation, this.count(operation)]),
    ) as Record<TransitOperation, number>;
  }

  get latestVersion(): number {
    return this.versions.size;
  }

  /** POST transit/keys/:name/rotate: a new version, which new encryptions and rewraps use. */
  rotate(): number {
    this.addVersion();
    return this.latestVersion;
  }

  /** POST transit/keys/:name/config {min_decryption_version}: older ciphertexts no longer decrypt. */
  setMinDecryptionVersion(version: number): void {
    if (!Number.isInteger(version) || version < 1 || version > this.latestVersion) {
      throw new RangeError(`min_decryption_version must be 1..${this.latestVersion}`);
    }
    this.minDecryptionVersion = version;
  }

  /** Every token AppRole login issued stops working (TTL reached, or revoked). */
  expireTokens(): void {
    this.issuedTokens.clear();
  }

  private addVersion(): void {
    this.versions.set(this.versions.size + 1, crypto.getRandomValues(new Uint8Array(32)));
  }

  protected authorized(route: TransitRoute, request: MswRequest): boolean {
    return route.operation === "login" || this.tokenAccepted(request.headers.get("x-vault-token"));
  }

  protected async answer(route: TransitRoute, request: MswRequest): Promise<Response> {
    let body: Record<string, unknown> = {};
    if (request.method !== "GET") {
      try {
        const parsed: unknown = JSON.parse(new TextDecoder().decode(await request.clone().arrayBuffer()));
        if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
          body = parsed as Record<string, unknown>;
        }
      } catch {
        return vaultError(400, "failed to parse JSON input");
      }
    }
    if (route.operation === "login") return this.login(body);
    if (route.keyName !== this.keyName) {
      return route.operation === "keyInfo" ? vaultError(404) : vaultError(400, VAULT_MESSAGES.keyNotFound);
    }
    switch (route.operation) {
      case "keyInfo":
        return this.readKey();
      case "encrypt":
        return this.encryptRoute(body);
      case "decrypt":
        return this.decryptRoute(body);
      case "rewrap":
        return this.rewrapRoute(body);
    }
  }

  protected route(method: string, url: URL): TransitRoute | null {
    const path = url.pathname;
    if (method === "POST" && path === `/v1/auth/${this.approleMount}/login`) return { operation: "login" };
    const prefix = `/v1/${this.mount}/`;
    if (!path.startsWith(prefix)) return null;
    const match = /^(keys|encrypt|decrypt|rewrap)\/([^/]+)$/.exec(path.slice(prefix.length));
    if (!match?.[1] || !match[2]) return null;
    const keyName = decodeURIComponent(match[2]);
    if (match[1] === "keys") return method === "GET" ? { operation: "keyInfo", keyName } : null;
    return method === "POST" || method === "PUT"
      ? { operation: match[1] as "encrypt" | "decrypt" | "rewrap", keyName }
      : null;
  }

  private tokenAccepted(token: string | null): boolean {
    if (!token) return false;
    return token === this.options.token || this.issuedTokens.has(token);
  }

  private login(body: Record<string, unknown>): Response {
    const roleId = typeof body.role_id === "string" ? body.role_id : "";
    const secretId = typeof body.secret_id === "string" ? body.secret_id : "";
    if (!roleId) return vaultError(400, VAULT_MESSAGES.missingRoleId);
    if (!this.options.roleId || roleId !== this.options.roleId || secretId !== this.options.secretId) {
      return vaultError(400, VAULT_MESSAGES.invalidLogin);
    }
    const token = `hvs.${randomFrom(BASE62, 24)}`;
    this.issuedTokens.add(token);
    const lease = this.options.leaseSeconds ?? 3600;
    return vaultEnvelope({
      data: null,
      auth: {
        client_token: token,
        accessor: randomFrom(BASE62, 24),
        policies: ["default", "keywarden-transit"],
        token_policies: ["default", "keywarden-transit"],
        metadata: { role_name: "keywarden" },
        lease_duration: lease,
        renewable: true,
        entity_id: crypto.randomUUID(),
        token_type: "service",
        orphan: true,
      },
    });
  }

  private readKey(): Response {
    const keys: Record<string, number> = {};
    for (let version = this.minDecryptionVersion; version <= this.latestVersion; version++) {
      keys[String(version)] = 1_767_225_600 + version;
    }
    return vaultData({
      name: this.keyName,
      type: "aes256-gcm96",
      derived: this.derived,
      ...(this.derived ? { kdf: "hkdf_sha256", convergent_encryption: false } : {}),
      deletion_allowed: false,
      exportable: false,
      allow_plaintext_backup: false,
      keys,
      latest_version: this.latestVersion,
      min_available_version: 0,
      min_decryption_version: this.minDecryptionVersion,
      min_encryption_version: 0,
      supports_encryption: true,
      supports_decryption: true,
      supports_derivation: true,
      supports_signing: false,
      auto_rotate_period: 0,
      imported_key: false,
    });
  }

  private context(body: Record<string, unknown>): Uint8Array<ArrayBuffer> | Response {
    const raw = typeof body.context === "string" ? body.context : "";
    if (!this.derived) return new Uint8Array();
    if (raw === "") return vaultError(400, VAULT_MESSAGES.missingContext);
    return decodeBase64(raw) ?? vaultError(400, "illegal base64 data at input byte 0");
  }

  /** The version's key, or (derived) HKDF-SHA256 of it with the context as info and no salt. */
  private async keyFor(version: number, context: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
    const root = this.versions.get(version);
    if (!root) throw new Error(`no key version ${version}`);
    if (!this.derived) return crypto.subtle.importKey("raw", root, "AES-GCM", false, ["encrypt", "decrypt"]);
    const base = await crypto.subtle.importKey("raw", root, "HKDF", false, ["deriveKey"]);
    return crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info: context },
      base,
      { name: "AES-GCM", length: 256 },
      false,
      ["encrypt", "decrypt"],
    );
  }

  private async sealUnderLatest(plaintext: Uint8Array<ArrayBuffer>, context: Uint8Array<ArrayBuffer>) {
    const version = this.latestVersion;
    const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    const sealed = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv: nonce },
        await this.keyFor(version, context),
        plaintext,
      ),
    );
    const blob = new Uint8Array(NONCE_BYTES + sealed.byteLength);
    blob.set(nonce);
    blob.set(sealed, NONCE_BYTES);
    return { ciphertext: `vault:v${version}:${encodeBase64(blob)}`, key_version: version };
  }

  /** keysutil Policy.Decrypt, check for check. */
  private async open(
    ciphertext: string,
    body: Record<string, unknown>,
  ): Promise<{ plaintext: Uint8Array<ArrayBuffer>; context: Uint8Array<ArrayBuffer> } | Response> {
    if (!ciphertext.startsWith("vault:v")) return vaultError(400, VAULT_MESSAGES.noPrefix);
    const fields = ciphertext.slice("vault:v".length).split(":");
    if (fields.length !== 2) return vaultError(400, VAULT_MESSAGES.wrongFields);
    const [versionText = "", payload = ""] = fields;
    if (!/^[0-9]+$/.test(versionText)) return vaultError(400, VAULT_MESSAGES.badVersion);
    const version = Math.max(Number(versionText), 1);
    if (version > this.latestVersion) return vaultError(400, VAULT_MESSAGES.tooNew);
    if (version < this.minDecryptionVersion) return vaultError(400, VAULT_MESSAGES.tooOld);
    const blob = decodeBase64(payload);
    if (!blob) return vaultError(400, VAULT_MESSAGES.badBase64);
    if (blob.byteLength < NONCE_BYTES) return vaultError(400, VAULT_MESSAGES.badLength);
    // As in keysutil, the derived key (and so the context check) comes after the ciphertext is parsed.
    const context = this.context(body);
    if (context instanceof Response) return context;
    try {
      const key = await this.keyFor(version, context);
      const iv = blob.slice(0, NONCE_BYTES);
      return {
        plaintext: new Uint8Array(
          await crypto.subtle.decrypt({ name: "AES-GCM", iv }, key, blob.slice(NONCE_BYTES)),
        ),
        context,
      };
    } catch {
      return vaultError(400, VAULT_MESSAGES.authFailed);
    }
  }

  private async encryptRoute(body: Record<string, unknown>): Promise<Response> {
    const encoded = typeof body.plaintext === "string" ? body.plaintext : undefined;
    if (encoded === undefined) return vaultError(400, VAULT_MESSAGES.missingPlaintext);
    const plaintext = decodeBase64(encoded);
    if (!plaintext) return vaultError(400, "illegal base64 data at input byte 0");
    const context = this.context(body);
    if (context instanceof Response) return context;
    return vaultData(await this.sealUnderLatest(plaintext, context));
  }

  private async decryptRoute(body: Record<string, unknown>): Promise<Response> {
    const ciphertext = typeof body.ciphertext === "string" ? body.ciphertext : "";
    if (!ciphertext) return vaultError(400, VAULT_MESSAGES.missingCiphertext);
    const opened = await this.open(ciphertext, body);
    if (opened instanceof Response) return opened;
    return vaultData({ plaintext: encodeBase64(opened.plaintext) });
  }

  private async rewrapRoute(body: Record<string, unknown>): Promise<Response> {
    const ciphertext = typeof body.ciphertext === "string" ? body.ciphertext : "";
    if (!ciphertext) return vaultError(400, VAULT_MESSAGES.missingCiphertext);
    const opened = await this.open(ciphertext, body);
    if (opened instanceof Response) return opened;
    return vaultData(await this.sealUnderLatest(opened.plaintext, opened.context));
  }
}

export function createTransitStandIn(options: TransitStandInOptions): TransitStandIn {
  return new TransitStandIn(options);
}
