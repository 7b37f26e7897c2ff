/**
 * Sends a provider's probe request and classifies the answer. Everything every provider shares lives here:
 *
 * - SSRF guard (docs/threat-model.md, "Outbound calls"): the request goes only to https on the default port of a
 *   host in the service's fixed `probe_hosts` (or matching its `probe_host_pattern`); anything else
 *   throws before a socket is opened.
 * - Redirects are never followed: a 3xx could point anywhere, so it is reported as `unknown`.
 * - A timeout bounds the call; a slow provider is `unknown`, never `invalid`.
 * - 401 is `invalid`, 429 is `unknown`/rate_limited, 5xx is `unknown`/provider_error. The provider file
 *   reads every other answer.
 *
 * The result carries fixed reason words and provider-given identity only, never a credential value.
 */
import type {
  CredentialFields,
  Environment,
  ProbeContext,
  ProbeResponse,
  ProbeStatus,
  ProbeVerdict,
  ServiceDefinition,
} from "./types";

export interface ProbeResult {
  status: ProbeStatus;
  reason: string;
  latency_ms: number;
  http_status?: number;
  /** Epoch milliseconds; `null` when the provider says the credential does not expire. */
  expires_at?: number | null;
  account?: string | null;
  retry_after_s?: number;
}

export interface RunProbeOptions {
  /** Defaults to the global fetch, looked up at call time. */
  fetch?: typeof fetch;
  timeoutMs?: number;
  /** Epoch milliseconds. */
  now?: () => number;
  /** Selects sandbox or live hosts where a provider has both (PayPal). Defaults to production. */
  environment?: Environment;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 5000;

/** Probe answers are small; a provider (or an impostor) cannot make us buffer more than this. */
export const MAX_PROBE_BODY_BYTES = 64 * 1024;

/** Thrown when a probe would contact a host outside its service's allow-list. Nothing was sent. */
export class ProbeHostError extends Error {
  override name = "ProbeHostError";
}

export function assertProbeTarget(service: ServiceDefinition, rawUrl: string): URL {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    throw new ProbeHostError(`${service.id} probe URL is not a URL`);
  }
  // No userinfo and no explicit port: both are ways to reach something other than the named service.
  if (url.protocol !== "https:" || url.port !== "" || url.username !== "" || url.password !== "") {
    throw new ProbeHostError(`${service.id} probe must use https on the default port`);
  }
  const listed = service.probe_hosts.includes(url.hostname);
  const patterned =
    service.probe_host_pattern !== undefined && new RegExp(service.probe_host_pattern).test(url.hostname);
  if (!listed && !patterned) {
    throw new ProbeHostError(`${service.id} probe host is not in the catalogue's allow-list`);
  }
  return url;
}

/** Reads at most `limit` bytes of the body; the rest is cancelled unread. */
export async function readCapped(response: Response, limit: number): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size < limit) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
  }
  await reader.cancel().catch(() => undefined);
  const bytes = new Uint8Array(Math.min(size, limit));
  let offset = 0;
  for (const chunk of chunks) {
    const take = Math.min(chunk.byteLength, bytes.byteLength - offset);
    bytes.set(chunk.subarray(0, take), offset);
    offset += take;
  }
  return new TextDecoder().decode(bytes);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3). */
export function parseRetryAfter(header: string | null, nowMs: number): number | undefined {
  if (header === null) return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - nowMs) / 1000));
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
}

/** Drops an account string that contains any submitted secret: providers sometimes echo what they got. */
function sanitizeVerdict(
  service: ServiceDefinition,
  fields: CredentialFields,
  verdict: ProbeVerdict,
): ProbeVerdict {
  const account = verdict.account;
  if (typeof account !== "string") return verdict;
  const leaks = service.fields.some((field) => {
    const value = fields[field.name];
    return field.secret && value !== undefined && value.length > 0 && account.includes(value);
  });
  return leaks ? { ...verdict, account: null } : verdict;
}

function classifyShared(response: Response, nowMs: number): ProbeVerdict | null {
  const { status } = response;
  if (status >= 300 && status < 400) return { status: "unknown", reason: "redirect_not_followed" };
  if (status === 401) return { status: "invalid", reason: "unauthorized" };
  if (status === 429) {
    const retry = parseRetryAfter(response.headers.get("retry-after"), nowMs);
    return {
      status: "unknown",
      reason: "rate_limited",
      ...(retry === undefined ? {} : { retry_after_s: retry }),
    };
  }
  if (status >= 500) return { status: "unknown", reason: "provider_error" };
  return null;
}

/**
 * Probes one credential set. Resolves to a result for every answer, failure and timeout; rejects only
 * before anything is sent: with ProbeHostError when the target is off the allow-list, or with a TypeError
 * when a field the probe needs is missing or malformed (run validateCredential first).
 */
export async function runProbe(
  service: ServiceDefinition,
  fields: CredentialFields,
  options: RunProbeOptions = {},
): Promise<ProbeResult> {
  const now = options.now ?? Date.now;
  const doFetch = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;

  const ctx: ProbeContext = { environment: options.environment ?? "production", now };
  const request = await service.probe.request(fields, ctx);
  const url = assertProbeTarget(service, request.url);

  const started = now();
  const latency = () => Math.max(0, Math.round(now() - started));
  let response: Response;
  let text: string;
  try {
    response = await doFetch(url, {
      method: request.method,
      headers: { "user-agent": "Keywarden-probe/1", ...request.headers },
      ...(request.body === undefined ? {} : { body: request.body }),
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
    });
    text = await readCapped(response, MAX_PROBE_BODY_BYTES);
  } catch (error) {
    return {
      status: "unknown",
      reason: isTimeout(error) ? "timeout" : "network_error",
      latency_ms: latency(),
    };
  }
  const latency_ms = latency();

  let verdict = classifyShared(response, now());
  if (verdict === null) {
    const probeResponse: ProbeResponse = {
      status: response.status,
      headers: response.headers,
      json: parseJson(text),
      text,
    };
    try {
      verdict = service.probe.interpret(probeResponse, fields, ctx);
    } catch {
      verdict = { status: "unknown", reason: "unexpected_response" };
    }
  }
  return { ...sanitizeVerdict(service, fields, verdict), latency_ms, http_status: response.status };
}
