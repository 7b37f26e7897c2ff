import { env } from "cloudflare:workers";
import {
  base64url,
  CompactEncrypt,
  compactDecrypt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
} from "jose";
import { describe, expect, it } from "vitest";
import { totpAt } from "../../src/auth/totp";
import { BUNDLE_FORMAT, type TenantBundle } from "../../src/portability/bundle";
import { PBES2_ITERATIONS } from "../../src/portability/export-jwe";
import { call, callJson, createKey, createTenant } from "../helpers/api";
import { enrollTotp } from "../helpers/totp";
import { exportWith, importInto, PASSPHRASE, storeStripe, tenantState } from "./export-support";

const decoder = new TextDecoder();

async function openWithPassphrase(jwe: string): Promise<TenantBundle> {
  // jose refuses PBES2 unless it is named, and caps p2c at 10,000 unless told otherwise.
  const { plaintext } = await compactDecrypt(jwe, new TextEncoder().encode(PASSPHRASE), {
    keyManagementAlgorithms: ["PBES2-HS512+A256KW"],
    maxPBES2Count: PBES2_ITERATIONS,
  });
  return JSON.parse(decoder.decode(plaintext)) as TenantBundle;
}

/** Every segment of a compact JWE, base64url-decoded, as text: what someone holding the file can read. */
function readableParts(jwe: string): string {
  return jwe
    .split(".")
    .map((part) => decoder.decode(base64url.decode(part)))
    .join("\n");
}

describe("the export is a JWE readable with jose and the passphrase alone", () => {
  it(`uses PBES2-HS512+A256KW with exactly ${PBES2_ITERATIONS} iterations and A256GCM, the most deployed Workers allow (platform guard)`, async () => {
    const tenant = await createTenant("jwe header");
    await storeStripe(tenant, "Header check");
    const jwe = await exportWith(tenant);
    expect(jwe.split(".")).toHaveLength(5);
    const header = decodeProtectedHeader(jwe);
    expect(header).toMatchObject({ alg: "PBES2-HS512+A256KW", enc: "A256GCM", p2c: 100_000 });
    expect(PBES2_ITERATIONS).toBeLessThanOrEqual(100_000);
    const bundle = await openWithPassphrase(jwe);
    expect(bundle.format).toBe(BUNDLE_FORMAT);
    expect(bundle.credentials.map((c) => c.name)).toEqual(["Header check"]);
  });

  it("contains no plaintext field value, channel secret or key hash anywhere in the file", async () => {
    const tenant = await createTenant("no plaintext");
    const { secret } = await storeStripe(tenant, "Secret holder");
    const slack = `https://hooks.slack.com/services/T0NOPE/B0NOPE/${"s".repeat(8)}x9Zq`;
    await callJson("POST", "/api/v1/monitoring/channels", {
      key: tenant.adminKey,
      body: { kind: "slack", name: "Quiet", webhook_url: slack },
    });
    const key = await createKey(tenant, { name: "hashed" });
    const jwe = await exportWith(tenant);
    const bundle = await openWithPassphrase(jwe);
    const hash = bundle.keys.find((k) => k.name === "hashed")?.hash as string;
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    for (const text of [jwe, readableParts(jwe)]) {
      for (const value of [secret, slack, hash, key.key, "Secret holder"]) expect(text).not.toContain(value);
    }
  });

  it("refuses the wrong passphrase, and every altered segment, with 422 and nothing written", async () => {
    const source = await createTenant("tamper source");
    await storeStripe(source, "Tamper");
    const target = await createTenant("tamper target");
    const jwe = await exportWith(source);
    const before = await tenantState(target.id, true);
    const wrong = await importInto(target, { jwe, passphrase: "another passphrase entirely" });
    expect(wrong.status).toBe(422);
    expect(wrong.body.code).toBe("VALIDATION_FAILED");
    const parts = jwe.split(".");
    for (const [index, part] of parts.entries()) {
      const at = Math.floor(part.length / 2);
      const flipped = `${part.slice(0, at)}${part[at] === "A" ? "B" : "A"}${part.slice(at + 1)}`;
      const tampered = parts.map((p, i) => (i === index ? flipped : p)).join(".");
      const refused = await importInto(target, { jwe: tampered, passphrase: PASSPHRASE });
      expect(refused.status, `segment ${index}`).toBe(422);
      expect(refused.body.errors?.[0]?.path).toBe("jwe");
    }
    const truncated = await importInto(target, { jwe: jwe.slice(0, -3), passphrase: PASSPHRASE });
    expect(truncated.status).toBe(422);
    expect(await tenantState(target.id, true)).toBe(before);
  });

  it(`refuses a JWE asking for more than ${PBES2_ITERATIONS} PBKDF2 iterations before deriving anything`, async () => {
    const tenant = await createTenant("p2c cap");
    const jwe = await exportWith(tenant);
    const [header, ...rest] = jwe.split(".");
    const greedy = { ...decodeProtectedHeader(jwe), p2c: PBES2_ITERATIONS + 1 };
    const forged = [base64url.encode(JSON.stringify(greedy)), ...rest].join(".");
    expect(header).not.toBe(forged.split(".")[0]);
    const refused = await importInto(tenant, { jwe: forged, passphrase: PASSPHRASE });
    expect(refused.status).toBe(422);
    expect(refused.body.errors?.[0]?.message).toMatch(/PBES2 count/);
  });

  it("refuses a compressed (zip: DEF) JWE, so an import body cannot inflate past its 16 MiB cap, writing nothing", async () => {
    const source = await createTenant("zip source");
    await storeStripe(source, "Zipped");
    const target = await createTenant("zip target");
    const bundle = await openWithPassphrase(await exportWith(source));
    const zipped = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(bundle)))
      .setProtectedHeader({ alg: "PBES2-HS512+A256KW", enc: "A256GCM", zip: "DEF" })
      .setKeyManagementParameters({ p2c: PBES2_ITERATIONS })
      .encrypt(new TextEncoder().encode(PASSPHRASE));
    const before = await tenantState(target.id, true);
    const refused = await importInto(target, { jwe: zipped, passphrase: PASSPHRASE, dry_run: true });
    expect(refused.status).toBe(422);
    expect(refused.body.errors?.[0]?.path).toBe("jwe");
    expect(await tenantState(target.id, true)).toBe(before);
  });

  it("refuses a passphrase under 16 characters or an obvious run", async () => {
    const tenant = await createTenant("weak passphrase");
    for (const passphrase of ["short one", "aaaaaaaaaaaaaaaaaaaa", "12345678901234567890"]) {
      const refused = await callJson<{ code: string; errors: { path: string }[] }>("POST", "/api/v1/export", {
        key: tenant.adminKey,
        body: { passphrase },
      });
      expect(refused.status, passphrase).toBe(422);
      expect(refused.body.errors[0]?.path).toBe("passphrase");
    }
    const both = await callJson("POST", "/api/v1/export", { key: tenant.adminKey, body: {} });
    expect(both.status).toBe(422);
  });
});

