import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { fromBase32, matchTotp, stepAt, toBase32, totpAt } from "../../src/auth/totp";
import { utf8 } from "../../src/crypto/encoding";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";

let ipCounter = 0;
const freshIp = () => ({ "cf-connecting-ip": `198.19.0.${++ipCounter}` });

async function signIn(key: string, totp?: string) {
  return callJson<{ code?: string; errors?: { path: string }[] }>("POST", "/api/v1/auth/session", {
    body: totp === undefined ? { key } : { key, totp },
    headers: freshIp(),
  });
}

async function enroll(tenant: TestTenant) {
  const started = await callJson<{ secret: string; otpauth_uri: string }>(
    "POST",
    "/api/v1/auth/totp/enroll",
    {
      key: tenant.adminKey,
    },
  );
  expect(started.status).toBe(201);
  expect(started.headers.get("cache-control")).toBe("no-store");
  return fromBase32(started.body.secret);
}

describe("TOTP (RFC 6238)", () => {
  it("matches the RFC 6238 appendix B SHA-1 test vectors (6-digit truncation)", async () => {
    const secret = utf8("12345678901234567890");
    expect(await totpAt(secret, stepAt(59_000))).toBe("287082");
    expect(await totpAt(secret, stepAt(1_111_111_109_000))).toBe("081804");
    expect(await totpAt(secret, stepAt(1_234_567_890_000))).toBe("005924");
    expect(await totpAt(secret, stepAt(2_000_000_000_000))).toBe("279037");
  });

  it("round-trips base32 and accepts one step of drift but not two, nor a replayed step", async () => {
    const secret = utf8("12345678901234567890");
    expect(fromBase32(toBase32(secret))).toEqual(secret);
    const now = 1_234_567_890_000;
    const step = stepAt(now);
    expect(await matchTotp(secret, await totpAt(secret, step - 1), now, 0)).toBe(step - 1);
    expect(await matchTotp(secret, await totpAt(secret, step - 2), now, 0)).toBeNull();
    expect(await matchTotp(secret, await totpAt(secret, step), now, step)).toBeNull();
    expect(await matchTotp(secret, "12345", now, 0)).toBeNull();
  });

  it("compares every candidate code in constant time (threat model case 24)", async () => {
    const spy = vi.spyOn(crypto.subtle, "timingSafeEqual");
    await matchTotp(utf8("12345678901234567890"), "000000", Date.now(), 0);
    expect(spy).toHaveBeenCalledTimes(3);
    spy.mockRestore();
  });
});

describe("two-factor sign-in", () => {
  it("requires a fresh code once enrolled, and never accepts the same code twice", async () => {
    const tenant = await createTenant("2fa");
    const secret = await enroll(tenant);
    // Before confirmation, sign-in still works without a code.
    expect((await signIn(tenant.adminKey)).status).toBe(201);
    const code = await totpAt(secret, stepAt(Date.now()));
    const confirmed = await callJson("POST", "/api/v1/auth/totp/confirm", {
      key: tenant.adminKey,
      body: { code },
    });
    expect(confirmed.status).toBe(200);

    const missing = await signIn(tenant.adminKey);
    expect(missing.status).toBe(401);
    expect(missing.body.errors?.[0]?.path).toBe("totp");
    // The confirmation used the current step, so the same code is a replay.
    expect((await signIn(tenant.adminKey, code)).status).toBe(401);
    const next = await totpAt(secret, stepAt(Date.now()) + 1);
    expect((await signIn(tenant.adminKey, next)).status).toBe(201);
    expect((await signIn(tenant.adminKey, next)).status).toBe(401);
    expect((await signIn(tenant.adminKey, "000000")).status).toBe(401);
  });

  it("refuses to enroll twice and keeps the secret out of D1 in plaintext", async () => {
    const tenant = await createTenant("2fa twice");
    const secret = await enroll(tenant);
    await callJson("POST", "/api/v1/auth/totp/confirm", {
      key: tenant.adminKey,
      body: { code: await totpAt(secret, stepAt(Date.now())) },
    });
    expect((await callJson("POST", "/api/v1/auth/totp/enroll", { key: tenant.adminKey })).status).toBe(409);
    const row = await env.DB.prepare("SELECT sealed_secret FROM admin_totp WHERE key_id = ?")
      .bind(tenant.adminKeyId)
      .first<{ sealed_secret: string }>();
    expect(row?.sealed_secret).not.toContain(toBase32(secret));
  });

  it("refuses sign-in to a key without 2FA when the tenant's policy requires it", async () => {
    const tenant = await createTenant("2fa policy");
    const other = await createKey(tenant, { name: "second admin", role: "admin" });
    await env.DB.prepare(
      "INSERT INTO security_policies (tenant_id, security_level, environment, rotation_policy, rotation_days, ip_allowlist, country_allowlist, require_2fa, compliance, wizard_id, updated_at) VALUES (?, 'enterprise', 'production', '90_days', 90, '[]', '[]', 1, '[]', 'w', 0)",
    )
      .bind(tenant.id)
      .run();
    const refused = await signIn(other.key);
    expect(refused.status).toBe(403);
  });
});
