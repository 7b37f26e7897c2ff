import {
  createKeywardenClient,
  type KeywardenClient,
  KeywardenError,
  type RetryOptions,
  type VerifyCode,
  type VerifyVerdict,
} from "@keywarden/client";

/** How the protected service reaches Keywarden: a client made with the root key, or where and with what. */
export type KeywardenConnection =
  | { client: KeywardenClient }
  | {
      /** Keywarden's origin, e.g. `http://127.0.0.1:8787`. */
      baseUrl: string;
      /** A Keywarden key of the same tenant holding `keys:verify` (a "root key"): a secret of the service. */
      rootKey: string;
      /** How to reach Keywarden (default `globalThis.fetch`; a service binding's fetch works too). */
      fetch?: (request: Request) => Promise<Response>;
      /** Retries of the verify call (default: 2 attempts, at most 1 s apart: the caller is waiting). */
      retry?: RetryOptions | false;
      /** Per attempt (default 5,000 ms). */
      timeoutMs?: number;
    };

export type KeywardenAuthOptions = KeywardenConnection & {
  /** Scopes every request must carry; a key without one of them gets 403. */
  scopes?: string[];
  /** Reads the caller's key from the request (default: `Authorization: Bearer <key>`). */
  getKey?: (request: Request) => string | null | undefined;
  /** Builds the refusal (default: an RFC 9457 problem+json response, see `denialResponse`). */
  onError?: (denial: Denial, request: Request) => Response | Promise<Response>;
};

/** Why a request is refused, with the status and headers it gets. */
export interface Denial {
  status: 401 | 403 | 429 | 503;
  /** The verify code, `UNAUTHENTICATED` (no key sent) or `KEYWARDEN_UNAVAILABLE` (no verdict: fail closed). */
  code: VerifyCode | "UNAUTHENTICATED" | "KEYWARDEN_UNAVAILABLE";
  detail: string;
  headers: Headers;
  /** Keywarden's verdict, when there is one. */
  verdict?: VerifyVerdict;
}

export type Judgement =
  | { allowed: true; verdict: VerifyVerdict; headers: Headers }
  | { allowed: false; denial: Denial };

const MIDDLEWARE_RETRY: RetryOptions = { attempts: 2, maxDelayMs: 1_000 };
const MIDDLEWARE_TIMEOUT_MS = 5_000;
/** The quota policy's name in the RateLimit fields: each Keywarden key has one window. */
const POLICY = '"keywarden"';

export function clientFor(connection: KeywardenConnection): KeywardenClient {
  if ("client" in connection) return connection.client;
  return createKeywardenClient({
    baseUrl: connection.baseUrl,
    key: connection.rootKey,
    ...(connection.fetch ? { fetch: connection.fetch } : {}),
    retry: connection.retry ?? MIDDLEWARE_RETRY,
    timeoutMs: connection.timeoutMs ?? MIDDLEWARE_TIMEOUT_MS,
  });
}

/** `Authorization: Bearer <key>` (the scheme is case-insensitive, RFC 9110 §11.1). */
export function bearerKey(request: Request): string | undefined {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(request.headers.get("authorization") ?? "");
  return match?.[1];
}

/**
 * The RateLimit fields of draft-ietf-httpapi-ratelimit-headers (-09): the key's quota as a policy and what
 * is left of the current window, `t` seconds until it resets. The verdict does not carry the window's
 * length, so the policy names the quota only (`w` is optional in the draft).
 */
export function rateLimitHeaders(verdict: VerifyVerdict, now: number): Headers {
  const headers = new Headers();
  const limit = verdict.ratelimit;
  if (!limit) return headers;
  const resetSeconds = Math.max(0, Math.ceil((limit.reset - now) / 1000));
  headers.set("ratelimit-policy", `${POLICY};q=${limit.limit}`);
  headers.set("ratelimit", `${POLICY};r=${limit.remaining};t=${resetSeconds}`);
  if (verdict.code === "RATE_LIMITED") headers.set("retry-after", String(Math.max(1, resetSeconds)));
  return headers;
}

const DETAILS: Record<Exclude<VerifyCode, "VALID">, string> = {
  INVALID_FORMAT: "The key is not a Keywarden key.",
  NOT_FOUND: "The key is not known.",
  DISABLED: "The key is disabled or revoked.",
  EXPIRED: "The key has expired.",
  FORBIDDEN: "The key may not be used from where this request comes from.",
  INSUFFICIENT_SCOPES: "The key lacks a scope this route requires.",
  RATE_LIMITED: "The key's rate limit is spent for now.",
  USAGE_EXCEEDED: "The key has used up its allowed requests.",
};

