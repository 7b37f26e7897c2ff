import { and, eq, isNull, lt, lte, or, sql } from "drizzle-orm";
import type { Context } from "hono";
import { commitWithAudit } from "../audit/audit-log";
import type { Database } from "../db/client";
import { adminTotp, securityPolicies } from "../db/schema";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { recordUsage } from "../monitoring/usage-recorder";
import { rejectFailedAuth } from "./budgets";
import { matchTotp } from "./totp";
import { totpSecretOf } from "./totp-store";

/**
 * Consecutive wrong codes that lock one key's second factor. NIST SP 800-63B §5.2.2 caps consecutive
 * failures at 100; five keeps an online guesser far below that while forgiving a few typos.
 */
export const TOTP_MAX_FAILURES = 5;
/** The first lockout. Each further run of TOTP_MAX_FAILURES wrong codes doubles it, up to TOTP_MAX_LOCKOUT_MS. */
export const TOTP_LOCKOUT_MS = 15 * 60_000;
export const TOTP_MAX_LOCKOUT_MS = 24 * 60 * 60_000;
/** 15 min << 7 already exceeds the cap; bounding the shift keeps the SQL integer arithmetic small. */
const MAX_DOUBLINGS = 7;

type TotpRow = typeof adminTotp.$inferSelect;

export interface KeyOwner {
  keyId: string;
  tenantId: string;
}

/** Who a code failed for; the actor of the lockout's audit row. */
function keyActor(c: Context<AppEnv>, owner: KeyOwner) {
  return {
    tenantId: owner.tenantId,
    actorType: "key" as const,
    actorId: owner.keyId,
    requestId: c.get("requestId"),
  };
}

function lockedOut(lockedUntil: number, now: number): ApiError {
  return new ApiError(
    "RATE_LIMITED",
    "Two-factor sign-in for this key is locked after too many wrong codes.",
    {
      retryAfterSeconds: (lockedUntil - now) / 1000,
    },
  );
}

/**
 * Claims `step` for the key: one atomic compare-and-set on last_step, so of two requests racing with one
 * code only one wins, and none wins while a lockout stands (a lock taken by concurrent wrong guesses after
 * this request read the row still holds). A claimed code resets the failure counter.
 */
async function claimStep(db: Database, keyId: string, step: number, now: number): Promise<boolean> {
  const { meta } = await db
    .update(adminTotp)
    .set({ lastStep: step, failedAttempts: 0, lockedUntil: null })
    .where(
      and(
        eq(adminTotp.keyId, keyId),
        lt(adminTotp.lastStep, step),
        or(isNull(adminTotp.lockedUntil), lte(adminTotp.lockedUntil, now)),
      ),
    )
    .run();
  return meta.changes === 1;
}

/**
 * Counts one wrong code in a single statement (concurrent guesses cannot lose increments). Every
 * TOTP_MAX_FAILURES-th consecutive failure locks the key for TOTP_LOCKOUT_MS, doubled for each earlier
 * lockout since the last accepted code and capped at TOTP_MAX_LOCKOUT_MS (OWASP Authentication CS,
 * "Account lockout": exponential, so a patient guesser gains a handful of tries a day, not hundreds).
 * Returns the lock's end when this failure started one.
 */
async function countFailure(db: Database, keyId: string, now: number): Promise<number | null> {
  const failures = sql`(${adminTotp.failedAttempts} + 1)`;
  const lockMs = sql`min(${TOTP_LOCKOUT_MS} << min(${failures} / ${TOTP_MAX_FAILURES} - 1, ${MAX_DOUBLINGS}), ${TOTP_MAX_LOCKOUT_MS})`;
  const row = await db
    .update(adminTotp)
    .set({
      failedAttempts: sql`${failures}`,
      lockedUntil: sql`CASE WHEN ${failures} % ${TOTP_MAX_FAILURES} = 0 THEN ${now} + ${lockMs} ELSE ${adminTotp.lockedUntil} END`,
    })
    .where(eq(adminTotp.keyId, keyId))
    .returning({ failedAttempts: adminTotp.failedAttempts, lockedUntil: adminTotp.lockedUntil })
    .get();
  return row && row.failedAttempts % TOTP_MAX_FAILURES === 0 && row.lockedUntil !== null
    ? row.lockedUntil
    : null;
}

