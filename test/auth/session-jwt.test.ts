/**
 * threat model case 14: the wizard session JWT. Every forged or malformed token is rejected with
 * 401 both by `verifySessionToken` directly and through the real worker (as the
 * `__Host-kw_session` cookie on GET /api/v1/auth/session, which needs the `wizard` scope).
 *
 * Each forged token differs from a token the worker *accepts* in exactly one respect: the suite
 * first proves that a token hand-signed with the independently derived secret and the same
 * claims is accepted, so a rejection can only come from the defect under test.
 */
import { env } from "cloudflare:workers";
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  SignJWT,
} from "jose";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { issueSessionToken, SESSION_TTL_SECONDS, verifySessionToken } from "../../src/auth/session-token";
import { database } from "../../src/db/client";
import { ApiError } from "../../src/errors";
import { unseal } from "../../src/vault/keyring";
import { purposeKey } from "../../src/vault/system-keys";
import { call, callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import {
  base64url,
  base64urlJson,
  claims,
  cookieHeader,
  GOOD_HEADER,
  hmacJwt,
  SESSION_COOKIE,
  sessionFromSetCookie,
  sessionSecret,
  unsignedJwt,
  whoAmI,
} from "./jwt-forge";

let tenant: TestTenant;
let verifyKey: CryptoKey;
let secret: Uint8Array<ArrayBuffer>;

beforeAll(async () => {
  tenant = await createTenant("JWT tenant");
  verifyKey = await purposeKey(await unseal(env, database(env.DB)), database(env.DB), "session-jwt");
  secret = await sessionSecret();
});

afterEach(() => {
  vi.restoreAllMocks();
});

interface Forge {
  nowMs: number;
  valid: (overrides?: Record<string, unknown>) => Record<string, unknown>;
}

function forge(nowMs = Date.now()): Forge {
  return { nowMs, valid: (overrides = {}) => claims(tenant.id, tenant.adminKeyId, nowMs, overrides) };
}

async function expectUnitRejects(token: string, nowMs: number): Promise<void> {
  const error = await verifySessionToken(verifyKey, token, nowMs).then(
    () => null,
    (thrown: unknown) => thrown,
  );
  expect(error, "verifySessionToken accepted a token it must refuse").toBeInstanceOf(ApiError);
  expect(error).toMatchObject({ code: "UNAUTHENTICATED", status: 401 });
}

async function expectWorkerRejects(token: string): Promise<void> {
  const { status, body } = await whoAmI(token);
  expect(status).toBe(401);
  expect(body).toMatchObject({ code: "UNAUTHENTICATED", status: 401 });
  expect(JSON.stringify(body)).not.toContain(tenant.id);
}

async function expectRejectedEverywhere(token: string, nowMs: number): Promise<void> {
  await expectUnitRejects(token, nowMs);
  await expectWorkerRejects(token);
}

async function publicKeyPem(alg: "RS256" | "ES256"): Promise<string> {
  const { publicKey } = await generateKeyPair(alg, { extractable: true });
  return exportSPKI(publicKey);
}

describe("the forging harness itself", () => {
  it("accepts a token hand-signed with the re-derived session secret (so every rejection below is meaningful)", async () => {
    const { nowMs, valid } = forge();
    const token = await hmacJwt(secret, { ...GOOD_HEADER }, valid());
    await expect(verifySessionToken(verifyKey, token, nowMs)).resolves.toEqual({
      tenantId: tenant.id,
      keyId: tenant.adminKeyId,
      issuedAt: Math.floor(nowMs / 1000) * 1000,
    });
    const { status, body } = await whoAmI(token);
    expect(status).toBe(200);
    expect(body).toMatchObject({ tenant_id: tenant.id, key_id: tenant.adminKeyId });
  });

  it("accepts a token from issueSessionToken and reads back its claims", async () => {
    const now = Date.now();
    const token = await issueSessionToken(verifyKey, { tenantId: tenant.id, keyId: tenant.adminKeyId }, now);
    expect(decodeProtectedHeader(token)).toEqual({ alg: "HS256", typ: "JWT", kid: "session-v1" });
    const payload = decodeJwt(token);
    expect(payload).toMatchObject({ iss: "keywarden", aud: "keywarden-wizard", sub: tenant.adminKeyId });
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(SESSION_TTL_SECONDS);
    expect((await whoAmI(token)).status).toBe(200);
  });
});

type Case = [name: string, make: (f: Forge) => Promise<string> | string];

const algorithmCases: Case[] = [
  ["alg:none with an empty signature", (f) => unsignedJwt({ ...GOOD_HEADER, alg: "none" }, f.valid())],
  ["alg:None (case variant)", (f) => unsignedJwt({ ...GOOD_HEADER, alg: "None" }, f.valid())],
  ["alg:NONE (case variant)", (f) => unsignedJwt({ ...GOOD_HEADER, alg: "NONE" }, f.valid())],
  [
    "alg:none carrying the signature of a valid HS256 token",
    async (f) => {
      const valid = await hmacJwt(secret, { ...GOOD_HEADER }, f.valid());
      const signature = valid.split(".")[2];
      return `${base64urlJson({ ...GOOD_HEADER, alg: "none" })}.${base64urlJson(f.valid())}.${signature}`;
    },
  ],
  ["no alg header at all", (f) => hmacJwt(secret, { typ: "JWT", kid: "session-v1" }, f.valid())],
  ["a lowercase `hs256` alg", (f) => hmacJwt(secret, { ...GOOD_HEADER, alg: "hs256" }, f.valid())],
  [
    "HS256 signed with an RSA public key's SPKI PEM as the HMAC secret",
    async (f) =>
      hmacJwt(new TextEncoder().encode(await publicKeyPem("RS256")), { ...GOOD_HEADER }, f.valid()),
  ],
  [
    "HS256 signed with an EC public key's SPKI PEM as the HMAC secret",
    async (f) =>
      hmacJwt(new TextEncoder().encode(await publicKeyPem("ES256")), { ...GOOD_HEADER }, f.valid()),
  ],
  [
    "HS256 signed with a public JWK's JSON as the HMAC secret",
    async (f) => {
      const { publicKey } = await generateKeyPair("ES256", { extractable: true });
      const jwk = JSON.stringify(await exportJWK(publicKey));
      return hmacJwt(new TextEncoder().encode(jwk), { ...GOOD_HEADER }, f.valid());
    },
  ],
  ...(["RS256", "PS256", "ES256", "EdDSA"] as const).map(
    (alg): Case => [
      `a wrong algorithm family (${alg}, properly signed with its own key pair)`,
      async (f) => {
        const { privateKey } = await generateKeyPair(alg);
        return new SignJWT(f.valid())
          .setProtectedHeader({ alg, typ: "JWT", kid: "session-v1" })
          .sign(privateKey);
      },
    ],
  ),
  [
    "HS384 signed with the right secret",
    (f) => hmacJwt(secret, { ...GOOD_HEADER, alg: "HS384" }, f.valid(), "SHA-384"),
  ],
  [
    "HS512 signed with the right secret",
    (f) => hmacJwt(secret, { ...GOOD_HEADER, alg: "HS512" }, f.valid(), "SHA-512"),
  ],
  [
    "a header saying HS256 over an HS512 signature with the right secret",
    (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid(), "SHA-512"),
  ],
  [
    "HS256 signed with a different secret",
    (f) => hmacJwt(crypto.getRandomValues(new Uint8Array(64)), { ...GOOD_HEADER }, f.valid()),
  ],
  [
    "a valid token whose payload was edited after signing",
    async (f) => {
      const [header, , signature] = (await hmacJwt(secret, { ...GOOD_HEADER }, f.valid())).split(".");
      return `${header}.${base64urlJson(f.valid({ sub: "key_someoneelse000000000" }))}.${signature}`;
    },
  ],
  [
    "a valid token with its signature truncated",
    async (f) => (await hmacJwt(secret, { ...GOOD_HEADER }, f.valid())).slice(0, -4),
  ],
];

const claimCases: Case[] = [
  ["`exp` missing", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ exp: undefined }))],
  [
    "`exp` an hour in the past",
    (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ iat: sec(f) - 3600 - 900, exp: sec(f) - 3600 })),
  ],
  [
    "`exp` 31 s in the past (just outside the 30 s tolerance)",
    (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ iat: sec(f) - 931, exp: sec(f) - 31 })),
  ],
  ["`exp` a string", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ exp: String(sec(f) + 600) }))],
  ["`iat` missing", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ iat: undefined }))],
  [
    "`iat` 10 minutes in the future",
    (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ iat: sec(f) + 600, exp: sec(f) + 1500 })),
  ],
  [
    "`iat` two hours ago with a far `exp` (outlives the 15-minute TTL)",
    (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ iat: sec(f) - 7200, exp: sec(f) + 600 })),
  ],
  [
    "`nbf` 2 minutes in the future",
    (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ nbf: sec(f) + 120 })),
  ],
  ["a wrong `aud`", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ aud: "keywarden-admin" }))],
  ["a wrong `aud` array", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ aud: ["other", "x"] }))],
  ["`aud` missing", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ aud: undefined }))],
  ["a wrong `iss`", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ iss: "https://evil.example" }))],
  ["`iss` missing", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ iss: undefined }))],
  ["`sub` missing", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ sub: undefined }))],
  ["`sub` not a string", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ sub: 42 }))],
  ["the `tid` claim missing", (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ tid: undefined }))],
];

