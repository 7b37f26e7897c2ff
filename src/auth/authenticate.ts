import { and, eq } from "drizzle-orm";
import type { Context, MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import { database } from "../db/client";
import { apiKeys } from "../db/schema";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { toKeyRecord } from "../keys/key-record";
import { recordVerification } from "../keys/usage-recorder";
import { type RequestOrigin, verifyKey } from "../keys/verify-key";
import { purposeKey, unseal } from "../vault/keyring";
import type { Principal } from "./principal";
import type { Scope } from "./scopes";
import { verifySessionToken } from "./session-token";

/** `__Host-` forces Secure, Path=/ and no Domain, so no sibling subdomain can plant it (RFC 6265bis §4.1.3.2). */
export const SESSION_COOKIE = "__Host-kw_session";

const UNSAFE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function clientIp(c: Context<AppEnv>): string | undefined {
  return c.req.header("cf-connecting-ip") ?? undefined;
}

function clientCountry(c: Context<AppEnv>): string | undefined {
  const country = c.req.raw.cf?.country;
  return typeof country === "string" ? country : undefined;
}

export function requestOrigin(c: Context<AppEnv>): RequestOrigin {
  return { ip: () => clientIp(c), country: () => clientCountry(c) };
}

function bearerToken(c: Context<AppEnv>): string | null {
  const header = c.req.header("authorization");
  if (!header) return null;
  const match = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
  if (!match?.[1]) throw new ApiError("UNAUTHENTICATED", "Use `Authorization: Bearer <key>`.");
  return match[1];
}

/**
 * Every failed authentication (bad key, forged cookie, wrong 2FA code) spends the caller's per-IP failure
 * budget: guessing costs the guesser, not the key owners (ASVS 5.0 V6.3.1).
 */
export async function rejectFailedAuth(
  c: Context<AppEnv>,
  failure = new ApiError("UNAUTHENTICATED", "The key is missing, invalid, expired or revoked."),
): Promise<never> {
  const { success } = await c.env.AUTH_FAILURE_LIMITER.limit({ key: clientIp(c) ?? "unknown" });
  if (!success) throw new ApiError("RATE_LIMITED", "Too many failed attempts.", { retryAfterSeconds: 60 });
  throw failure;
}

async function principalFromKey(c: Context<AppEnv>, key: string): Promise<Principal> {
  const db = database(c.env.DB);
  const outcome = await verifyKey({ db, limiter: c.env.KEY_LIMITER }, { key, origin: requestOrigin(c) });
  if (outcome.record) {
    recordVerification(
      c.executionCtx,
      db,
      {
        tenantId: outcome.record.tenantId,
        keyId: outcome.record.id,
        valid: outcome.code === "VALID",
        at: Date.now(),
      },
      Number(c.env.USAGE_FLUSH_MS ?? 1000),
    );
  }
  if (outcome.code === "RATE_LIMITED") {
    const reset = outcome.limits?.ratelimit?.reset ?? Date.now() + 1000;
    throw new ApiError("RATE_LIMITED", "This key's rate limit is exhausted.", {
      retryAfterSeconds: (reset - Date.now()) / 1000,
    });
  }
  if (outcome.code !== "VALID" || !outcome.record) return rejectFailedAuth(c);
  return {
    tenantId: outcome.record.tenantId,
    keyId: outcome.record.id,
    scopes: new Set(outcome.record.scopes),
    via: "key",
  };
}

async function principalFromSession(c: Context<AppEnv>, token: string): Promise<Principal> {
  if (UNSAFE_METHODS.has(c.req.method)) assertSameOrigin(c);
  const db = database(c.env.DB);
  const key = await purposeKey(await unseal(c.env, db), "session-jwt");
  // A forged or stale cookie spends the same per-IP failure budget as a bad key.
  const claims = await verifySessionToken(key, token).catch(() => rejectFailedAuth(c));
  // Fresh read, not the cache: a revoked admin key ends its sessions on the next request.
  const row = await db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.id, claims.keyId), eq(apiKeys.tenantId, claims.tenantId)))
    .get();
  const record = row && toKeyRecord(row);
  if (!record?.enabled || record.revoked || (record.expiresAt !== null && record.expiresAt <= Date.now())) {
    throw new ApiError("UNAUTHENTICATED", "The session's key is no longer valid.");
  }
  return {
    tenantId: record.tenantId,
    keyId: record.id,
    scopes: new Set(record.scopes),
    via: "session",
    authenticatedAt: claims.issuedAt,
  };
}

/**
 * Cookie-authenticated writes must come from our own pages. SameSite=Strict already blocks
 * cross-site sends; the Origin check covers same-site-but-cross-origin (OWASP CSRF CS).
 */
function assertSameOrigin(c: Context<AppEnv>): void {
  const origin = c.req.header("origin");
  const allowed = c.env.PUBLIC_ORIGIN || new URL(c.req.url).origin;
  if (origin !== allowed) throw new ApiError("FORBIDDEN", "Cross-origin request refused.");
}

export async function authenticate(c: Context<AppEnv>): Promise<Principal> {
  const bearer = bearerToken(c);
  if (bearer !== null) return principalFromKey(c, bearer);
  const session = getCookie(c, SESSION_COOKIE);
  if (session) return principalFromSession(c, session);
  throw new ApiError("UNAUTHENTICATED", "The key is missing, invalid, expired or revoked.");
}

/**
 * Authenticates, applies the tenant's request budget, then checks one scope. Deny by default:
 * every tenant route names the scope it needs.
 */
export function requireScope(scope: Scope): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = await authenticate(c);
    const { success } = await c.env.TENANT_RATE_LIMITER.limit({ key: principal.tenantId });
    if (!success)
      throw new ApiError("RATE_LIMITED", "The tenant's request budget is exhausted.", {
        retryAfterSeconds: 60,
      });
    if (!principal.scopes.has(scope))
      throw new ApiError("FORBIDDEN", `This call needs the \`${scope}\` scope.`);
    c.set("principal", principal);
    await next();
  };
}