/**
 * One attempt at a key's TOTP code, the same for sign-in, step-up and enrollment confirmation. A standing
 * lockout refuses before the code is even evaluated, so during it the right code fails like any other.
 * Then the code must match a step after the last accepted one (RFC 6238 §5.2: no replay) and win the
 * compare-and-set. A missing code spends the client's failure budget; a wrong or replayed one also counts
 * against the key. Returns the claimed step; throws `failure(reason)` otherwise.
 */
export async function claimTotpCode(
  c: Context<AppEnv>,
  db: Database,
  row: TotpRow,
  code: string | undefined,
  failure: (reason: string) => ApiError,
  now = Date.now(),
): Promise<number> {
  if (row.lockedUntil !== null && row.lockedUntil > now) throw lockedOut(row.lockedUntil, now);
  if (!code) return rejectFailedAuth(c, failure("required for this key"));
  const step = await matchTotp(await totpSecretOf(c.env, db, row), code, now, row.lastStep);
  if (step !== null && (await claimStep(db, row.keyId, step, now))) return step;
  const lockedUntil = await countFailure(db, row.keyId, now);
  if (lockedUntil !== null) {
    await commitWithAudit(
      c.env,
      keyActor(c, row),
      [],
      [
        {
          action: "totp.lockout",
          targetType: "key",
          targetId: row.keyId,
          detail: { locked_until: new Date(lockedUntil).toISOString() },
        },
      ],
    );
  }
  recordUsage(c, { tenantId: row.tenantId, keyId: row.keyId, code: null, authFailed: true }, now);
  return rejectFailedAuth(c, failure("did not match or was already used"));
}

/** The key's TOTP row (if any) and whether its tenant requires 2FA, in one query. */
/**
 * The reads behind `secondFactorState`: the key's TOTP row and its tenant's 2FA requirement. Single-table
 * queries, so a route can put them in one D1 batch with its own reads (drizzle maps a batched join's columns
 * by name, which mixes up columns two joined tables share).
 */
export function secondFactorStateQueries(db: Database, owner: KeyOwner) {
  return [
    db
      .select()
      .from(adminTotp)
      .where(and(eq(adminTotp.keyId, owner.keyId), eq(adminTotp.tenantId, owner.tenantId))),
    db
      .select({ require2fa: securityPolicies.require2fa })
      .from(securityPolicies)
      .where(eq(securityPolicies.tenantId, owner.tenantId)),
  ] as const;
}

export interface SecondFactorState {
  totp: TotpRow | null;
  require2fa: boolean;
}

/** The state from what `secondFactorStateQueries` found (nothing: no TOTP, no policy). */
export function secondFactorStateOf(totp: TotpRow[], policy: { require2fa: boolean }[]): SecondFactorState {
  return { totp: totp[0] ?? null, require2fa: policy[0]?.require2fa ?? false };
}

/** The key's second-factor state, in one round trip. */
export async function secondFactorState(db: Database, owner: KeyOwner): Promise<SecondFactorState> {
  return secondFactorStateOf(...(await db.batch(secondFactorStateQueries(db, owner))));
}

/**
 * The second factor, on every transport (NIST SP 800-63B §4.2.1, AAL2). A key that has confirmed TOTP
 * needs a fresh code (`claimTotpCode`); a key that has not, in a tenant whose policy requires 2FA, is
 * refused outright; any other key is a machine key and its scopes are the whole of its authority.
 */
export async function assertSecondFactor(
  c: Context<AppEnv>,
  db: Database,
  owner: KeyOwner,
  code: string | undefined,
  now = Date.now(),
  /** Already read by the caller (`secondFactorStateQuery` in its batch); read here when absent. */
  state?: SecondFactorState,
): Promise<void> {
  const { totp, require2fa } = state ?? (await secondFactorState(db, owner));
  if (!totp?.confirmedAt) {
    if (require2fa) {
      throw new ApiError(
        "FORBIDDEN",
        "This tenant requires 2FA: enroll this key with POST /api/v1/auth/totp/enroll and confirm it first.",
        // Machine-readable for clients: the console's sign-in offers enrollment on exactly this answer.
        { errors: [{ path: "totp", message: "not enrolled" }] },
      );
    }
    return;
  }
  await claimTotpCode(
    c,
    db,
    totp,
    code,
    (reason) =>
      new ApiError("UNAUTHENTICATED", "A valid two-factor code is required.", {
        errors: [{ path: "totp", message: reason }],
      }),
    now,
  );
}
