/**
 * The Vault Transit client (src/vault/vault-transit.ts) and its configuration (src/vault/vault-config.ts),
 * against the in-memory Vault of transit-stand-in.ts: real AES-GCM under per-version keys derived from the
 * context, Vault's documented answers and error texts.
 */
import { HttpResponse } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { toBase64, utf8 } from "../../src/crypto/encoding";
import { type VaultConfig, vaultConfigFrom } from "../../src/vault/vault-config";
import {
  VaultError,
  VaultRefused,
  VaultTransit,
  type VaultTransitOptions,
  VaultUnavailable,
} from "../../src/vault/vault-transit";
import { network } from "../setup/network";
import { createTransitStandIn, type TransitStandIn, type TransitStandInOptions } from "./transit-stand-in";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const ADDR = "https://vault.test:8443";
const TOKEN = "hvs.CAESIStaticTokenOfKeywardenTests0001";
const ROLE_ID = "0d7c5e0f-role-id-of-keywarden-tests";
const SECRET_ID = "5a1f2c9e-secret-id-of-keywarden-tests";
const PLAINTEXT = crypto.getRandomValues(new Uint8Array(32));
const TENANT_A = utf8("keywarden:dek|tenant=t_aaaaaaaaaaaa|version=1");
const TENANT_B = utf8("keywarden:dek|tenant=t_bbbbbbbbbbbb|version=1");

function vault(options: Partial<TransitStandInOptions> = {}): TransitStandIn {
  const standIn = createTransitStandIn({
    addr: ADDR,
    token: TOKEN,
    roleId: ROLE_ID,
    secretId: SECRET_ID,
    ...options,
  });
  network.use(...standIn.handlers);
  return standIn;
}

function config(env: Parameters<typeof vaultConfigFrom>[0]): VaultConfig {
  const parsed = vaultConfigFrom(env);
  if (!parsed) throw new Error("expected a Vault config");
  return parsed;
}

function tokenClient(options: VaultTransitOptions = {}, token = TOKEN): VaultTransit {
  return new VaultTransit(config({ VAULT_ADDR: ADDR, VAULT_TOKEN: token }), fetch, options);
}

function appRoleClient(options: VaultTransitOptions = {}, secretId = SECRET_ID): VaultTransit {
  return new VaultTransit(
    config({ VAULT_ADDR: ADDR, VAULT_ROLE_ID: ROLE_ID, VAULT_SECRET_ID: secretId }),
    fetch,
    options,
  );
}

async function failure(promise: Promise<unknown>): Promise<VaultError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof VaultError) return error;
    throw error;
  }
  throw new Error("expected the call to fail");
}

/** One character of the ciphertext's base64 payload changed: a different blob of the same length. */
function tampered(ciphertext: string, at: number): string {
  const index = ciphertext.lastIndexOf(":") + 1 + at;
  const swapped = ciphertext[index] === "A" ? "B" : "A";
  return `${ciphertext.slice(0, index)}${swapped}${ciphertext.slice(index + 1)}`;
}

