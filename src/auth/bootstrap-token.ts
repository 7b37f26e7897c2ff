import type { MiddlewareHandler } from "hono";
import { secretsEqual } from "../crypto/constant-time";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { rejectFailedAuth, spendAuthAttempt } from "./budgets";

/** A shorter (or unset) BOOTSTRAP_TOKEN disables the operator routes rather than weakening them. */
export const MIN_BOOTSTRAP_TOKEN_LENGTH = 32;

/**
 * Admits only a caller presenting the operator's BOOTSTRAP_TOKEN as a bearer token. The comparison is
 * constant-time (OWASP ASVS 5.0 V11.2.4) and a wrong token spends the client's failed-authentication budget.
 */
export const requireBootstrapToken: MiddlewareHandler<AppEnv> = async (c, next) => {
  const expected = c.env.BOOTSTRAP_TOKEN ?? "";
  const presented = /^Bearer (.{1,512})$/.exec(c.req.header("authorization") ?? "")?.[1] ?? "";
  if (expected.length < MIN_BOOTSTRAP_TOKEN_LENGTH || !(await secretsEqual(presented, expected))) {
    return rejectFailedAuth(c, new ApiError("UNAUTHENTICATED", "A valid bootstrap token is required."));
  }
  await next();
};

/**
 * Route middleware of every operator route: the sign-in attempt budget is spent before the token is
 * compared, so a client over budget is refused even with the right token (see `spendAuthAttempt`).
 */
export const operatorAuth: MiddlewareHandler<AppEnv>[] = [spendAuthAttempt, requireBootstrapToken];

/** What any operator route can answer before its handler runs. */
export const OPERATOR_AUTH_PROBLEMS = ["UNAUTHENTICATED", "RATE_LIMITED"] as const;
