import { createRoute, z } from "@hono/zod-openapi";
import { deleteCookie, setCookie } from "hono/cookie";
import { principalFromKey, requireScope, SESSION_COOKIE } from "../auth/authenticate";
import { spendAuthAttempt } from "../auth/budgets";
import { assertSecondFactor, secondFactorState } from "../auth/second-factor";
import { issueSessionToken, SESSION_TTL_SECONDS } from "../auth/session-token";
import { database } from "../db/client";
import { ApiError } from "../errors";
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
import { unseal } from "../vault/keyring";
import { purposeKey } from "../vault/system-keys";

const SessionSchema = z
  .object({ tenant_id: z.string(), key_id: z.string(), scopes: z.array(z.string()), expires_at: z.string() })
  .openapi("Session");

const createSession = createRoute({
  method: "post",
  path: "/",
  operationId: "createSession",
  security: [],
  tags: ["Auth"],
  summary: "Exchange an admin key for a short-lived wizard session cookie",
  description:
    "Every call spends the client's sign-in attempt budget before anything is checked. The key is read " +
    "fresh and must be used from inside its own and the tenant policy's allowlists. Once the key has " +
    "enrolled TOTP a fresh code is required; wrong codes count towards the key's lockout.",
  // Spent before the key or the code is looked at: over budget is refused even with the right secrets.
  middleware: [spendAuthAttempt] as const,
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
  operationId: "getSession",
  tags: ["Auth"],
  summary: "Who am I (session or key)",
  security: bearerSecurity,
  middleware: [requireScope("wizard")] as const,
  responses: {
    200: jsonContent(
      SessionSchema.omit({ expires_at: true }).extend({
        totp_enrolled: z.boolean().describe("Whether this key has confirmed TOTP enrollment."),
        requires_2fa: z.boolean().describe("Whether the tenant's security policy requires 2FA."),
      }),
      "The caller, and its second factor (the console shows it and asks for a code only when one is needed).",
    ),
    ...problems(...AUTH_PROBLEMS),
  },
});

const endSession = createRoute({
  method: "delete",
  path: "/",
  operationId: "deleteSession",
  security: [],
  tags: ["Auth"],
  summary: "Sign out (clears the cookie)",
  responses: { 204: { description: "Signed out." } },
});

export const authSessionRoutes = createRouter()
  .openapi(createSession, async (c) => {
    const db = database(c.env.DB);
    const body = c.req.valid("json");
    const principal = await principalFromKey(c, body.key);
    if (!principal.scopes.has("wizard"))
      throw new ApiError("FORBIDDEN", "Only keys with the `wizard` scope can sign in.");
    await assertSecondFactor(c, db, principal, body.totp);
    const signingKey = await purposeKey(await unseal(c.env, db), db, "session-jwt");
    const now = Date.now();
    const token = await issueSessionToken(
      signingKey,
      { tenantId: principal.tenantId, keyId: principal.keyId },
      now,
    );
    setCookie(c, SESSION_COOKIE, token, {
      httpOnly: true,
      secure: true,
      sameSite: "Strict",
      path: "/",
      maxAge: SESSION_TTL_SECONDS,
    });
    return c.json(
      {
        tenant_id: principal.tenantId,
        key_id: principal.keyId,
        scopes: [...principal.scopes],
        expires_at: isoTime(now + SESSION_TTL_SECONDS * 1000) as string,
      },
      201,
      NO_STORE,
    );
  })
  .openapi(currentSession, async (c) => {
    const principal = c.get("principal");
    const { totp, require2fa } = await secondFactorState(database(c.env.DB), principal);
    return c.json(
      {
        tenant_id: principal.tenantId,
        key_id: principal.keyId,
        scopes: [...principal.scopes],
        totp_enrolled: Boolean(totp?.confirmedAt),
        requires_2fa: require2fa,
      },
      200,
    );
  })
  .openapi(endSession, (c) => {
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true });
    return c.body(null, 204);
  });
