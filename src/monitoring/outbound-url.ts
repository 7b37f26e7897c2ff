import { ApiError } from "../errors";
import { parseIp } from "../keys/ip-allowlist";

/** Ranges an alert may never be sent to (RFC 6890 special-purpose, as v4-mapped or v6 128-bit values). */
const PRIVATE_PREFIXES: [string, number][] = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
];

function isPrivateAddress(host: string): boolean {
  const ip = parseIp(host.replace(/^\[|\]$/g, ""));
  if (ip === null) return false;
  return PRIVATE_PREFIXES.some(([network, prefix]) => {
    const base = parseIp(network) as bigint;
    const bits = BigInt(network.includes(":") ? prefix : prefix + 96);
    return ip >> (128n - bits) === base >> (128n - bits);
  });
}

/**
 * SSRF guard for user-given URLs (OWASP SSRF CS): https only, no credentials, no private or loopback
 * addresses, no internal names. Only the explicit local setting ALLOW_LOOPBACK_WEBHOOKS=true (never in
 * wrangler.toml) admits http://127.0.0.1, for local development and the browser tests.
 */
export function assertDeliverableUrl(raw: string, allowLoopback: boolean, path = "url"): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw refused(path, "is not a URL");
  }
  if (allowLoopback && url.protocol === "http:" && url.hostname === "127.0.0.1") return url;
  if (url.protocol !== "https:") throw refused(path, "must use https");
  if (url.username || url.password) throw refused(path, "must not contain credentials");
  const host = url.hostname.toLowerCase();
  if (
    host === "localhost" ||
    host.endsWith(".localhost") ||
    host.endsWith(".internal") ||
    host.endsWith(".local")
  ) {
    throw refused(path, "must point to a public host");
  }
  if (isPrivateAddress(host)) throw refused(path, "must point to a public address");
  if (!host.includes(".") && parseIp(host) === null) throw refused(path, "must point to a public host");
  return url;
}

function refused(path: string, reason: string): ApiError {
  return new ApiError("VALIDATION_FAILED", `The channel URL ${reason}.`, {
    errors: [{ path, message: reason }],
  });
}

export const DELIVERY_TIMEOUT_MS = 5_000;

export interface DeliveryResult {
  delivered: boolean;
  status?: number;
  reason?: string;
}

/** One outbound POST: no redirects followed, bounded time, the answer body never read into a message. */
export async function deliver(url: URL, init: RequestInit): Promise<DeliveryResult> {
  try {
    const response = await fetch(url, {
      ...init,
      method: "POST",
      redirect: "manual",
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
    });
    await response.body?.cancel();
    if (response.status >= 300 && response.status < 400)
      return { delivered: false, status: response.status, reason: "redirect_not_followed" };
    return response.ok
      ? { delivered: true, status: response.status }
      : { delivered: false, status: response.status, reason: "rejected" };
  } catch (error) {
    return {
      delivered: false,
      reason: error instanceof Error && error.name === "TimeoutError" ? "timeout" : "unreachable",
    };
  }
}
