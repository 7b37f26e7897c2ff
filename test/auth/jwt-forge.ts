/**
 * Hand-rolled JWT forging for the session-token tests. jose refuses to *sign* most of the
 * malformed tokens an attacker would send (alg:none with a kid, unknown crit, claims of the
 * wrong type), so the tests build compact JWS strings byte by byte and sign them with WebCrypto.
 */
import { env } from "cloudflare:workers";
import { call } from "../helpers/api";

export const SESSION_COOKIE = "__Host-kw_session";

const encoder = new TextEncoder();

export function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function base64urlJson(value: unknown): string {
  return base64url(encoder.encode(JSON.stringify(value)));
}

export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

export type HmacHash = "SHA-256" | "SHA-384" | "SHA-512";

/** Compact JWS over arbitrary header and payload JSON, HMAC-signed with raw secret bytes. */
export async function hmacJwt(
  secret: Uint8Array,
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  hash: HmacHash = "SHA-256",
): Promise<string> {
  const signingInput = `${base64urlJson(header)}.${base64urlJson(payload)}`;
  const key = await crypto.subtle.importKey("raw", new Uint8Array(secret), { name: "HMAC", hash }, false, [
    "sign",
  ]);
  const signature = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(signingInput)));
  return `${signingInput}.${base64url(signature)}`;
}

/** An unsigned token: `header.payload.` with an empty signature. */
export function unsignedJwt(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  return `${base64urlJson(header)}.${base64urlJson(payload)}.`;
}

/**
 * The raw bytes behind `purposeKey(..., "session-jwt")`, re-derived independently from the test
 * MASTER_KEY (HKDF-SHA-256, salt "keywarden/v1", info "hmac:session-jwt", 512 bits = the HMAC
 * SHA-256 block size WebCrypto uses when no length is given). The suite proves the derivation
 * is right by getting a token signed with it accepted; only then do the forged-variant
 * rejections mean anything.
 */
export async function sessionSecret(): Promise<Uint8Array<ArrayBuffer>> {
  const master = await crypto.subtle.importKey("raw", fromBase64(env.MASTER_KEY), "HKDF", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: encoder.encode("keywarden/v1"),
      info: encoder.encode("hmac:session-jwt"),
    },
    master,
    512,
  );
  return new Uint8Array(bits);
}

export const GOOD_HEADER = { alg: "HS256", typ: "JWT", kid: "session-v1" } as const;

/** Valid session claims for `keyId` in `tenantId`, issued at `nowMs`; `overrides` set or (with undefined) drop claims. */
export function claims(
  tenantId: string,
  keyId: string,
  nowMs = Date.now(),
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const iat = Math.floor(nowMs / 1000);
  const base: Record<string, unknown> = {
    tid: tenantId,
    iss: "keywarden",
    aud: "keywarden-wizard",
    sub: keyId,
    iat,
    exp: iat + 15 * 60,
    ...overrides,
  };
  for (const [name, value] of Object.entries(base)) if (value === undefined) delete base[name];
  return base;
}

let clientCounter = 0;

/**
 * The token as the session cookie, from a fresh client address each time: forged cookies spend the
 * per-IP failed-auth budget, and each case here should be judged on its own token alone.
 */
export function cookieHeader(token: string): Record<string, string> {
  clientCounter += 1;
  return {
    cookie: `${SESSION_COOKIE}=${token}`,
    "cf-connecting-ip": `198.18.${clientCounter >> 8}.${clientCounter & 255}`,
  };
}

/** GET /api/v1/auth/session with the token as the session cookie (a safe method: no Origin needed). */
export async function whoAmI(token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await call("GET", "/api/v1/auth/session", { headers: cookieHeader(token) });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** The session token out of a Set-Cookie header, or null. */
export function sessionFromSetCookie(setCookie: string | null): string | null {
  if (!setCookie) return null;
  const match = new RegExp(`(?:^|,\\s*)${SESSION_COOKIE}=([^;]*)`).exec(setCookie);
  return match?.[1] ?? null;
}