function sec(f: Forge): number {
  return Math.floor(f.nowMs / 1000);
}

const kidCases: Case[] = [
  ["a junk `kid` (session-v2)", (f) => hmacJwt(secret, { ...GOOD_HEADER, kid: "session-v2" }, f.valid())],
  ["an empty `kid`", (f) => hmacJwt(secret, { ...GOOD_HEADER, kid: "" }, f.valid())],
  ["no `kid`", (f) => hmacJwt(secret, { alg: "HS256", typ: "JWT" }, f.valid())],
  ["a numeric `kid`", (f) => hmacJwt(secret, { ...GOOD_HEADER, kid: 1 }, f.valid())],
  [
    "a path-traversal `kid`",
    (f) => hmacJwt(secret, { ...GOOD_HEADER, kid: "../../../../dev/null" }, f.valid()),
  ],
  ["an SQL-injection `kid`", (f) => hmacJwt(secret, { ...GOOD_HEADER, kid: "' OR 1=1 --" }, f.valid())],
  [
    "a `kid` with a trailing NUL",
    (f) => hmacJwt(secret, { ...GOOD_HEADER, kid: "session-v1\u0000" }, f.valid()),
  ],
  [
    "a 2,000-character `kid` (token still under the length cap)",
    (f) => hmacJwt(secret, { ...GOOD_HEADER, kid: "k".repeat(2000) }, f.valid()),
  ],
  [
    "an oversized 10 kB `kid`",
    (f) => hmacJwt(secret, { ...GOOD_HEADER, kid: `session-v1${"A".repeat(10_240)}` }, f.valid()),
  ],
  [
    "an oversized token (valid signature, 6 kB of padding claims)",
    (f) => hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ pad: "x".repeat(6_000) })),
  ],
  ["garbage instead of a token", () => "not.a.jwt"],
  ["two segments only", (f) => `${base64urlJson(GOOD_HEADER)}.${base64urlJson(f.valid())}`],
  [
    "a header that is not JSON",
    (f) => `${base64url(new TextEncoder().encode("{alg"))}.${base64urlJson(f.valid())}.AA`,
  ],
];

