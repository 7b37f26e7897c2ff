import { decodeProtectedHeader, jwtVerify, SignJWT } from "jose";
import { ApiError } from "../errors";

export const SESSION_ISSUER = "keywarden";
export const SESSION_AUDIENCE = "keywarden-wizard";
export const SESSION_TTL_SECONDS = 15 * 60;
export const SESSION_KEY_ID = "session-v1";
const CLOCK_TOLERANCE_SECONDS = 30;
const MAX_TOKEN_LENGTH = 4096;

export interface SessionClaims {
  tenantId: string;
  keyId: string;
}

export interface VerifiedSession extends SessionClaims {
  /** When the admin signed in (the token's iat), for step-up checks. */
  issuedAt: number;
}

export function issueSessionToken(key: CryptoKey, claims: SessionClaims, now = Date.now()): Promise<string> {
  const iat = Math.floor(now / 1000);
  return new SignJWT({ tid: claims.tenantId })
    .setProtectedHeader({ alg: "HS256", typ: "JWT", kid: SESSION_KEY_ID })
    .setIssuer(SESSION_ISSUER)
    .setAudience(SESSION_AUDIENCE)
    .setSubject(claims.keyId)
    .setIssuedAt(iat)
    .setExpirationTime(iat + SESSION_TTL_SECONDS)
    .sign(key);
}

const unauthenticated = () => new ApiError("UNAUTHENTICATED", "The session is missing, expired or invalid.");

/**
 * RFC 8725 (JWT BCP) §3.1-3.3, 3.8-3.9: one pinned algorithm, required iss/aud/exp/iat/sub, and
 * key material only from our own config. Header-supplied keys or key URLs (jku, x5u, jwk, x5c)
 * are refused outright rather than ignored, so no path ever fetches or trusts them.
 */
export async function verifySessionToken(
  key: CryptoKey,
  token: string,
  now = Date.now(),
): Promise<VerifiedSession> {
  if (token.length > MAX_TOKEN_LENGTH) throw unauthenticated();
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw unauthenticated();
  }
  if (header.alg !== "HS256" || header.kid !== SESSION_KEY_ID) throw unauthenticated();
  if ("jku" in header || "x5u" in header || "jwk" in header || "x5c" in header || "crit" in header) {
    throw unauthenticated();
  }
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: ["HS256"],
      issuer: SESSION_ISSUER,
      audience: SESSION_AUDIENCE,
      requiredClaims: ["exp", "iat", "sub", "iss", "aud"],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      maxTokenAge: SESSION_TTL_SECONDS + CLOCK_TOLERANCE_SECONDS,
      currentDate: new Date(now),
    });
    if (typeof payload.tid !== "string" || typeof payload.sub !== "string") throw unauthenticated();
    return { tenantId: payload.tid, keyId: payload.sub, issuedAt: (payload.iat as number) * 1000 };
  } catch {
    throw unauthenticated();
  }
}
