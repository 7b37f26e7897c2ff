import type { Context, TypedResponse } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { JSONParsed } from "hono/utils/types";
import type { AppEnv } from "../env";

/**
 * Every answer's security headers (OWASP Secure Headers Project), one list. The CSP matters for the HTML
 * pages; API answers carry it too, so a JSON body opened in a browser cannot run anything either.
 */
const SECURITY_HEADERS: readonly (readonly [string, string])[] = [
  [
    "content-security-policy",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
      "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'",
  ],
  ["cross-origin-opener-policy", "same-origin"],
  ["cross-origin-resource-policy", "same-origin"],
  ["origin-agent-cluster", "?1"],
  ["referrer-policy", "no-referrer"],
  ["strict-transport-security", "max-age=63072000; includeSubDomains"],
  ["x-content-type-options", "nosniff"],
  ["x-dns-prefetch-control", "off"],
  ["x-download-options", "noopen"],
  ["x-frame-options", "SAMEORIGIN"],
  ["x-permitted-cross-domain-policies", "none"],
  ["x-xss-protection", "0"],
];

/** API answers are per caller and may carry key material: no cache may keep them. */
const NO_STORE = ["cache-control", "no-store"] as const;

export const API_PREFIX = "/api/";

/**
 * Complete header sets, built once per isolate: an answer built from one is a single copy in workerd,
 * where setting the same thirteen headers one by one costs more than the rest of a /healthz.
 */
function template(contentType: string, noStore: boolean): Headers {
  return new Headers([...SECURITY_HEADERS, ["content-type", contentType], ...(noStore ? [NO_STORE] : [])]);
}
const JSON_PAGE = template("application/json", false);
const JSON_API = template("application/json", true);
const PROBLEM = template("application/problem+json", true);

/** Answers that already carry every header: `stampHeaders` leaves them alone. */
const complete = new WeakSet<Response>();

function answer(body: string, status: number, headers: Headers, requestId: string): Response {
  const response = new Response(body, { status, headers });
  response.headers.set("x-request-id", requestId);
  complete.add(response);
  return response;
}

/**
 * `c.json` with the headers prepared once: for the hot routes (/healthz, POST /keys/verify). Typed like
 * `c.json`, so the route's OpenAPI response schemas still check the body.
 */
export function preparedJson<T, S extends ContentfulStatusCode>(
  c: Context<AppEnv>,
  body: T,
  status: S,
): Response & TypedResponse<JSONParsed<T>, S, "json"> {
  const headers = c.req.path.startsWith(API_PREFIX) ? JSON_API : JSON_PAGE;
  return answer(JSON.stringify(body), status, headers, c.get("requestId")) as Response &
    TypedResponse<JSONParsed<T>, S, "json">;
}

/** An RFC 9457 problem answer with every header. */
export function preparedProblem(body: string, status: number, requestId: string): Response {
  return answer(body, status, PROBLEM, requestId);
}

/** Gives any other answer the same headers, one by one (the routes off the hot path build theirs with `c.json`). */
export function stampHeaders(response: Response, requestId: string, api: boolean): void {
  if (complete.has(response)) return;
  const headers = response.headers;
  for (const [name, value] of SECURITY_HEADERS) headers.set(name, value);
  if (api) headers.set(NO_STORE[0], NO_STORE[1]);
  headers.set("x-request-id", requestId);
}