describe("session JWTs are rejected with 401, in verifySessionToken and through the worker", () => {
  it.each([...algorithmCases, ...claimCases, ...kidCases])("rejects %s", async (_name, make) => {
    const f = forge();
    const token = await make(f);
    await expectRejectedEverywhere(token, f.nowMs);
  });
});

describe("header-supplied keys and key URLs are refused without any outbound fetch", () => {
  const headerCases: [string, (f: Forge) => Promise<Record<string, unknown>>][] = [
    ["jku", async () => ({ jku: "https://attacker.example/jwks.json" })],
    ["x5u", async () => ({ x5u: "https://attacker.example/cert.pem" })],
    [
      "jwk (an embedded attacker public key)",
      async () => {
        const { publicKey } = await generateKeyPair("ES256", { extractable: true });
        return { jwk: await exportJWK(publicKey) };
      },
    ],
    ["jwk (an embedded symmetric key)", async () => ({ jwk: { kty: "oct", k: base64url(secret) } })],
    ["x5c", async () => ({ x5c: ["MIIBszCCAVmgAwIBAgIUQ"] })],
    ["crit", async () => ({ crit: ["exp"] })],
  ];

  it("the fetch spy does see jose's key-fetching path (so `not called` below proves something)", async () => {
    const fetchSpy = vi
      .spyOn(globalThis, "fetch")
      .mockResolvedValue(Response.json({ keys: [] }, { headers: { "content-type": "application/json" } }));
    const remote = createRemoteJWKSet(new URL("https://attacker.example/jwks.json"));
    await remote({ alg: "RS256", kid: "x" }).catch(() => undefined);
    expect(fetchSpy).toHaveBeenCalled();
  });

  it.each(headerCases)(
    "rejects an otherwise valid HS256 token whose header carries %s",
    async (_name, extra) => {
      const fetchSpy = vi.spyOn(globalThis, "fetch");
      const f = forge();
      // Correctly signed with the real secret: only the extra header parameter is wrong.
      const token = await hmacJwt(secret, { ...GOOD_HEADER, ...(await extra(f)) }, f.valid());
      await expectRejectedEverywhere(token, f.nowMs);
      expect(fetchSpy).not.toHaveBeenCalled();
    },
  );

  it("rejects an attacker-signed ES256 token that embeds its own jwk and points jku/x5u at the attacker, without fetching", async () => {
    const fetchSpy = vi.spyOn(globalThis, "fetch");
    const f = forge();
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const token = await new SignJWT(f.valid())
      .setProtectedHeader({
        alg: "ES256",
        kid: "session-v1",
        jwk: await exportJWK(publicKey),
        jku: "https://attacker.example/jwks.json",
        x5u: "https://attacker.example/cert.pem",
      })
      .sign(privateKey);
    await expectRejectedEverywhere(token, f.nowMs);
    expect(fetchSpy).not.toHaveBeenCalled();
  });
});

