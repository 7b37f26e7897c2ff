import type { Context } from "hono";
import type { Database } from "../db/client";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { assertSecondFactor, type SecondFactorState } from "./second-factor";

/** A browser session may do step-up operations for at most this long after sign-in. */
export const STEP_UP_WINDOW_MS = 5 * 60_000;

/** The second factor for a step-up operation, on any transport (cookie session or `Authorization: Bearer`). */
export const TOTP_HEADER = "x-keywarden-totp";

/**
 * Step-up before highly sensitive operations (OWASP ASVS 5.0 V6.8): revealing a credential, minting or
 * rotating an admin-capable key, changing the security policy. It is the same on every transport, so a
 * key that enrolled TOTP, or any key of a tenant whose policy requires 2FA, cannot walk around it by
 * sending the key as a bearer token instead of signing in. A browser session must also be fresh.
 * Keys that have not enrolled, in tenants that do not require 2FA, are machine keys: their scopes are
 * the whole of their authority.
 */
export async function assertStepUp(
  c: Context<AppEnv>,
  db: Database,
  code?: string,
  /** The key's second-factor state when the route read it in its own batch (`secondFactorStateQuery`). */
  state?: SecondFactorState,
): Promise<void> {
  const principal = c.get("principal");
  if (principal.via === "session" && Date.now() - (principal.authenticatedAt ?? 0) > STEP_UP_WINDOW_MS) {
    throw new ApiError("UNAUTHENTICATED", "Sign in again to do this (step-up).");
  }
  await assertSecondFactor(c, db, principal, code ?? c.req.header(TOTP_HEADER), undefined, state);
}
