/** Registering where rotated keys are delivered: an https endpoint, a public key, a sealed signing secret. */
import { env } from "cloudflare:workers";
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { stepAt, totpAt } from "../../src/auth/totp";
import { database } from "../../src/db/client";
import { findDeliveryEndpoint, openSigningSecret } from "../../src/lifecycle/delivery-endpoint";
import { call, callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { dumpDatabase } from "../helpers/db";
import { enrollTotp } from "../helpers/totp";
import { deliveryKeyPair, HOOK_URL, type RegisteredEndpoint, registerEndpoint } from "./handoff-fixtures";

const PATH = "/api/v1/rotation/delivery-endpoint";

function put(tenant: TestTenant, body: unknown, headers: Record<string, string> = {}) {
  return callJson<RegisteredEndpoint & { code: string; errors?: { path: string; message: string }[] }>(
    "PUT",
    PATH,
    { key: tenant.adminKey, body, headers },
  );
}

async function auditActions(tenantId: string): Promise<{ action: string; detail: string }[]> {
  const { results } = await env.DB.prepare(
    "SELECT action, detail FROM audit_log WHERE tenant_id = ? AND target_type = 'delivery_endpoint' ORDER BY seq",
  )
    .bind(tenantId)
    .all<{ action: string; detail: string }>();
  return results;
}

describe("delivery endpoint registration", () => {
  it("registers an endpoint, shows its signing secret once, and keeps the secret sealed", async () => {
    const tenant = await createTenant("endpoint register");
    const { publicJwk } = await deliveryKeyPair();
    const response = await put(tenant, { url: HOOK_URL, public_jwk: publicJwk });
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.body.signing_secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(response.body.key_fingerprint).toBe(await calculateJwkThumbprint(publicJwk, "sha256"));
    expect(response.body.public_jwk).toEqual({
      kty: "EC",
      crv: "P-256",
      x: publicJwk.x,
      y: publicJwk.y,
      alg: "ECDH-ES",
    });

    const shown = await callJson<Record<string, unknown>>("GET", PATH, { key: tenant.adminKey });
    expect(shown.status).toBe(200);
    expect(shown.body).toEqual({
      url: HOOK_URL,
      public_jwk: response.body.public_jwk,
      key_fingerprint: response.body.key_fingerprint,
      created_at: response.body.created_at,
      updated_at: response.body.updated_at,
    });

    // Stored sealed: no table holds the secret as itself, and it opens to the one the tenant was shown.
    const db = database(env.DB);
    expect(await dumpDatabase()).not.toContain(response.body.signing_secret);
    expect(await dumpDatabase()).not.toContain(response.body.signing_secret.slice("whsec_".length));
    const row = await findDeliveryEndpoint(db, tenant.id);
    expect(row && (await openSigningSecret(env, db, row))).toBe(response.body.signing_secret);
    const audit = await auditActions(tenant.id);
    expect(audit.map((entry) => entry.action)).toEqual(["delivery_endpoint.set"]);
    expect(JSON.parse(audit[0]?.detail ?? "{}")).toMatchObject({
      host: "hooks.tenant.example",
      key_fingerprint: response.body.key_fingerprint,
      replaced: false,
    });
  });

  it("gives a replaced endpoint a new signing secret and keeps its creation time", async () => {
    const tenant = await createTenant("endpoint replace");
    const first = await registerEndpoint(tenant, (await deliveryKeyPair()).publicJwk);
    const next = await deliveryKeyPair("ECDH-ES", { crv: "X25519" });
    const second = await registerEndpoint(tenant, next.publicJwk, "https://hooks.tenant.example:8443/v2");
    expect(second.signing_secret).not.toBe(first.signing_secret);
    expect(second.key_fingerprint).not.toBe(first.key_fingerprint);
    expect(second.created_at).toBe(first.created_at);
    expect(second.public_jwk).toEqual({ kty: "OKP", crv: "X25519", x: next.publicJwk.x, alg: "ECDH-ES" });
    const db = database(env.DB);
    const row = await findDeliveryEndpoint(db, tenant.id);
    expect(row?.url).toBe("https://hooks.tenant.example:8443/v2");
    expect(row && (await openSigningSecret(env, db, row))).toBe(second.signing_secret);
  });

  it("refuses a private key with 422, naming the private member, and stores nothing", async () => {
    const tenant = await createTenant("endpoint private jwk");
    const { privateJwk } = await deliveryKeyPair();
    const response = await put(tenant, { url: HOOK_URL, public_jwk: privateJwk });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe("VALIDATION_FAILED");
    expect(response.body.errors).toContainEqual({
      path: "public_jwk.d",
      message: "is a private key member: register the public key only",
    });
    // The refusal does not echo the private key back.
    expect(JSON.stringify(response.body)).not.toContain(privateJwk.d);
    expect((await call("GET", PATH, { key: tenant.adminKey })).status).toBe(404);
  });

  it.each<[string, () => Promise<JWK>, string]>([
    [
      "an RSA private key",
      async () => (await deliveryKeyPair("RSA-OAEP-256", { modulusLength: 2048 })).privateJwk,
      "public_jwk.d",
    ],
    [
      "a symmetric key",
      async () => ({ kty: "oct", k: base64url.encode(crypto.getRandomValues(new Uint8Array(32))) }),
      "public_jwk.kty",
    ],
    [
      "a P-384 key",
      async () => (await deliveryKeyPair("ECDH-ES", { crv: "P-384" })).publicJwk,
      "public_jwk.crv",
    ],
    [
      "an Ed25519 signing key",
      async () =>
        exportJWK((await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true })).publicKey),
      "public_jwk.crv",
    ],
    [
      "an RSA key of 1024 bits",
      async () => {
        const { publicJwk } = await deliveryKeyPair("RSA-OAEP-256", { modulusLength: 2048 });
        return { ...publicJwk, n: base64url.encode(base64url.decode(publicJwk.n ?? "").slice(0, 128)) };
      },
      "public_jwk.n",
    ],
    [
      "a P-256 point that is not on the curve",
      async () => {
        const [a, b] = [await deliveryKeyPair(), await deliveryKeyPair()];
        return { ...a.publicJwk, y: b.publicJwk.y };
      },
      "public_jwk.kty",
    ],
    [
      "an EC key declared for RSA-OAEP-256",
      async () => ({ ...(await deliveryKeyPair()).publicJwk, alg: "RSA-OAEP-256" }),
      "public_jwk.alg",
    ],
    [
      "a signing-only key",
      async () => ({ ...(await deliveryKeyPair()).publicJwk, use: "sig" }),
      "public_jwk.use",
    ],
  ])("refuses %s with 422 and stores nothing", async (_label, jwk, path) => {
    const tenant = await createTenant("endpoint bad key");
    const response = await put(tenant, { url: HOOK_URL, public_jwk: await jwk() });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe("VALIDATION_FAILED");
    expect(response.body.errors?.map((error) => error.path)).toContain(path);
    expect((await call("GET", PATH, { key: tenant.adminKey })).status).toBe(404);
  });

  it.each([
    "http://hooks.tenant.example/rotated",
    "http://127.0.0.1:8787/rotated",
    "https://127.0.0.1/rotated",
    "https://0x7f000001/rotated",
    "https://10.0.0.7/rotated",
    "https://[::ffff:169.254.169.254]/latest/meta-data/",
    "https://localhost/rotated",
    "https://hooks.tenant.example:8080/rotated",
    "https://user:pass@hooks.tenant.example/rotated",
  ])("refuses the delivery URL %s (threat model case 31)", async (url) => {
    const tenant = await createTenant("endpoint bad url");
    const response = await put(tenant, { url, public_jwk: (await deliveryKeyPair()).publicJwk });
    expect(response.status).toBe(422);
    expect(response.body.errors?.[0]?.path).toBe("url");
    expect((await call("GET", PATH, { key: tenant.adminKey })).status).toBe(404);
  });

  it("needs the admin scope to register, read or remove it", async () => {
    const tenant = await createTenant("endpoint scope");
    await registerEndpoint(tenant, (await deliveryKeyPair()).publicJwk);
    const readWrite = await createKey(tenant, { role: "read_write" });
    const body = { url: HOOK_URL, public_jwk: (await deliveryKeyPair()).publicJwk };
    for (const [method, withBody] of [
      ["PUT", body],
      ["GET", undefined],
      ["DELETE", undefined],
    ] as const) {
      const response = await callJson<{ code: string }>(method, PATH, { key: readWrite.key, body: withBody });
      expect(response.status, method).toBe(403);
      expect(response.body.code).toBe("FORBIDDEN");
    }
    expect((await call("GET", PATH, { key: tenant.adminKey })).status).toBe(200);
  });

  it("needs step-up to register once the admin enrolled TOTP: the key decides who reads every future rotated key", async () => {
    const tenant = await createTenant("endpoint step-up");
    const { secret } = await enrollTotp(tenant.adminKey);
    const body = { url: HOOK_URL, public_jwk: (await deliveryKeyPair()).publicJwk };
    const without = await put(tenant, body);
    expect(without.status).toBe(401);
    expect((await call("GET", PATH, { key: tenant.adminKey })).status).toBe(404);
    const withCode = await put(tenant, body, {
      "x-keywarden-totp": await totpAt(secret, stepAt(Date.now()) + 1),
    });
    expect(withCode.status).toBe(200);
  });

  it("removes the endpoint (204), after which it is gone (404), and is invisible to other tenants", async () => {
    const tenant = await createTenant("endpoint delete");
    const other = await createTenant("endpoint other tenant");
    await registerEndpoint(tenant, (await deliveryKeyPair()).publicJwk);
    expect((await call("GET", PATH, { key: other.adminKey })).status).toBe(404);
    expect((await call("DELETE", PATH, { key: other.adminKey })).status).toBe(404);

    expect((await call("DELETE", PATH, { key: tenant.adminKey })).status).toBe(204);
    expect((await call("GET", PATH, { key: tenant.adminKey })).status).toBe(404);
    expect((await call("DELETE", PATH, { key: tenant.adminKey })).status).toBe(404);
    expect(await findDeliveryEndpoint(database(env.DB), tenant.id)).toBeUndefined();
    expect((await auditActions(tenant.id)).map((entry) => entry.action)).toEqual([
      "delivery_endpoint.set",
      "delivery_endpoint.delete",
    ]);
  });
});
