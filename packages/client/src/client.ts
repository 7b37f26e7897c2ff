import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./api-types";
import { type RetryOptions, retryingFetch } from "./retry";

export type Problem = components["schemas"]["Problem"];
export type VerifyVerdict = components["schemas"]["VerifyKeyResponse"];
export type VerifyCode = VerifyVerdict["code"];

export interface KeywardenClientOptions {
  /** Where Keywarden runs, e.g. `https://keywarden.example.com` or `http://127.0.0.1:8787`. */
  baseUrl: string;
  /** A Keywarden key sent as `Authorization: Bearer`; its scopes decide what the client may call. */
  key?: string;
  /** The fetch to send requests with (default `globalThis.fetch`): a service binding's, or a test's. */
  fetch?: (request: Request) => Promise<Response>;
  /** Retries on 429/503 honouring `Retry-After`; `false` sends every request once. */
  retry?: RetryOptions | false;
  /** Aborts an attempt that takes longer (default: no limit beyond the platform's). */
  timeoutMs?: number;
}

/** A failed call that has no typed `error` to return: a problem+json answer or no answer at all. */
export class KeywardenError extends Error {
  constructor(
    message: string,
    /** The HTTP status, or 0 when Keywarden could not be reached. */
    readonly status: number,
    /** Keywarden's RFC 9457 problem, when it answered with one. */
    readonly problem?: Problem,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "KeywardenError";
  }
}

export interface VerifyKeyOptions {
  /** Scopes the key must hold; a key without one of them is `INSUFFICIENT_SCOPES`. */
  scopes?: string[];
}

export interface KeywardenClient extends Client<paths> {
  /**
   * Verifies a caller's key with `POST /api/v1/keys/verify` (the client's own key needs `keys:verify`).
   * Resolves to the verdict whatever it is (`valid: false` included); throws KeywardenError only when
   * Keywarden did not give one (unreachable, or refused the client's own key).
   */
  verifyKey(key: string, options?: VerifyKeyOptions): Promise<VerifyVerdict>;
}

function isProblem(value: unknown): value is Problem {
  return typeof value === "object" && value !== null && "code" in value && "status" in value;
}

/** The typed client for the whole Keywarden API (openapi-fetch over the generated `paths`). */
export function createKeywardenClient(options: KeywardenClientOptions): KeywardenClient {
  const base = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const timed =
    options.timeoutMs === undefined
      ? base
      : (request: Request) => {
          const signal = AbortSignal.any([request.signal, AbortSignal.timeout(options.timeoutMs as number)]);
          return base(new Request(request, { signal }));
        };
  const client = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    fetch: options.retry === false ? timed : retryingFetch(timed, options.retry),
    headers: options.key ? { authorization: `Bearer ${options.key}` } : {},
    // Keywarden's API never redirects. A followed 307/308 would resend the body (verify's caller key, a
    // credential's plaintext) and possibly the Authorization header to wherever Location points: a redirect
    // is answered as the error it is instead (OWASP API Security Top 10 2023, API10).
    redirect: "manual",
  });

  const verifyKey: KeywardenClient["verifyKey"] = async (key, verifyOptions = {}) => {
    const result = await client
      .POST("/api/v1/keys/verify", {
        body: { key, ...(verifyOptions.scopes ? { scopes: verifyOptions.scopes } : {}) },
      })
      .catch((cause: unknown) => {
        throw new KeywardenError("Keywarden could not be reached.", 0, undefined, { cause });
      });
    if (result.data) return result.data;
    const problem = isProblem(result.error) ? result.error : undefined;
    throw new KeywardenError(
      `Keywarden refused the verify call: ${result.response.status} ${problem?.code ?? ""}`.trim(),
      result.response.status,
      problem,
    );
  };

  return Object.assign(client, { verifyKey });
}
