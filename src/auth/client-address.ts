import type { Context } from "hono";
import type { AppEnv } from "../env";
import { isV4Mapped, parseIp } from "../keys/ip-allowlist";

/** The caller's address as Cloudflare's edge saw it; a client cannot set this header itself. */
export function clientIp(c: Context<AppEnv>): string | undefined {
  return c.req.header("cf-connecting-ip") ?? undefined;
}

/** The caller's country as Cloudflare's edge saw it. Reading `request.cf` parses it: only on demand. */
export function clientCountry(c: Context<AppEnv>): string | undefined {
  const country = c.req.raw.cf?.country;
  return typeof country === "string" ? country : undefined;
}

/**
 * The unit every per-client budget counts: one IPv4 address, or one IPv6 /64. An IPv6 end site is
 * normally given a whole /64 or more (RFC 6177, RFC 7421), so counting single IPv6 addresses would hand
 * one client 2^64 fresh budgets. IPv4-mapped IPv6 spellings count as their IPv4 address. A missing or
 * unparseable address shares one "unknown" budget (Cloudflare always sets `cf-connecting-ip`).
 */
export function clientBudgetKey(ip: string | undefined): string {
  const address = ip === undefined ? null : parseIp(ip);
  if (address === null) return "unknown";
  if (isV4Mapped(address)) return `v4:${(address & 0xffffffffn).toString(16)}`;
  return `v6:${(address >> 64n).toString(16)}/64`;
}
