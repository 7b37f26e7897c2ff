/**
 * The one way a provider rotator talks to its provider. Every call (threat model case 31, "Outbound calls"):
 * - goes to https on the default port of the rotator's one fixed host, through the injected fetch
 *   (`providerFetch(env)` in the Workflow), with no userinfo and no redirect followed;
 * - is bounded in time (AbortSignal.timeout) and in what it reads back (the probe's capped reader);
 * - fails with a `RotatorError` whose message is fixed text plus, at most, the provider's own error code,
 *   never a response body (a create answer carries the new secret; an error body may echo the request).
 */
import { MAX_PROBE_BODY_BYTES, readCapped } from "../../catalog/run-probe";
import { RotatorError, type RotatorFailure } from "./provider-rotator";

/** Minting is one small request; a provider slower than this is treated as unavailable and retried. */
export const ROTATOR_TIMEOUT_MS = 10_000;

/** Answers are small JSON or XML documents; nothing a provider (or an impostor) sends is buffered past this. */
export const MAX_ROTATOR_BODY_BYTES = MAX_PROBE_BODY_BYTES;

export interface ProviderRequest {
  method: "GET" | "POST" | "DELETE";
  url: string;
  headers: Record<string, string>;
  body?: string;
}

export interface ProviderResponse {
  status: number;
  /** The size-capped body. Callers parse it; they never put it in a message. */
  text: string;
}

/**
 * 429 and 5xx are worth retrying with backoff; any other 4xx is the provider refusing this request, which a
 * retry would only repeat (the Workflow step stops at once: NonRetryableError).
 */
export function failureOfStatus(status: number): RotatorFailure {
  return status === 429 || status >= 500 ? "unavailable" : "refused";
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
}

/**
 * Sends one request to `host` and returns its status and capped body. Throws a RotatorError before sending
 * if the URL is anything but https://<host>/..., "unavailable" on a timeout or network error, and "refused"
 * on a redirect (never followed: it could point anywhere, and a retry would meet the same redirect).
 */
export async function providerRequest(
  doFetch: typeof fetch,
  provider: string,
  host: string,
  request: ProviderRequest,
): Promise<ProviderResponse> {
  const url = new URL(request.url);
  if (
    url.protocol !== "https:" ||
    url.hostname !== host ||
    url.port !== "" ||
    url.username !== "" ||
    url.password !== ""
  ) {
    throw new RotatorError("refused", `${provider} rotator may only call https://${host}`);
  }
  let response: Response;
  let text: string;
  try {
    response = await doFetch(url, {
      method: request.method,
      headers: { "user-agent": "Keywarden-rotator/1", ...request.headers },
      ...(request.body === undefined ? {} : { body: request.body }),
      redirect: "manual",
      signal: AbortSignal.timeout(ROTATOR_TIMEOUT_MS),
    });
    text = await readCapped(response, MAX_ROTATOR_BODY_BYTES);
  } catch (error) {
    throw new RotatorError(
      "unavailable",
      `${provider} did not answer (${isTimeout(error) ? "timeout" : "network error"})`,
    );
  }
  if (response.status >= 300 && response.status < 400) {
    throw new RotatorError("refused", `${provider} answered with a redirect, which is never followed`);
  }
  return { status: response.status, text };
}

export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * The provider-side name of a key a rotation run mints: the run id (the `tag`), which is how a retry of the
 * same run finds a key an earlier attempt created but never heard back about. Run ids are `[A-Za-z0-9_-]`.
 */
export function rotationKeyName(tag: string, maxLength: number): string {
  const name = `keywarden:${tag}`;
  if (!/^[A-Za-z0-9_-]+$/.test(tag) || name.length > maxLength) {
    throw new RotatorError("refused", "the rotation tag is not a valid provider key name");
  }
  return name;
}