describe("export to a tenant's public key", () => {
  for (const [label, alg, options] of [
    ["EC P-256", "ECDH-ES+A256KW", { crv: "P-256" }],
    ["EC P-384", "ECDH-ES+A256KW", { crv: "P-384" }],
    ["X25519", "ECDH-ES+A256KW", { crv: "X25519" }],
    ["RSA 3072", "RSA-OAEP-256", { modulusLength: 3072 }],
  ] as const) {
    it(`${label}: ${alg} + A256GCM, opened by the private key alone and imported with it`, async () => {
      const pair = await generateKeyPair(alg, { ...options, extractable: true });
      const publicJwk = await exportJWK(pair.publicKey);
      const source = await createTenant(`public key ${label}`);
      const { secret } = await storeStripe(source, "To a key");
      const jwe = await exportWith(source, { public_key: publicJwk });
      expect(decodeProtectedHeader(jwe)).toMatchObject({ alg, enc: "A256GCM" });
      expect(jwe).not.toContain(secret);
      const { plaintext } = await compactDecrypt(jwe, pair.privateKey);
      expect(JSON.parse(decoder.decode(plaintext)).credentials[0].versions[0].fields.secret_key).toBe(secret);

      const target = await createTenant(`public key target ${label}`);
      const withPassphrase = await importInto(target, { jwe, passphrase: PASSPHRASE });
      expect(withPassphrase.status).toBe(422);
      const imported = await importInto(target, { jwe, private_key: await exportJWK(pair.privateKey) });
      expect(imported.status, JSON.stringify(imported.body)).toBe(200);
      expect(imported.body.plan.credentials.create.map((e) => e.name)).toEqual(["To a key"]);
    });
  }

  it("refuses RSA under 3072 bits, other curves, and a key with private members", async () => {
    const tenant = await createTenant("bad public keys");
    const n2048 = base64url.encode(new Uint8Array(256).fill(0xc7));
    const p521 = await exportJWK(
      (await generateKeyPair("ECDH-ES+A256KW", { crv: "P-521", extractable: true })).publicKey,
    );
    const pair = await generateKeyPair("ECDH-ES+A256KW", { crv: "P-256", extractable: true });
    for (const [label, public_key, path] of [
      ["RSA 2048", { kty: "RSA", n: n2048, e: "AQAB" }, "public_key.n"],
      ["P-521", p521, "public_key.crv"],
      ["private", await exportJWK(pair.privateKey), "public_key.d"],
    ] as const) {
      const refused = await callJson<{ errors: { path: string }[] }>("POST", "/api/v1/export", {
        key: tenant.adminKey,
        body: { public_key },
      });
      expect(refused.status, label).toBe(422);
      expect(refused.body.errors[0]?.path, label).toBe(path);
    }
  });
});

