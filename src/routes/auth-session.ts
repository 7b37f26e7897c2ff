import { createRoute, z } from "@hono/zod-openapi";
import { and, eq, lt } from "drizzle-orm";
import type { Context } from "hono";
import { deleteCookie, setCookie } from "hono/cookie";
import { clientCountry, clientIp, requireScope, SESSION_COOKIE } from "../auth/authenticate";
import { issueSessionToken, SESSION_TTL_SECONDS } from "../auth/session-token";
import { matchTotp } from "../auth/totp";
import { totpSecretOf } from "../auth/totp-store";
import { type Database, database } from "../db/client";
import { adminTotp, securityPolicies } from "../db/schema";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import type { KeyRecord } from "../keys/key-record";
import { verifyKey } from "../keys/verify-key";
import {
  bearerSecurity,
  createRouter,
  isoTime,
  jsonBody,
  jsonContent,
  NO_STORE,
  problems,
} from "../openapi/shared";
import { purposeKey, unseal } from "../vault/keyring";

const SessionSchema = z
  .object({ tenant_id: z.string(), key_id: z.string(), scopes: z.array(z.string()), expires_at: z.string() })
  .openapi("Session");

const createSession = createRoute({
  method: "post",
  path: "/",
  tags: ["Auth"],
  summary: "Exchange an admin key for a short-lived wizard session cookie",
  request: {
    body: jsonBody(
      z
        .strictObject({
          key: z.string().max(512),
          totp: z
            .string()
            .max(10)
            .optional()
            .describe("The current 6-digit code, once 2FA is enrolled for the key."),
        })
        .openapi("CreateSession"),
    ),
  },
  responses: {
    201: jsonContent(SessionSchema, "Session started; the JWT is only in the `__Host-kw_session` cookie."),
    ...problems("UNAUTHENTICATED", "FORBIDDEN", "VALIDATION_FAILED", "SEALED", "RATE_LIMITED"),
  },
});

const currentSession = createRoute({
  method: "get",
  path: "/",
  tags: ["Auth"],
  summary: "Who am I (session or key)",
  security: bearerSecurity,
  middleware: [requireScope("wizard")] as const,
  responses: {
    200: jsonContent(SessionSchema.omit({ expires_at: true }), "The caller."),
    ...problems("UNAUTHENTICATED"),
  },
});

const endSession = createRoute({
  method: "delete",
  path: "/",
  tags: ["Auth"],
  summary: "Sign out (clears the cookie)",
  responses: { 204: { description: "Signed out." } },
});

/**
 * Once a key has enrolled TOTP, sign-in needs a fresh code (never one already used); a tenant whose
 * policy requires 2FA refuses keys that have not enrolled yet (NIST SP 800-63B §4.2.1, AAL2).
 */
async function assertSecondFactor(
  c: Context<AppEnv>,
  db: Database,
  record: KeyRecord,
  code: string | undefined,
) {
  const enrolled = await db
    .select()
    .from(adminTotp)
    .where(and(eq(adminTotp.keyId, record.id), eq(adminTotp.tenantId, record.tenantId)))
    .get();
  if (!enrolled?.confirmedAt) {
    const policy = await db
      .select()
      .from(securityPolicies)
      .where(eq(securityPolicies.tenantId, record.tenantId))
      .get();
    if (policy?.require2fa) {
      throw new ApiError(
        "FORBIDDEN",
        "This tenant requires 2FA: enroll it with POST /api/v1/auth/totp/enroll first.",
      );
    }
    return;
  }
  const step = code
    ? await matchTotp(await totpSecretOf(c.env, db, enrolled), code, Date.now(), enrolled.lastStep)
    : null;
  // Compare-and-set on last_step: of two sign-ins racing with one code, only one wins.
  const claimed =
    step !== null &&
    (
      await db
        .update(adminTotp)
        .set({ lastStep: step })
        .where(and(eq(adminTotp.keyId, record.id), lt(adminTotp.lastStep, step)))
        .run()
    ).meta.changes === 1;
  if (!claimed) {
    const { success } = await c.env.AUTH_FAILURE_LIMITER.limit({ key: clientIp(c) ?? "unknown" });
    if (!success) throw new ApiError("RATE_LIMITED", "Too many failed attempts.", { retryAfterSeconds: 60 });
    throw new ApiError("UNAUTHENTICATED", "A valid two-factor code is required.", {
      errors: [
        { path: "totp", message: code ? "did not match or was already used" : "required for this key" },
      ],
    });
  }
}

export const authSessionRoutes = createRouter()
  .openapi(createSession, async (c) => {
    const db = database(c.env.DB);
    const outcome = await verifyKey(
      { db, limiter: c.env.KEY_LIMITER },
      { key: c.req.valid("json").key, ip: clientIp(c), country: clientCountry(c) },
    );
    if (outcome.code !== "VALID" || !outcome.record) {
      const { success } = await c.env.AUTH_FAILURE_LIMITER.limit({ key: clientIp(c) ?? "unknown" });
      if (!success)
        throw new ApiError("RATE_LIMITED", "Too many failed attempts.", { retryAfterSeconds: 60 });
      throw new ApiError("UNAUTHENTICATED", "The key is missing, invalid, expired or revoked.");
    }
    const { record } = outcome;
    if (!record.scopes.includes("wizard"))
      throw new ApiError("FORBIDDEN", "Only keys with the `wizard` scope can sign in.");
    await assertSecondFactor(c, db, record, c.req.valid("json").totp);
    const signingKey = await purposeKey(await unseal(c.env, db), "session-jwt");
    const now = Date.now();
    const token = await issueSessionToken(signingKey, { tenantId: record.tenantId, keyId: record.id }, now);
    setCookie(c, SESSION_COOKIE, token, {
      httpOnly: true,
      secure: true,
      sameSite: "Strict",
      path: "/",
      maxAge: SESSION_TTL_SECONDS,
    });
    return c.json(
      {
        tenant_id: record.tenantId,
        key_id: record.id,
        scopes: [...record.scopes],
        expires_at: isoTime(now + SESSION_TTL_SECONDS * 1000) as string,
      },
      201,
      NO_STORE,
    );
  })
  .openapi(currentSession, (c) => {
    const principal = c.get("principal");
    return c.json(
      { tenant_id: principal.tenantId, key_id: principal.keyId, scopes: [...principal.scopes] },
      200,
    );
  })
  .openapi(endSession, (c) => {
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true });
    return c.body(null, 204);
  });
