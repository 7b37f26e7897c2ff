import { hashKey, parseKey } from "../crypto/keys";
import type { Database } from "../db/client";
import type { LimitDecision } from "../limits/key-limiter";
import { ipAllowed } from "./ip-allowlist";
import { findKeyByHash, type KeyRecord } from "./key-record";

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
}

/**
 * Cheapest checks first, stateful ones last (Unkey's order): a garbage key costs no I/O, a
 * known-bad one costs one cached lookup, and only a key that passes everything else touches
 * its limiter object, so invalid traffic cannot burn a key's rate limit or usage.
 */
export async function verifyKey(deps: VerifyDeps, request: VerifyRequest): Promise<VerifyOutcome> {
  if (!parseKey(request.key)) return { code: "INVALID_FORMAT" };
  const record = await findKeyByHash(deps.db, await hashKey(request.key));
  if (!record || (request.tenantId !== undefined && record.tenantId !== request.tenantId)) {
    return { code: "NOT_FOUND" };
  }
  const now = request.now ?? Date.now();
  if (!record.enabled || record.revoked) return { code: "DISABLED", record };
  if (record.expiresAt !== null && now >= record.expiresAt) return { code: "EXPIRED", record };
  if (record.ipAllowlist && !ipAllowed(record.ipAllowlist, request.origin?.ip())) {
    return { code: "FORBIDDEN", record };
  }
  if (record.countryAllowlist) {
    const country = request.origin?.country();
    if (!(country && record.countryAllowlist.includes(country))) return { code: "FORBIDDEN", record };
  }
  if (request.requiredScopes?.some((scope) => !record.scopes.includes(scope))) {
    return { code: "INSUFFICIENT_SCOPES", record };
  }
  if (!record.limits) return { code: "VALID", record };
  const limits = await deps.limiter.get(deps.limiter.idFromName(record.id)).consume(record.limits, now);
  if (limits.ratelimited) return { code: "RATE_LIMITED", record, limits };
  if (limits.usageExceeded) return { code: "USAGE_EXCEEDED", record, limits };
  return { code: "VALID", record, limits };
}
