import { VERIFY_CODES, type VerifyCode } from "../keys/verify-key";
import type { UsageBucket } from "./alert-kinds";

/**
 * The counters of a usage_counts row (migration 0009). Each verify code has its own column, named after the
 * code in lower case (`INSUFFICIENT_SCOPES` -> `insufficient_scopes`), so VERIFY_CODES stays the one list of
 * outcomes; test/monitoring/usage-recorder.test.ts holds this list against the table's columns.
 * - `invalid`: every verification that was not VALID (the sum of the failure-code columns).
 * - `auth_failed`: authentication to Keywarden itself refused with a known key of the tenant (the key refused
 *   by the management API, or a wrong TOTP code). It counts alongside the code columns, not inside them.
 */
export type CodeCounter = Lowercase<VerifyCode>;
export type UsageCounter = CodeCounter | "invalid" | "auth_failed";

export function codeCounter(code: VerifyCode): CodeCounter {
  return code.toLowerCase() as CodeCounter;
}

/** Every counter in one fixed order: the flush's JSON positions, the query's sums and the API's fields. */
export const USAGE_COUNTERS: readonly UsageCounter[] = [
  ...VERIFY_CODES.map(codeCounter),
  "invalid",
  "auth_failed",
];

export type UsageTotals = Record<UsageCounter, number>;

export function emptyTotals(): UsageTotals {
  return Object.fromEntries(USAGE_COUNTERS.map((counter) => [counter, 0])) as UsageTotals;
}

/** Requests are verifications, whatever their outcome; failures are those that were not VALID. */
export function requestsOf(totals: Pick<UsageTotals, "valid" | "invalid">): number {
  return totals.valid + totals.invalid;
}

/** Hourly rows feed the alert rules and anomaly baselines; daily rows are the long history. */
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export function bucketStart(bucket: UsageBucket, at: number): number {
  const size = bucket === "hour" ? HOUR_MS : DAY_MS;
  return Math.floor(at / size) * size;
}