describe("clock tolerance is 30 s", () => {
  it("accepts a token 29 s past exp and rejects it 30 s and 31 s past exp (unit level, fixed clock)", async () => {
    const issuedAt = Date.UTC(2030, 0, 1, 12, 0, 0);
    const token = await issueSessionToken(
      verifyKey,
      { tenantId: tenant.id, keyId: tenant.adminKeyId },
      issuedAt,
    );
    const exp = issuedAt + SESSION_TTL_SECONDS * 1000;
    await expect(verifySessionToken(verifyKey, token, exp - 1000)).resolves.toMatchObject({
      tenantId: tenant.id,
    });
    await expect(verifySessionToken(verifyKey, token, exp + 29_000)).resolves.toMatchObject({
      tenantId: tenant.id,
    });
    await expectUnitRejects(token, exp + 30_000);
    await expectUnitRejects(token, exp + 31_000);
  });

  it("accepts a token issued up to 30 s in the future and rejects one issued 31 s ahead (unit level)", async () => {
    const issuedAt = Date.UTC(2030, 0, 1, 12, 0, 0);
    const token = await issueSessionToken(
      verifyKey,
      { tenantId: tenant.id, keyId: tenant.adminKeyId },
      issuedAt,
    );
    await expect(verifySessionToken(verifyKey, token, issuedAt - 30_000)).resolves.toBeTruthy();
    await expectUnitRejects(token, issuedAt - 31_000);
  });

  it("through the worker: exp 25 s ago is accepted, exp 31 s ago is rejected", async () => {
    const f = forge();
    const inside = await hmacJwt(
      secret,
      { ...GOOD_HEADER },
      f.valid({ iat: sec(f) - 925, exp: sec(f) - 25 }),
    );
    expect((await whoAmI(inside)).status).toBe(200);
    const outside = await hmacJwt(
      secret,
      { ...GOOD_HEADER },
      f.valid({ iat: sec(f) - 931, exp: sec(f) - 31 }),
    );
    await expectWorkerRejects(outside);
  });

  it("through the worker: nbf 20 s ahead is tolerated, nbf 2 min ahead is not", async () => {
    const f = forge();
    expect(
      (await whoAmI(await hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ nbf: sec(f) + 20 })))).status,
    ).toBe(200);
    await expectWorkerRejects(await hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ nbf: sec(f) + 120 })));
  });
});

