import { readCapped } from "../catalog/run-probe";
import { ApiError } from "../errors";
import { cidrContains, parseCidr, parseIp } from "../keys/ip-allowlist";

/**
 * Address ranges an outbound call may never reach, as 128-bit values (IPv4 mapped into ::ffff:0:0/96):
 * the RFC 6890 special-purpose registries, plus every IPv6 form that embeds an IPv4 address (IPv4-compatible,
 * NAT64 RFC 6052, 6to4 RFC 3056, Teredo RFC 4380), because those can smuggle 127.0.0.1 or 169.254.169.254
 * past a check that only looks at IPv4: also the SIIT IPv4-translated form ::ffff:0:a.b.c.d (RFC 6052 §2.1,
 * RFC 7915), which the URL parser keeps as `[::ffff:0:7f00:1]`. Cloud metadata endpoints sit inside these ranges
 * (169.254.169.254, fd00:ec2::254, 100.100.100.200, 192.0.0.192).
 */
const REFUSED_RANGES: [string, number][] = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.88.99.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
  ["::", 96],
  ["::ffff:0:0:0", 96],
  ["64:ff9b::", 96],
  ["64:ff9b:1::", 48],
  ["100::", 64],
  ["2001::", 32],
  ["2001:db8::", 32],
  ["2002::", 16],
  ["5f00::", 16],
  ["fc00::", 7],
  ["fe80::", 10],
  ["fec0::", 10],
  ["ff00::", 8],
];

const REFUSED_CIDRS = REFUSED_RANGES.map(([network, prefix]) => {
  const cidr = parseCidr(`${network}/${prefix}`);
  if (!cidr) throw new Error(`bad range ${network}/${prefix}`);
  return cidr;
});

function isRefusedAddress(ip: bigint): boolean {
  return REFUSED_CIDRS.some((cidr) => cidrContains(cidr, ip));
}

/** https on 443 (the default) or 8443 only: other ports reach admin consoles and internal services. */
const ALLOWED_PORTS = new Set(["", "8443"]);

/**
 * SSRF guard for user-given URLs (OWASP SSRF CS; threat model case 31): https on 443 or 8443 only, no
 * credentials, no special-purpose address in any literal spelling, no internal names. The WHATWG URL parser
 * has already turned decimal, octal and hex IPv4 spellings (`2130706433`, `0177.0.0.1`, `0x7f.1`) into
 * dotted form and IPv6 into its canonical form, so one numeric range check covers every spelling. A DNS name
 * that resolves to a private address is outside what a Worker can see (fetch resolves it at Cloudflare's
 * edge, which does not route to private networks); a self-hosted deployment must add an egress proxy that
 * refuses private destinations (README "Outbound calls"). Only the explicit local setting
 * ALLOW_LOOPBACK_WEBHOOKS=true (never in wrangler.toml) admits http://127.0.0.1, for local development and
 * the browser tests.
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
  if (!ALLOWED_PORTS.has(url.port)) throw refused(path, "must use port 443 or 8443");
  if (url.username || url.password) throw refused(path, "must not contain credentials");
  const host = url.hostname.toLowerCase().replace(/\.$/, "");
  const ip = parseIp(host.replace(/^\[|\]$/g, ""));
  if (ip !== null) {
    if (isRefusedAddress(ip)) throw refused(path, "must point to a public address");
    return url;
  }
  const topLevel = host.slice(host.lastIndexOf(".") + 1);
  if (!host.includes(".") || host === "localhost" || INTERNAL_TOP_LEVELS.has(topLevel)) {
    throw refused(path, "must point to a public host");
  }
  return url;
}

/**
 * Names that never resolve on the public Internet: special-use names (RFC 6761 `localhost`, `invalid`; RFC 6762
 * `local`; RFC 7686 `onion`; RFC 8375 `home.arpa` and the rest of `arpa`), ICANN's private-use `internal`, and
 * the top levels RFC 6762 Appendix G lists as in private use (`lan`, `intranet`, `corp`, `private`, `home`).
 */
const INTERNAL_TOP_LEVELS = new Set([
  "localhost",
  "invalid",
  "local",
  "onion",
  "arpa",
  "internal",
  "lan",
  "intranet",
  "corp",
  "private",
  "home",
]);

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
  /** A 2xx answer's body, at most `readBodyBytes` bytes; only when the caller asked for it. */
  body?: string;
}

export interface DeliveryOptions {
  /** Read a 2xx answer's body up to this many bytes (the rest is cancelled unread); default: never read. */
  readBodyBytes?: number;
  /** Give up after this many milliseconds; default DELIVERY_TIMEOUT_MS. Tests shorten it. */
  timeoutMs?: number;
}

/** One outbound POST: no redirects followed, bounded time, the answer body never read into a message. */
export async function deliver(
  url: URL,
  init: RequestInit,
  options: DeliveryOptions = {},
): Promise<DeliveryResult> {
  try {
    const response = await fetch(url, {
      ...init,
      method: "POST",
      redirect: "manual",
      signal: AbortSignal.timeout(options.timeoutMs ?? DELIVERY_TIMEOUT_MS),
    });
    if (response.ok && options.readBodyBytes !== undefined) {
      return {
        delivered: true,
        status: response.status,
        body: await readCapped(response, options.readBodyBytes),
      };
    }
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