describe("vaultConfigFrom", () => {
  it("is null when VAULT_ADDR is unset or empty (Vault not configured)", () => {
    expect(vaultConfigFrom({})).toBeNull();
    expect(vaultConfigFrom({ VAULT_ADDR: "", VAULT_TOKEN: TOKEN })).toBeNull();
    expect(vaultConfigFrom({ VAULT_ADDR: "  " })).toBeNull();
  });

  it("reads a token configuration with the documented defaults, tolerating a trailing slash", () => {
    expect(vaultConfigFrom({ VAULT_ADDR: `${ADDR}/`, VAULT_TOKEN: TOKEN })).toEqual({
      address: ADDR,
      auth: { method: "token", token: TOKEN },
      transitMount: "transit",
      keyName: "keywarden",
    });
  });

  it("reads AppRole, its mount, a namespace and a custom Transit mount and key", () => {
    expect(
      vaultConfigFrom({
        VAULT_ADDR: "https://vault.example.com",
        VAULT_ROLE_ID: ROLE_ID,
        VAULT_SECRET_ID: SECRET_ID,
        VAULT_NAMESPACE: "admin/keywarden",
        VAULT_TRANSIT_MOUNT: "/kms/transit/",
        VAULT_TRANSIT_KEY: "keywarden-prod",
      }),
    ).toEqual({
      address: "https://vault.example.com",
      auth: { method: "approle", roleId: ROLE_ID, secretId: SECRET_ID, mount: "approle" },
      namespace: "admin/keywarden",
      transitMount: "kms/transit",
      keyName: "keywarden-prod",
    });
    expect(
      config({
        VAULT_ADDR: ADDR,
        VAULT_ROLE_ID: ROLE_ID,
        VAULT_SECRET_ID: SECRET_ID,
        VAULT_APPROLE_MOUNT: "ci",
      }).auth,
    ).toMatchObject({ method: "approle", mount: "ci" });
  });

  it.each([
    ["http://vault.test:8443", /VAULT_ADDR must use https/],
    ["vault.test", /VAULT_ADDR is not a URL/],
    ["https://127.0.0.1:8443", /VAULT_ADDR must point to a public address/],
    ["https://169.254.169.254", /VAULT_ADDR must point to a public address/],
    ["https://[::ffff:7f00:1]", /VAULT_ADDR must point to a public address/],
    ["https://localhost", /VAULT_ADDR must point to a public host/],
    ["https://vault.test:8200", /VAULT_ADDR must use port 443 or 8443/],
    ["https://user:pass@vault.test", /VAULT_ADDR must not contain credentials/],
    ["https://vault.test/v1/", /VAULT_ADDR must be an origin only/],
  ])("refuses VAULT_ADDR=%s with a TypeError naming the rule (threat model case 31)", (address, message) => {
    expect(() => vaultConfigFrom({ VAULT_ADDR: address, VAULT_TOKEN: TOKEN })).toThrow(TypeError);
    expect(() => vaultConfigFrom({ VAULT_ADDR: address, VAULT_TOKEN: TOKEN })).toThrow(message);
  });

  it("refuses an address with no credential, half an AppRole, or both kinds, naming the settings and no value", () => {
    const cases = [
      [{ VAULT_ADDR: ADDR }, /no Vault credential is: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID/],
      [{ VAULT_ADDR: ADDR, VAULT_ROLE_ID: ROLE_ID }, /needs both VAULT_ROLE_ID and VAULT_SECRET_ID/],
      [{ VAULT_ADDR: ADDR, VAULT_SECRET_ID: SECRET_ID }, /needs both VAULT_ROLE_ID and VAULT_SECRET_ID/],
      [
        { VAULT_ADDR: ADDR, VAULT_TOKEN: TOKEN, VAULT_ROLE_ID: ROLE_ID, VAULT_SECRET_ID: SECRET_ID },
        /either VAULT_TOKEN or VAULT_ROLE_ID with VAULT_SECRET_ID, not both/,
      ],
      [{ VAULT_ADDR: ADDR, VAULT_TOKEN: `${TOKEN}\nx y` }, /VAULT_TOKEN contains characters/],
      [
        { VAULT_ADDR: ADDR, VAULT_TOKEN: TOKEN, VAULT_TRANSIT_MOUNT: "../sys" },
        /VAULT_TRANSIT_MOUNT must be/,
      ],
      [{ VAULT_ADDR: ADDR, VAULT_TOKEN: TOKEN, VAULT_TRANSIT_KEY: "a/b" }, /VAULT_TRANSIT_KEY must be/],
    ] as const;
    for (const [env, message] of cases) {
      let thrown: unknown;
      try {
        vaultConfigFrom(env);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(TypeError);
      const text = String(thrown);
      expect(text).toMatch(message);
      for (const secret of [TOKEN, ROLE_ID, SECRET_ID]) expect(text).not.toContain(secret);
    }
  });
});

describe("VaultTransit: wrapping through Transit", () => {
  it("encrypts under the latest version and decrypts back, sending base64 plaintext and context with the token", async () => {
    const standIn = vault();
    const client = tokenClient();

    const wrapped = await client.encrypt(PLAINTEXT, TENANT_A);
    expect(wrapped.version).toBe(1);
    expect(wrapped.ciphertext).toMatch(/^vault:v1:[A-Za-z0-9+/]+={0,2}$/);
    expect(await client.decrypt(wrapped.ciphertext, TENANT_A)).toEqual(PLAINTEXT);

    const [encrypt] = standIn.log;
    expect(encrypt?.method).toBe("POST");
    expect(encrypt?.url.href).toBe(`${ADDR}/v1/transit/encrypt/keywarden`);
    expect(encrypt?.headers["x-vault-token"]).toBe(TOKEN);
    expect(JSON.parse(encrypt?.body ?? "")).toEqual({
      plaintext: toBase64(PLAINTEXT),
      context: toBase64(TENANT_A),
    });
    expect(standIn.counts).toMatchObject({ encrypt: 1, decrypt: 1, login: 0 });
  });

  it("reads the key's versions and derivation, and sends X-Vault-Namespace when one is configured", async () => {
    const standIn = vault({ namespace: "admin/keywarden" });
    const client = new VaultTransit(
      config({ VAULT_ADDR: ADDR, VAULT_TOKEN: TOKEN, VAULT_NAMESPACE: "admin/keywarden" }),
    );
    expect(await client.keyInfo()).toEqual({
      latestVersion: 1,
      minDecryptionVersion: 1,
      derived: true,
      type: "aes256-gcm96",
    });
    expect(standIn.log[0]?.headers["x-vault-namespace"]).toBe("admin/keywarden");
    standIn.rotate();
    expect(await client.keyInfo()).toMatchObject({ latestVersion: 2, minDecryptionVersion: 1 });
  });

  it("reports a non-derived key, which ignores the context, so the caller can refuse it", async () => {
    vault({ derived: false });
    const client = tokenClient();
    expect(await client.keyInfo()).toMatchObject({ derived: false });
    // This is why such a key is refused: tenant B's context opens tenant A's wrapped DEK.
    const wrapped = await client.encrypt(PLAINTEXT, TENANT_A);
    expect(await client.decrypt(wrapped.ciphertext, TENANT_B)).toEqual(PLAINTEXT);
  });

  it("refuses a DEK wrapped for tenant A when unwrapped with tenant B's context (threat model case 3)", async () => {
    const standIn = vault();
    const client = tokenClient();
    const wrapped = await client.encrypt(PLAINTEXT, TENANT_A);

    const error = await failure(client.decrypt(wrapped.ciphertext, TENANT_B));
    expect(error).toBeInstanceOf(VaultRefused);
    expect(error).toMatchObject({ status: 400, reason: "ciphertext", operation: "decrypt" });
    expect(error.message).toBe("Vault decrypt answered 400: cipher: message authentication failed");
    // Rewrap needs the right context too: it cannot move A's DEK into B's binding.
    await expect(client.rewrap(wrapped.ciphertext, TENANT_B)).rejects.toMatchObject({ reason: "ciphertext" });
    expect(standIn.counts).toMatchObject({ decrypt: 1, rewrap: 1 });
  });

  it("refuses a tampered, truncated or extended ciphertext (threat model case 4)", async () => {
    vault();
    const client = tokenClient();
    const { ciphertext } = await client.encrypt(PLAINTEXT, TENANT_A);
    const payload = ciphertext.slice(ciphertext.lastIndexOf(":") + 1);

    const variants = [
      tampered(ciphertext, 0),
      tampered(ciphertext, Math.floor(payload.length / 2)),
      tampered(ciphertext, payload.length - 3),
      `vault:v1:${toBase64(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0)).slice(0, -1))}`,
      `vault:v1:${toBase64(new Uint8Array([...Uint8Array.from(atob(payload), (c) => c.charCodeAt(0)), 0]))}`,
    ];
    for (const variant of variants) {
      const error = await failure(client.decrypt(variant, TENANT_A));
      expect(error).toBeInstanceOf(VaultRefused);
      expect(error).toMatchObject({ status: 400, reason: "ciphertext" });
    }
  });

  it("refuses a value that is not a Transit ciphertext without sending it", async () => {
    const standIn = vault();
    const client = tokenClient();
    for (const value of ["", "vault:v0:AAAA", "vault:1:AAAA", "vault:v1:", "v1:AAAA", "vault:v1:AA AA"]) {
      const error = await failure(client.decrypt(value, TENANT_A));
      expect(error).toBeInstanceOf(VaultRefused);
      expect(error).toMatchObject({ reason: "ciphertext", status: undefined });
      await expect(client.rewrap(value, TENANT_A)).rejects.toBeInstanceOf(VaultRefused);
    }
    expect(standIn.counts).toMatchObject({ decrypt: 0, rewrap: 0 });
  });

  it("rewraps a v1 ciphertext to v2 after a rotation; both decrypt to the same plaintext", async () => {
    const standIn = vault();
    const client = tokenClient();
    const v1 = await client.encrypt(PLAINTEXT, TENANT_A);

    expect(standIn.rotate()).toBe(2);
    const v2 = await client.rewrap(v1.ciphertext, TENANT_A);
    expect(v2.version).toBe(2);
    expect(VaultTransit.versionOf(v2.ciphertext)).toBe(2);
    expect(await client.decrypt(v2.ciphertext, TENANT_A)).toEqual(PLAINTEXT);
    expect(await client.decrypt(v1.ciphertext, TENANT_A)).toEqual(PLAINTEXT);
    expect((await client.encrypt(PLAINTEXT, TENANT_A)).version).toBe(2);
  });

  it("refuses a ciphertext below min_decryption_version, while its rewrapped copy still decrypts", async () => {
    const standIn = vault();
    const client = tokenClient();
    const v1 = await client.encrypt(PLAINTEXT, TENANT_A);
    standIn.rotate();
    const v2 = await client.rewrap(v1.ciphertext, TENANT_A);
    standIn.setMinDecryptionVersion(2);

    expect(await client.keyInfo()).toMatchObject({ latestVersion: 2, minDecryptionVersion: 2 });
    const error = await failure(client.decrypt(v1.ciphertext, TENANT_A));
    expect(error).toBeInstanceOf(VaultRefused);
    expect(error.message).toBe(
      "Vault decrypt answered 400: ciphertext or signature version is disallowed by policy (too old)",
    );
    await expect(client.rewrap(v1.ciphertext, TENANT_A)).rejects.toMatchObject({ reason: "ciphertext" });
    expect(await client.decrypt(v2.ciphertext, TENANT_A)).toEqual(PLAINTEXT);
  });

  it("refuses a ciphertext naming a version newer than the key's latest", async () => {
    vault();
    const client = tokenClient();
    const { ciphertext } = await client.encrypt(PLAINTEXT, TENANT_A);
    const error = await failure(client.decrypt(ciphertext.replace("vault:v1:", "vault:v7:"), TENANT_A));
    expect(error).toMatchObject({
      reason: "ciphertext",
      message: "Vault decrypt answered 400: invalid ciphertext: version is too new",
    });
  });

  it("reports an unknown Transit key as refused (unknown_key), on read and on encrypt", async () => {
    vault();
    const client = new VaultTransit(
      config({ VAULT_ADDR: ADDR, VAULT_TOKEN: TOKEN, VAULT_TRANSIT_KEY: "other" }),
    );
    await expect(client.keyInfo()).rejects.toMatchObject({
      name: "VaultRefused",
      status: 404,
      reason: "unknown_key",
    });
    await expect(client.encrypt(PLAINTEXT, TENANT_A)).rejects.toMatchObject({
      status: 400,
      reason: "unknown_key",
    });
  });

  it("refuses an empty context before anything is sent", async () => {
    const standIn = vault();
    const client = tokenClient();
    await expect(client.encrypt(PLAINTEXT, new Uint8Array())).rejects.toThrow(TypeError);
    expect(standIn.counts.encrypt).toBe(0);
  });

  it("parses the version of a ciphertext's vault:v<N>: prefix and throws on a malformed one", () => {
    expect(VaultTransit.versionOf("vault:v1:AAAA")).toBe(1);
    expect(VaultTransit.versionOf("vault:v42:AAAAAA==")).toBe(42);
    for (const bad of [
      "vault:v0:AAAA",
      "vault:v01:AAAA",
      "vault:vx:AAAA",
      "vault:v1",
      "vault:v1:",
      "VAULT:V1:AAAA",
    ]) {
      expect(() => VaultTransit.versionOf(bad)).toThrow(TypeError);
    }
  });
});

describe("VaultTransit: authentication", () => {
  it("refuses a wrong static token as credentials, without retrying", async () => {
    const standIn = vault();
    const error = await failure(tokenClient({}, "hvs.not-the-token").encrypt(PLAINTEXT, TENANT_A));
    expect(error).toBeInstanceOf(VaultRefused);
    expect(error).toMatchObject({
      status: 403,
      reason: "credentials",
      message: "Vault encrypt answered 403: permission denied",
    });
    expect(standIn.counts).toMatchObject({ encrypt: 1, login: 0 });
  });

  it("logs in with AppRole once and reuses the token for later calls", async () => {
    const standIn = vault();
    const client = appRoleClient();
    const { ciphertext } = await client.encrypt(PLAINTEXT, TENANT_A);
    await client.decrypt(ciphertext, TENANT_A);
    await client.keyInfo();

    expect(standIn.counts).toMatchObject({ login: 1, encrypt: 1, decrypt: 1, keyInfo: 1 });
    const [login, ...calls] = standIn.log;
    expect(login?.url.href).toBe(`${ADDR}/v1/auth/approle/login`);
    expect(JSON.parse(login?.body ?? "")).toEqual({ role_id: ROLE_ID, secret_id: SECRET_ID });
    expect(login?.headers["x-vault-token"]).toBeUndefined();
    const tokens = new Set(calls.map((call) => call.headers["x-vault-token"]));
    expect(tokens.size).toBe(1);
    expect([...tokens][0]).toMatch(/^hvs\./);
  });

  it("shares one login among concurrent calls", async () => {
    const standIn = vault();
    const client = appRoleClient();
    await Promise.all(Array.from({ length: 5 }, () => client.encrypt(PLAINTEXT, TENANT_A)));
    expect(standIn.counts).toMatchObject({ login: 1, encrypt: 5 });
  });

  it("logs in again once 80% of the token's lease has passed (injected clock)", async () => {
    const standIn = vault({ leaseSeconds: 100 });
    let now = 1_000_000;
    const client = appRoleClient({ now: () => now });
    await client.keyInfo();
    now += 79_000;
    await client.keyInfo();
    expect(standIn.counts.login).toBe(1);
    now += 2_000;
    await client.keyInfo();
    expect(standIn.counts.login).toBe(2);
  });

  it("logs in again once, and retries, when Vault refuses a cached AppRole token with 403", async () => {
    const standIn = vault();
    const client = appRoleClient();
    const { ciphertext } = await client.encrypt(PLAINTEXT, TENANT_A);
    standIn.expireTokens();

    expect(await client.decrypt(ciphertext, TENANT_A)).toEqual(PLAINTEXT);
    expect(standIn.counts).toMatchObject({ login: 2, decrypt: 2 });
  });

  it("does not log in again when a token from a fresh login is refused", async () => {
    const standIn = vault();
    standIn.faults.next("keyInfo", () =>
      HttpResponse.json({ errors: ["permission denied"] }, { status: 403 }),
    );
    const error = await failure(appRoleClient().keyInfo());
    expect(error).toMatchObject({ name: "VaultRefused", status: 403, reason: "credentials" });
    expect(standIn.counts).toMatchObject({ login: 1, keyInfo: 1 });
  });

  it("refuses a wrong AppRole secret id as credentials, and logs in afresh on the next call", async () => {
    const standIn = vault();
    const client = appRoleClient({}, "wrong-secret-id-0000");
    const error = await failure(client.keyInfo());
    expect(error).toBeInstanceOf(VaultRefused);
    expect(error).toMatchObject({ status: 400, reason: "credentials", operation: "login" });
    expect(error.message).toBe("Vault login answered 400: invalid role or secret ID");
    await expect(client.keyInfo()).rejects.toBeInstanceOf(VaultRefused);
    expect(standIn.counts).toMatchObject({ login: 2, keyInfo: 0 });
  });
});

describe("VaultTransit: Vault out of reach", () => {
  it("reports a sealed Vault as unavailable (503), and works again once unsealed", async () => {
    const standIn = vault();
    const client = tokenClient();
    standIn.seal();
    const error = await failure(client.encrypt(PLAINTEXT, TENANT_A));
    expect(error).toBeInstanceOf(VaultUnavailable);
    expect(error).toMatchObject({ status: 503, message: "Vault encrypt answered 503: Vault is sealed" });
    standIn.unseal();
    expect((await client.encrypt(PLAINTEXT, TENANT_A)).version).toBe(1);
  });

  it("reports an unreachable Vault as unavailable, for calls and for AppRole login", async () => {
    const standIn = vault();
    standIn.goUnreachable();
    const error = await failure(tokenClient().keyInfo());
    expect(error).toBeInstanceOf(VaultUnavailable);
    expect(error).toMatchObject({
      status: undefined,
      message: "Vault keyInfo did not answer (network error)",
    });
    await expect(appRoleClient().keyInfo()).rejects.toMatchObject({
      name: "VaultUnavailable",
      operation: "login",
    });
    standIn.comeBack();
    expect(await tokenClient().keyInfo()).toMatchObject({ latestVersion: 1 });
  });

  it("gives up after the timeout and reports it as unavailable", async () => {
    // A Vault that never answers: the request ends only when the client's AbortSignal fires.
    const silent: typeof fetch = (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
      });
    const client = new VaultTransit(config({ VAULT_ADDR: ADDR, VAULT_TOKEN: TOKEN }), silent, {
      timeoutMs: 20,
    });
    const error = await failure(client.decrypt("vault:v1:AAAAAAAAAAAAAAAAAAAAAAAA", TENANT_A));
    expect(error).toBeInstanceOf(VaultUnavailable);
    expect(error.message).toBe("Vault decrypt did not answer (timeout)");
  });

  it.each([
    [
      "429 (rate limited)",
      () => HttpResponse.json({ errors: ["request rate limited"] }, { status: 429 }),
      429,
    ],
    ["500", () => HttpResponse.json({ errors: ["internal error"] }, { status: 500 }), 500],
    [
      "307 (a standby pointing at the active node)",
      () =>
        new HttpResponse(null, { status: 307, headers: { location: "https://active.vault.test:8443/v1/x" } }),
      307,
    ],
    ["412 (a performance standby behind)", () => HttpResponse.json({ errors: [] }, { status: 412 }), 412],
  ])("reports %s as unavailable, following no redirect", async (_name, answer, status) => {
    const standIn = vault();
    standIn.faults.next("encrypt", answer);
    await expect(tokenClient().encrypt(PLAINTEXT, TENANT_A)).rejects.toMatchObject({
      name: "VaultUnavailable",
      status,
    });
    expect(standIn.counts.encrypt).toBe(1);
  });

  it("reports an answer that is not Vault's documented one, or a lost answer, as unavailable", async () => {
    const standIn = vault();
    const client = tokenClient();
    standIn.faults.next("encrypt", "unreadable_answer");
    await expect(client.encrypt(PLAINTEXT, TENANT_A)).rejects.toMatchObject({
      name: "VaultUnavailable",
      status: 200,
    });
    standIn.faults.next("encrypt", "lose_answer");
    await expect(client.encrypt(PLAINTEXT, TENANT_A)).rejects.toMatchObject({ name: "VaultUnavailable" });
    standIn.faults.next("encrypt", () =>
      HttpResponse.json({ data: { ciphertext: "vault:v2:AAAA", key_version: 1 } }),
    );
    await expect(client.encrypt(PLAINTEXT, TENANT_A)).rejects.toThrow(
      /key_version its ciphertext does not carry/,
    );
  });
});