describe("POST /api/v1/auth/session", () => {
  it("exchanges an admin key for a __Host- cookie with exactly HttpOnly, Secure, SameSite=Strict, Path=/ and no Domain", async () => {
    const response = await call("POST", "/api/v1/auth/session", { body: { key: tenant.adminKey } });
    expect(response.status).toBe(201);
    expect(response.headers.get("cache-control")).toBe("no-store");
    const setCookie = response.headers.get("set-cookie");
    expect(setCookie).not.toBeNull();
    const [pair, ...attributeParts] = (setCookie ?? "").split(";").map((part) => part.trim());
    expect(pair?.startsWith(`${SESSION_COOKIE}=`)).toBe(true);
    const attributes = new Map(
      attributeParts.map((part) => {
        const [name = "", value = ""] = part.split("=");
        return [name.toLowerCase(), value];
      }),
    );
    expect([...attributes.keys()].sort()).toEqual(["httponly", "max-age", "path", "samesite", "secure"]);
    expect(attributes.get("path")).toBe("/");
    expect(attributes.get("samesite")).toBe("Strict");
    expect(attributes.get("max-age")).toBe(String(SESSION_TTL_SECONDS));
    expect(attributes.has("domain")).toBe(false);

    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ tenant_id: tenant.id, key_id: tenant.adminKeyId });
    expect(body.scopes).toContain("wizard");
    const token = sessionFromSetCookie(setCookie);
    expect(token).toBeTruthy();
    // The JWT lives only in the HttpOnly cookie, never in the JSON body.
    expect(JSON.stringify(body)).not.toContain(token as string);
    expect(JSON.stringify(body)).not.toContain(tenant.adminKey);

    const me = await callJson("GET", "/api/v1/auth/session", { headers: cookieHeader(token as string) });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ tenant_id: tenant.id, key_id: tenant.adminKeyId });
  });

  it("refuses a read-only key with 403 and sets no cookie", async () => {
    const readOnly = await createKey(tenant, { name: "ro", role: "read_only" });
    const response = await call("POST", "/api/v1/auth/session", { body: { key: readOnly.key } });
    expect(response.status).toBe(403);
    expect(response.headers.get("set-cookie")).toBeNull();
    expect(await response.json()).toMatchObject({ code: "FORBIDDEN", status: 403 });
  });

  it("answers a bad key with 401 and the same body shape as any other bad key", async () => {
    const headers = { "cf-connecting-ip": "198.51.100.14" };
    const revoked = await createKey(tenant, { name: "to revoke", role: "admin" });
    expect((await call("POST", `/api/v1/keys/${revoked.id}/revoke`, { key: tenant.adminKey })).status).toBe(
      200,
    );
    const candidates = [
      "not a key",
      `${tenant.adminKey.slice(0, -1)}${tenant.adminKey.endsWith("A") ? "B" : "A"}`,
      revoked.key,
      "",
    ];
    const shapes = [];
    for (const key of candidates) {
      const response = await call("POST", "/api/v1/auth/session", { body: { key }, headers });
      expect(response.status).toBe(401);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      expect(response.headers.get("set-cookie")).toBeNull();
      const { request_id: _ignored, ...rest } = (await response.json()) as Record<string, unknown>;
      shapes.push(rest);
    }
    // And the same body the Bearer path gives for a bad key.
    const bearer = await call("GET", "/api/v1/keys", { key: "kw_live_nope", headers });
    expect(bearer.status).toBe(401);
    const { request_id: _also, ...bearerBody } = (await bearer.json()) as Record<string, unknown>;
    for (const shape of shapes) expect(shape).toEqual(bearerBody);
  });

  it("rejects a still-unexpired session token once its key has been revoked", async () => {
    const second = await createKey(tenant, { name: "second admin", role: "admin" });
    const started = await call("POST", "/api/v1/auth/session", { body: { key: second.key } });
    expect(started.status).toBe(201);
    const token = sessionFromSetCookie(started.headers.get("set-cookie")) as string;
    expect((await whoAmI(token)).status).toBe(200);

    expect((await call("POST", `/api/v1/keys/${second.id}/revoke`, { key: tenant.adminKey })).status).toBe(
      200,
    );
    // The token itself is still cryptographically valid ...
    await expect(verifySessionToken(verifyKey, token)).resolves.toMatchObject({ keyId: second.id });
    // ... but the worker re-reads the key and refuses the session.
    await expectWorkerRejects(token);
  });

  it("rejects a session whose key was disabled or deleted", async () => {
    const disabled = await createKey(tenant, { name: "to disable", role: "admin" });
    const deleted = await createKey(tenant, { name: "to delete", role: "admin" });
    const tokens: string[] = [];
    for (const k of [disabled, deleted]) {
      const started = await call("POST", "/api/v1/auth/session", { body: { key: k.key } });
      tokens.push(sessionFromSetCookie(started.headers.get("set-cookie")) as string);
    }
    const patch = await call("PATCH", `/api/v1/keys/${disabled.id}`, {
      key: tenant.adminKey,
      body: { enabled: false },
    });
    expect(patch.status).toBe(200);
    expect((await call("DELETE", `/api/v1/keys/${deleted.id}`, { key: tenant.adminKey })).status).toBe(204);
    for (const token of tokens) await expectWorkerRejects(token);
  });

  it("rejects a token naming another tenant's key (tid and sub must belong together)", async () => {
    const other = await createTenant("JWT other tenant");
    const f = forge();
    const token = await hmacJwt(secret, { ...GOOD_HEADER }, f.valid({ sub: other.adminKeyId }));
    // Cryptographically valid, so the unit check passes; the worker's tenant-scoped key read refuses it.
    await expect(verifySessionToken(verifyKey, token, f.nowMs)).resolves.toBeTruthy();
    await expectWorkerRejects(token);
  });
});
