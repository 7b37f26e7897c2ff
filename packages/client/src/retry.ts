/**
 * Retries for the Keywarden client. 429 and 503 mean the server refused before acting (Keywarden answers
 * RATE_LIMITED, SEALED and KEY_UNAVAILABLE before any write), so any method may be sent again; a lost
 * connection or a 502/504 may come after the server acted, so only idempotent methods (RFC 9110 §9.2.2)
 * are retried then. Waits follow `Retry-After` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date);
 * without it, exponential backoff with full jitter.
 */
export interface RetryOptions {
  /** Total attempts including the first (default 3; 1 turns retries off). */
  attempts?: number;
  /** The longest single wait. A `Retry-After` asking for more is not waited for: the answer is returned. */
  maxDelayMs?: number;
  /** Backoff base when the server gave no `Retry-After` (default 250 ms, doubled per attempt). */
  baseDelayMs?: number;
  /** Injectable for tests, so nothing really waits. */
  sleep?: (ms: number) => Promise<void>;
  /** The clock an HTTP-date `Retry-After` is measured against (default `Date.now`). */
  now?: () => number;
  /** Jitter source in [0, 1) (default `Math.random`). */
  random?: () => number;
}

export const RETRY_DEFAULTS = { attempts: 3, maxDelayMs: 10_000, baseDelayMs: 250 } as const;

/** Statuses where the server did not act: safe to resend any request. */
const NOT_ACTED = new Set([429, 503]);
/** Gateway failures: the request may or may not have reached the server. */
const MAYBE_ACTED = new Set([502, 504]);
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/** Milliseconds to wait from a `Retry-After` value, or undefined when it is absent or malformed. */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms Date.parse also reads).
  if (!/^[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError");
}

/** Wraps a fetch so that it retries as described above; the Request is cloned for every attempt. */
export function retryingFetch(
  fetchOnce: (request: Request) => Promise<Response>,
  options: RetryOptions = {},
): (request: Request) => Promise<Response> {
  const attempts = Math.max(1, Math.floor(options.attempts ?? RETRY_DEFAULTS.attempts));
  const maxDelayMs = options.maxDelayMs ?? RETRY_DEFAULTS.maxDelayMs;
  const baseDelayMs = options.baseDelayMs ?? RETRY_DEFAULTS.baseDelayMs;
  const sleep = options.sleep ?? defaultSleep;
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const backoff = (attempt: number) =>
    Math.floor(random() * Math.min(maxDelayMs, baseDelayMs * 2 ** attempt));

  return async (request) => {
    const idempotent = IDEMPOTENT.has(request.method.toUpperCase());
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= attempts;
      // The original stays unread so that every attempt can send the same body.
      const sent = last ? request : request.clone();
      let response: Response;
      try {
        response = await fetchOnce(sent);
      } catch (error) {
        if (last || !idempotent || isAbort(error) || request.signal?.aborted) throw error;
        await sleep(backoff(attempt));
        continue;
      }
      const retryable = NOT_ACTED.has(response.status) || (idempotent && MAYBE_ACTED.has(response.status));
      if (last || !retryable) return response;
      const asked = retryAfterMs(response.headers.get("retry-after"), now());
      if (asked !== undefined && asked > maxDelayMs) return response;
      await response.body?.cancel();
      await sleep(asked ?? backoff(attempt));
      if (request.signal?.aborted) throw request.signal.reason;
    }
  };
}
