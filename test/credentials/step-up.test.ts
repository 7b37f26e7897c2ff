import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { issueSessionToken } from "../../src/auth/session-token";
import { STEP_UP_WINDOW_MS } from "../../src/auth/step-up";
import { stepAt, totpAt } from "../../src/auth/totp";
import { database } from "../../src/db/client";
import { unseal } from "../../src/vault/keyring";
import { purposeKey } from "../../src/vault/system-keys";
import { BASE, call, callJson, createTenant, type TestTenant } from "../helpers/api";
import { enrollTotp } from "../helpers/totp";
import { stripeKey } from "./samples";

async function sessionCookie(tenant: TestTenant, issuedAt = Date.now()) {
  const key = await purposeKey(await unseal(env, database(env.DB)), database(env.DB), "session-jwt");
  const token = await issueSessionToken(key, { tenantId: tenant.id, keyId: tenant.adminKeyId }, issuedAt);
  return { cookie: `__Host-kw_session=${token}`, origin: BASE };
}

async function storedCredential(tenant: TestTenant) {
  const { body } = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service: "stripe", environment: "development", fields: { secret_key: stripeKey() } },
  });
  return body.id;
}

describe("step-up before a credential is revealed", () => {
  it("reveals within the step-up window after sign-in, and refuses an older session", async () => {
    const tenant = await createTenant("step-up");
    const id = await storedCredential(tenant);
    const fresh = await call("POST", `/api/v1/credentials/${id}/reveal`, {
      body: {},
      headers: await sessionCookie(tenant),
    });
    expect(fresh.status).toBe(200);
    const stale = await callJson<{ code: string }>("POST", `/api/v1/credentials/${id}/reveal`, {
      body: {},
      headers: await sessionCookie(tenant, Date.now() - STEP_UP_WINDOW_MS - 60_000),
    });
    expect(stale.status).toBe(401);
    expect(stale.body.code).toBe("UNAUTHENTICATED");
  });

  it("needs a fresh 2FA code once the session's key has enrolled", async () => {
    const tenant = await createTenant("step-up 2fa");
    const id = await storedCredential(tenant);
    const { secret } = await enrollTotp(tenant.adminKey);
    const headers = { ...(await sessionCookie(tenant)), "cf-connecting-ip": "198.51.100.77" };
    const without = await call("POST", `/api/v1/credentials/${id}/reveal`, { body: {}, headers });
    expect(without.status).toBe(401);
    const withCode = await call("POST", `/api/v1/credentials/${id}/reveal`, {
      body: { totp: await totpAt(secret, stepAt(Date.now()) + 1) },
      headers,
    });
    expect(withCode.status).toBe(200);
    // The same key as `Authorization: Bearer` cannot walk around its second factor (threat model case 26).
    const bearer = await callJson<{ code: string }>("POST", `/api/v1/credentials/${id}/reveal`, {
      key: tenant.adminKey,
      body: {},
    });
    expect(bearer.status).toBe(401);
    expect(bearer.body.code).toBe("UNAUTHENTICATED");
  });
});
