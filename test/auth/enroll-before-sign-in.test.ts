import { describe, expect, it } from "vitest";
import { fromBase32, stepAt, totpAt } from "../../src/auth/totp";
import { callJson, createTenant } from "../helpers/api";

type Problem = { code?: string; errors?: { path: string; message: string }[] };
type Who = { key_id: string; totp_enrolled: boolean; requires_2fa: boolean };

const signIn = (key: string, totp?: string) =>
  callJson<Problem>("POST", "/api/v1/auth/session", { body: totp === undefined ? { key } : { key, totp } });

/**
 * The console's path for an admin of a tenant that requires 2FA whose key never enrolled: the refused sign-in
 * names `totp` (so the page can offer enrollment), enrollment runs with the key as a bearer token, and the
 * confirmed key then signs in with a code.
 */
describe("enrolling TOTP before the first sign-in of a tenant that requires 2FA", () => {
  it("names totp in the refusal, enrolls with the key as bearer, then signs in with a fresh code", async () => {
    const tenant = await createTenant("console enrollment");
    const before = await callJson<Who>("GET", "/api/v1/auth/session", { key: tenant.adminKey });
    expect(before.body).toMatchObject({ totp_enrolled: false, requires_2fa: false });

    const policy = await callJson("PUT", "/api/v1/security-policy", {
      key: tenant.adminKey,
      body: {
        security_level: "enhanced",
        environment: "production",
        rotation_policy: "90_days",
        require_2fa: true,
      },
    });
    expect(policy.status).toBe(200);

    const refused = await signIn(tenant.adminKey);
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe("FORBIDDEN");
    expect(refused.body.errors).toEqual([{ path: "totp", message: "not enrolled" }]);

    const started = await callJson<{ secret: string; otpauth_uri: string }>(
      "POST",
      "/api/v1/auth/totp/enroll",
      { key: tenant.adminKey },
    );
    expect(started.status).toBe(201);
    expect(started.body.otpauth_uri).toContain(`secret=${started.body.secret}`);
    const secret = fromBase32(started.body.secret);
    const step = stepAt(Date.now());
    const confirmed = await callJson("POST", "/api/v1/auth/totp/confirm", {
      key: tenant.adminKey,
      body: { code: await totpAt(secret, step) },
    });
    expect(confirmed.status).toBe(200);

    const after = await callJson<Who>("GET", "/api/v1/auth/session", { key: tenant.adminKey });
    expect(after.body).toMatchObject({ totp_enrolled: true, requires_2fa: true });
    // Enrolled now: without a code the refusal is the ordinary 401 for a missing code, not "not enrolled".
    const withoutCode = await signIn(tenant.adminKey);
    expect(withoutCode.status).toBe(401);
    expect(withoutCode.body.errors?.[0]).toEqual({ path: "totp", message: "required for this key" });
    expect((await signIn(tenant.adminKey, await totpAt(secret, step + 1))).status).toBe(201);
  });
});
