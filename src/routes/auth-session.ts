import { createRoute, z } from "@hono/zod-openapi";
import { deleteCookie, setCookie } from "hono/cookie";
import { rejectFailedAuth, requestOrigin, requireScope, SESSION_COOKIE } from "../auth/authenticate";
import { assertSecondFactor } from "../auth/second-factor";
import { issueSessionToken, SESSION_TTL_SECONDS } from "../auth/session-token";
import { database } from "../db/client";
import { ApiError } from "../errors";
import { verifyKey } from "../keys/verify-key";
import {
  AUTH_PROBLEMS,
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
    ...problems(...AUTH_PROBLEMS),
  },
});

const endSession = createRoute({
  method: "delete",
  path: "/",
  tags: ["Auth"],
  summary: "Sign out (clears the cookie)",
  responses: { 204: { description: "Signed out." } },
});

export const authSessionRoutes = createRouter()
  .openapi(createSession, async (c) => {
    const db = database(c.env.DB);
    const outcome = await verifyKey(
      { db, limiter: c.env.KEY_LIMITER },
      { key: c.req.valid("json").key, origin: requestOrigin(c) },
    );
    if (outcome.code !== "VALID" || !outcome.record) return rejectFailedAuth(c);
    const { record } = outcome;
    if (!record.scopes.includes("wizard"))
      throw new ApiError("FORBIDDEN", "Only keys with the `wizard` scope can sign in.");
    await assertSecondFactor(
      c,
      db,
      { keyId: record.id, tenantId: record.tenantId },
      c.req.valid("json").totp,
    );
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