describe("VaultTransit: no secret in any error (threat model case 18)", () => {
  it("never puts the token, role id, secret id, plaintext or context in an error, even when Vault echoes them", async () => {
    const standIn = vault();
    const errors: VaultError[] = [];
    const collect = async (promise: Promise<unknown>) => errors.push(await failure(promise));

    await collect(tokenClient({}, `${TOKEN}-wrong`).encrypt(PLAINTEXT, TENANT_A));
    await collect(appRoleClient({}, `${SECRET_ID}-wrong`).keyInfo());
    const { ciphertext } = await tokenClient().encrypt(PLAINTEXT, TENANT_A);
    await collect(tokenClient().decrypt(ciphertext, TENANT_B));
    await collect(tokenClient().decrypt(tampered(ciphertext, 4), TENANT_A));
    // A Vault (or a proxy in front of it) that repeats the request in its error text.
    standIn.faults.next("encrypt", () =>
      HttpResponse.json(
        {
          errors: [
            `bad request: plaintext=${toBase64(PLAINTEXT)} context=${toBase64(TENANT_A)} token=${TOKEN}`,
          ],
        },
        { status: 400 },
      ),
    );
    await collect(tokenClient().encrypt(PLAINTEXT, TENANT_A));
    standIn.faults.next("login", () =>
      HttpResponse.json({ errors: [`no role ${ROLE_ID} with secret ${SECRET_ID}`] }, { status: 400 }),
    );
    await collect(appRoleClient().keyInfo());
    standIn.seal();
    await collect(appRoleClient().keyInfo());
    standIn.goUnreachable();
    await collect(tokenClient().encrypt(PLAINTEXT, TENANT_A));

    expect(errors).toHaveLength(8);
    expect(errors[4]?.message).toBe(
      "Vault encrypt answered 400: (Vault's error text withheld: it repeats part of the request)",
    );
    const secrets = [
      TOKEN,
      ROLE_ID,
      SECRET_ID,
      toBase64(PLAINTEXT),
      toBase64(TENANT_A),
      toBase64(TENANT_B),
      "t_aaaaaaaaaaaa",
    ];
    for (const error of errors) {
      const text = `${error.message}\n${error.stack ?? ""}\n${JSON.stringify(error)}`;
      for (const secret of secrets) expect(text).not.toContain(secret);
    }
  });
});