describe("who may export and import", () => {
  it("needs a fresh second factor once the admin key enrolled TOTP (threat model case 26), on export and import", async () => {
    const tenant = await createTenant("step-up export");
    const jwe = await exportWith(tenant);
    const { secret, step } = await enrollTotp(tenant.adminKey);
    const headers = { "cf-connecting-ip": "198.51.100.91" };
    const before = await tenantState(tenant.id);
    for (const [path, body] of [
      ["/api/v1/export", { passphrase: PASSPHRASE }],
      ["/api/v1/import", { jwe, passphrase: PASSPHRASE }],
    ] as const) {
      const refused = await callJson<{ code: string }>("POST", path, { key: tenant.adminKey, headers, body });
      expect(refused.status, path).toBe(401);
      expect(refused.body.code).toBe("UNAUTHENTICATED");
    }
    expect(await tenantState(tenant.id)).toBe(before);
    // A code is accepted once (RFC 6238 §5.2): the next step's code opens this one import.
    const imported = await callJson("POST", "/api/v1/import", {
      key: tenant.adminKey,
      headers: { ...headers, "x-keywarden-totp": await totpAt(secret, step + 1) },
      body: { jwe, passphrase: PASSPHRASE, dry_run: true },
    });
    expect(imported.status).toBe(200);
  });

  it("refuses a key without the admin scope with 403 and writes nothing (threat model case 13)", async () => {
    const tenant = await createTenant("non-admin export");
    const writer = await createKey(tenant, { name: "writer", role: "read_write" });
    const jwe = await exportWith(tenant);
    const before = await tenantState(tenant.id, true);
    for (const [path, body] of [
      ["/api/v1/export", { passphrase: PASSPHRASE }],
      ["/api/v1/import", { jwe, passphrase: PASSPHRASE }],
    ] as const) {
      const refused = await callJson<{ code: string }>("POST", path, { key: writer.key, body });
      expect(refused.status, path).toBe(403);
    }
    expect(await tenantState(tenant.id, true)).toBe(before);
  });

  it("exports only the caller's tenant: another tenant's credentials, keys and channels never appear (threat model case 1)", async () => {
    const mine = await createTenant("case 1 mine");
    const theirs = await createTenant("case 1 theirs");
    await storeStripe(mine, "Mine");
    const their = await storeStripe(theirs, "Theirs");
    const theirKey = await createKey(theirs, { name: "their key" });
    await callJson("POST", "/api/v1/monitoring/channels", {
      key: theirs.adminKey,
      body: { kind: "email", name: "Their mail", to: "ops@theirs.example" },
    });
    const bundle = await openWithPassphrase(await exportWith(mine));
    expect(bundle.source_tenant).toBe(mine.id);
    expect(bundle.credentials.map((c) => c.name)).toEqual(["Mine"]);
    expect(bundle.keys.map((k) => k.id)).toEqual([mine.adminKeyId]);
    expect(bundle.channels).toEqual([]);
    const text = JSON.stringify(bundle);
    for (const value of [theirs.id, their.id, their.secret, theirKey.id, "Their mail"])
      expect(text).not.toContain(value);
  });

  it("answers with Cache-Control: no-store and audits counts only, never a name or value", async () => {
    const tenant = await createTenant("export audit");
    const { secret } = await storeStripe(tenant, "Audited name");
    const response = await call("POST", "/api/v1/export", {
      key: tenant.adminKey,
      body: { passphrase: PASSPHRASE },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    const row = await env.DB.prepare(
      "SELECT detail FROM audit_log WHERE tenant_id = ? AND action = 'tenant.export' ORDER BY seq DESC LIMIT 1",
    )
      .bind(tenant.id)
      .first<{ detail: string }>();
    expect(JSON.parse(row?.detail ?? "{}")).toEqual({
      credentials: 1,
      credential_versions: 1,
      keys: 1,
      channels: 0,
      rules: 0,
      policy: false,
      recipient: "passphrase",
      stream: false,
    });
    expect(row?.detail).not.toContain(secret);
    expect(row?.detail).not.toContain("Audited name");
  });
});
