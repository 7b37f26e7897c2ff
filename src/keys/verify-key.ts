import { hashKey, parseKey } from "../crypto/keys";
import type { Database } from "../db/client";
import type { LimitDecision } from "../limits/key-limiter";
import { ipAllowed } from "./ip-allowlist";
import { findKeyByHash, type KeyLookup, type KeyRecord, type OriginFence } from "./key-record";

export const VERIFY_CODES = [
  "VALID",
  "INVALID_FORMAT",
  "NOT_FOUND",
  "DISABLED",
  "EXPIRED",
  "FORBIDDEN",
  "INSUFFICIENT_SCOPES",
  "RATE_LIMITED",
  "USAGE_EXCEEDED",
] as const;
export type VerifyCode = (typeof VERIFY_CODES)[number];

/**
 * Where the request came from, read on demand: only keys with an IP or country allowlist ask, and
 * workerd parses `request.cf` on its first access, which costs more than a whole warm verify's lookup.
 */
export interface RequestOrigin {
  ip(): string | undefined;
  country(): string | undefined;
}

export interface VerifyRequest {
  key: string;
  /** Only this tenant's keys can verify; any other tenant's key is NOT_FOUND. */
  tenantId?: string;
  requiredScopes?: readonly string[];
  origin?: RequestOrigin;
  now?: number;
}

export interface VerifyOutcome {
  code: VerifyCode;
  record?: KeyRecord;
  limits?: LimitDecision;
}

export interface VerifyDeps {
  db: Database;
  limiter: DurableObjectNamespace<import("../limits/key-limiter").KeyLimiter>;
  /** How the key is found: the isolate cache (`findKeyByHash`) unless the caller needs fresh state. */
  lookup?: KeyLookup;
}

/** Whether a request from `origin` passes `fence`. Reads the IP or country only when the fence names them. */
export function originAllowed(fence: OriginFence, origin: RequestOrigin | undefined): boolean {
  if (fence.ipAllowlist && !ipAllowed(fence.ipAllowlist, origin?.ip())) return false;
  if (fence.countryAllowlist) {
    const country = origin?.country();
    if (!(country && fence.countryAllowlist.includes(country))) return false;
  }
  return true;
}

/**
 * The stateless checks of a found key, in order: status, expiry, where the request comes from (the key's
 * own allowlists, and the tenant's when the lookup brought them), scopes. Bearer keys and browser sessions
 * both go through this one rule.
 */
export function judgeKey(
  record: KeyRecord,
  request: Pick<VerifyRequest, "origin" | "requiredScopes">,
  now: number,
): VerifyCode {
  if (!record.enabled || record.revoked) return "DISABLED";
  if (record.expiresAt !== null && now >= record.expiresAt) return "EXPIRED";
  if (!originAllowed(record, request.origin)) return "FORBIDDEN";
  if (record.tenantFence && !originAllowed(record.tenantFence, request.origin)) return "FORBIDDEN";
  if (request.requiredScopes?.some((scope) => !record.scopes.includes(scope))) return "INSUFFICIENT_SCOPES";
  return "VALID";
}

/**
 * Cheapest checks first, stateful ones last (Unkey's order): a garbage key costs no I/O, a
 * known-bad one costs one cached lookup, and only a key that passes everything else touches
 * its limiter object, so invalid traffic cannot burn a key's rate limit or usage.
 */
export async function verifyKey(deps: VerifyDeps, request: VerifyRequest): Promise<VerifyOutcome> {
  if (!parseKey(request.key)) return { code: "INVALID_FORMAT" };
  const record = await (deps.lookup ?? findKeyByHash)(deps.db, await hashKey(request.key));
  if (!record || (request.tenantId !== undefined && record.tenantId !== request.tenantId)) {
    return { code: "NOT_FOUND" };
  }
  const now = request.now ?? Date.now();
  const code = judgeKey(record, request, now);
  if (code !== "VALID") return { code, record };
  if (!record.limits) return { code: "VALID", record };
  const limits = await deps.limiter.get(deps.limiter.idFromName(record.id)).consume(record.limits, now);
  if (limits.ratelimited) return { code: "RATE_LIMITED", record, limits };
  if (limits.usageExceeded) return { code: "USAGE_EXCEEDED", record, limits };
  return { code: "VALID", record, limits };
}
