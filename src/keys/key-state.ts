import { and, eq, isNotNull, lte, not, type SQL } from "drizzle-orm";
import { apiKeys } from "../db/schema";

type KeyRow = typeof apiKeys.$inferSelect;

/** Where a key stands, one word: the key view's `state` and the key list's `state` filter. */
export const KEY_STATES = ["active", "disabled", "rotated", "expired", "revoked"] as const;
export type KeyState = (typeof KEY_STATES)[number];

interface StateRule {
  state: Exclude<KeyState, "active">;
  /** The rule on a row read from the table. */
  holds: (row: KeyRow, now: number) => boolean;
  /** The same rule as a WHERE term; never NULL, so `not(where)` is its exact complement. */
  where: (now: number) => SQL;
}

/**
 * The states in precedence order (the first rule that holds names the state; none holding is `active`). Each
 * rule is written twice, on a row and in SQL, side by side here, so the view's `state` and the list filter
 * cannot disagree. `expired` is judged as verification judges it (src/keys/verify-key.ts: refused from
 * `expires_at` on); `rotated` is a key replaced by its successor and still inside the overlap (its expiry is
 * the overlap's end, so it becomes `expired` after it).
 */
const RULES: readonly StateRule[] = [
  { state: "revoked", holds: (row) => row.revokedAt !== null, where: () => isNotNull(apiKeys.revokedAt) },
  {
    state: "expired",
    holds: (row, now) => row.expiresAt !== null && row.expiresAt <= now,
    where: (now) => and(isNotNull(apiKeys.expiresAt), lte(apiKeys.expiresAt, now)) as SQL,
  },
  { state: "disabled", holds: (row) => !row.enabled, where: () => eq(apiKeys.enabled, false) },
  { state: "rotated", holds: (row) => row.rotatedToId !== null, where: () => isNotNull(apiKeys.rotatedToId) },
];

/** The state of a key at `now` (ms). */
export function keyStateOf(row: KeyRow, now: number): KeyState {
  return RULES.find((rule) => rule.holds(row, now))?.state ?? "active";
}

/** A WHERE term keeping the keys in `state` at `now` (ms): its own rule, and none of the rules before it. */
export function keyStateWhere(state: KeyState, now: number): SQL {
  const at = RULES.findIndex((rule) => rule.state === state);
  const before = at === -1 ? RULES : RULES.slice(0, at);
  return and(
    ...before.map((rule) => not(rule.where(now))),
    at === -1 ? undefined : RULES[at]?.where(now),
  ) as SQL;
}
