import type { Context, MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import { database } from "../db/client";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { findKeyByHash, findKeyForManagement, findSessionKey, type KeyRecord } from "../keys/key-record";
import { judgeKey, type RequestOrigin, verifyKey } from "../keys/verify-key";
import { recordUsage } from "../monitoring/usage-recorder";
import { unseal } from "../vault/keyring";
import { purposeKey } from "../vault/system-keys";
import { rejectFailedAuth } from "./budgets";
import { clientCountry, clientIp } from "./client-address";
import type { Principal } from "./principal";
import type { Scope } from "./scopes";
import { verifySessionToken } from "./session-token";

/** `__Host-` forces Secure, Path=/ and no Domain, so no sibling subdomain can plant it (RFC 6265bis §4.1.3.2). */
export const SESSION_COOKIE = "__Host-kw_session";

const UNSAFE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export function requestOrigin(c: Context<AppEnv>): RequestOrigin {
  return { ip: () => clientIp(c), country: () => clientCountry(c) };
}

export interface AuthOptions {
  /**
   * Read the caller's key through the in-isolate cache (up to KEY_CACHE_TTL_MS stale) instead of fresh
   * from D1, and skip the tenant policy's admin allowlists. Only POST /keys/verify opts in: it is the hot
   * path, and it grants nothing beyond a verdict (threat model case 29).
   */
  cachedAuth?: boolean;
}

const outsideFence = () =>
  new ApiError("FORBIDDEN", "This key may not be used from this address or country.");

function bearerToken(c: Context<AppEnv>): string | null {
  const header = c.req.header("authorization");
  if (!header) return null;
  const match = /^Bearer ([\x21-\x7e]{1,512})$/.exec(header);
  if (!match?.[1]) throw new ApiError("UNAUTHENTICATED", "Use `Authorization: Bearer <key>`.");
  return match[1];
}

/**
 * The principal of a presented key. Outside the key's or the tenant's allowlists is 403 (only a valid key
 * gets that far), a key past its own rate limit is 429, and every other failure is one uniform 401 that
 * spends the client's failure budget. Fresh from D1 (one query, with the tenant's policy allowlists)
 * unless `cachedAuth`.
 */
export async function principalFromKey(
  c: Context<AppEnv>,
  key: string,
  options: AuthOptions = {},
): Promise<Principal> {
  const db = database(c.env.DB);
  const outcome = await verifyKey(
    {
      db,
      limiter: c.env.KEY_LIMITER,
      lookup: options.cachedAuth ? findKeyByHash : findKeyForManagement,
    },
    { key, origin: requestOrigin(c) },
  );
  if (outcome.record) {
    // A known key refused at authentication is the tenant's to see (the auth_failure_burst rule).
    recordUsage(c, {
      tenantId: outcome.record.tenantId,
      keyId: outcome.record.id,
      code: outcome.code,
      authFailed: outcome.code !== "VALID",
    });
  }
  if (outcome.code === "RATE_LIMITED") {
    const reset = outcome.limits?.ratelimit?.reset ?? Date.now() + 1000;
    throw new ApiError("RATE_LIMITED", "This key's rate limit is exhausted.", {
      retryAfterSeconds: (reset - Date.now()) / 1000,
    });
  }
  if (outcome.code === "FORBIDDEN") throw outsideFence();
  if (outcome.code !== "VALID" || !outcome.record) return rejectFailedAuth(c);
  return keyPrincipal(outcome.record);
}

/** One principal per cached record: the verify hot path then builds no Set per request. */
const keyPrincipals = new WeakMap<KeyRecord, Principal>();

function keyPrincipal(record: KeyRecord): Principal {
  let principal = keyPrincipals.get(record);
  if (!principal) {
    principal = Object.freeze({
      tenantId: record.tenantId,
      keyId: record.id,
      scopes: new Set(record.scopes),
      via: "key" as const,
    });
    keyPrincipals.set(record, principal);
  }
  return principal;
}

async function principalFromSession(c: Context<AppEnv>, token: string): Promise<Principal> {
  if (UNSAFE_METHODS.has(c.req.method)) assertSameOrigin(c);
  const db = database(c.env.DB);
  const key = await purposeKey(await unseal(c.env, db), db, "session-jwt");
  // A forged or stale cookie spends the same per-client failure budget as a bad key.
  const claims = await verifySessionToken(key, token).catch(() => rejectFailedAuth(c));
  // Fresh read, never the cache, and the same checks as a bearer key: a revoked or expired key ends its
  // sessions on the next request, and the key's and the tenant's allowlists hold on every request.
  const record = await findSessionKey(db, claims.tenantId, claims.keyId);
  const verdict = record ? judgeKey(record, { origin: requestOrigin(c) }, Date.now()) : "NOT_FOUND";
  if (verdict === "FORBIDDEN") throw outsideFence();
  if (!record || verdict !== "VALID") {
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

export async function authenticate(c: Context<AppEnv>, options: AuthOptions = {}): Promise<Principal> {
  const bearer = bearerToken(c);
  if (bearer !== null) return principalFromKey(c, bearer, options);
  const session = getCookie(c, SESSION_COOKIE);
  if (session) return principalFromSession(c, session);
  throw new ApiError("UNAUTHENTICATED", "The key is missing, invalid, expired or revoked.");
}

/**
 * Authenticates, applies the tenant's request budget, then checks one scope. Deny by default:
 * every tenant route names the scope it needs. Fresh from D1 and inside the tenant's admin allowlists
 * unless the route opts in to `cachedAuth`.
 */
export function requireScope(scope: Scope, options: AuthOptions = {}): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const principal = await authenticate(c, options);
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