/** The one mapping from a verdict to an HTTP answer, shared by the Hono middleware and `protectFetch`. */
export function denialFor(verdict: VerifyVerdict, scopes: readonly string[], now: number): Denial | null {
  if (verdict.valid === true && verdict.code === "VALID") return null;
  // `valid: false` with VALID is not an answer Keywarden gives; if it ever came, it is refused.
  const code = verdict.code === "VALID" ? "DISABLED" : verdict.code;
  const headers = rateLimitHeaders(verdict, now);
  const denial = (status: Denial["status"]): Denial => ({
    status,
    code,
    detail: DETAILS[code],
    headers,
    verdict,
  });
  switch (code) {
    // RFC 6750 §3.1: an expired, revoked, malformed or unknown token is invalid_token, answered with 401.
    case "INVALID_FORMAT":
    case "NOT_FOUND":
    case "DISABLED":
    case "EXPIRED":
      headers.set("www-authenticate", 'Bearer error="invalid_token"');
      return denial(401);
    // RFC 6750 §3.1: insufficient_scope is 403, naming the scope the resource needs.
    case "INSUFFICIENT_SCOPES":
      headers.set("www-authenticate", `Bearer error="insufficient_scope", scope="${scopes.join(" ")}"`);
      return denial(403);
    case "FORBIDDEN":
      return denial(403);
    case "RATE_LIMITED":
    case "USAGE_EXCEEDED":
      return denial(429);
    default:
      // Fail closed: a 200 that is not a verdict (no code, a code this version does not know, a proxy's page)
      // must never let the request through.
      return unavailable();
  }
}

/** No verdict to act on: 503, never the protected route. */
function unavailable(): Denial {
  return {
    status: 503,
    code: "KEYWARDEN_UNAVAILABLE",
    detail: "The key could not be checked right now; try again shortly.",
    headers: new Headers(),
  };
}

/**
 * Asks Keywarden about the request's key. Fails closed: no key is 401, and when Keywarden gives no verdict
 * (unreachable, timed out, or it refused the root key) the answer is 503, never the protected route.
 */
export async function judge(
  request: Request,
  options: KeywardenAuthOptions,
  now: () => number = Date.now,
): Promise<Judgement> {
  const key = (options.getKey ?? bearerKey)(request);
  if (!key) {
    return {
      allowed: false,
      denial: {
        status: 401,
        code: "UNAUTHENTICATED",
        detail: "Send a Keywarden key as Authorization: Bearer <key>.",
        headers: new Headers({ "www-authenticate": "Bearer" }),
      },
    };
  }
  const scopes = options.scopes ?? [];
  let verdict: VerifyVerdict;
  try {
    verdict = await clientFor(options).verifyKey(key, scopes.length > 0 ? { scopes } : {});
  } catch (error) {
    // The operator must see a misconfigured root key or URL; the caller learns only that it failed.
    const reason =
      error instanceof KeywardenError && error.status !== 0
        ? `${error.status} ${error.problem?.code ?? ""}`.trim()
        : "unreachable";
    console.error(JSON.stringify({ event: "keywarden_verify_failed", reason }));
    return { allowed: false, denial: unavailable() };
  }
  const at = now();
  const denial = denialFor(verdict, scopes, at);
  return denial
    ? { allowed: false, denial }
    : { allowed: true, verdict, headers: rateLimitHeaders(verdict, at) };
}

const TITLES: Record<Denial["status"], string> = {
  401: "Unauthorized",
  403: "Forbidden",
  429: "Too Many Requests",
  503: "Service Unavailable",
};

/** RFC 9457 problem+json for a denial, with its WWW-Authenticate, RateLimit and Retry-After fields. */
export function denialResponse(denial: Denial): Response {
  const headers = new Headers(denial.headers);
  headers.set("content-type", "application/problem+json");
  headers.set("cache-control", "no-store");
  const body = {
    type: `https://keywarden.dev/problems/${denial.code.toLowerCase().replaceAll("_", "-")}`,
    title: TITLES[denial.status],
    status: denial.status,
    detail: denial.detail,
    code: denial.code,
  };
  return new Response(JSON.stringify(body), { status: denial.status, headers });
}

/** Copies the RateLimit fields onto a response the protected handler made (its headers may be immutable). */
export function withHeaders(response: Response, headers: Headers): Response {
  if ([...headers.keys()].length === 0) return response;
  const copy = new Response(response.body, response);
  for (const [name, value] of headers) copy.headers.set(name, value);
  return copy;
}
