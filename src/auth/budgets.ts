import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { clientBudgetKey, clientIp } from "./client-address";

/** Both limiters count fixed 60-second windows (wrangler.toml `[[ratelimits]]`). */
const BUDGET_PERIOD_SECONDS = 60;

/**
 * Every failed authentication (bad key, forged cookie, wrong 2FA code, wrong bootstrap token) spends the
 * caller's failure budget: guessing costs the guesser, not the key owners (ASVS 5.0 V6.3.1).
 */
export async function rejectFailedAuth(
  c: Context<AppEnv>,
  failure = new ApiError("UNAUTHENTICATED", "The key is missing, invalid, expired or revoked."),
): Promise<never> {
  const { success } = await c.env.AUTH_FAILURE_LIMITER.limit({ key: clientBudgetKey(clientIp(c)) });
  if (!success) {
    throw new ApiError("RATE_LIMITED", "Too many failed attempts.", {
      retryAfterSeconds: BUDGET_PERIOD_SECONDS,
    });
  }
  throw failure;
}

/**
 * Route middleware for the entry points that test a secret a guesser could iterate: sign-in, TOTP
 * confirmation and operator bootstrap. Every attempt costs, right or wrong, and the budget is spent before
 * the route looks at anything: a failure budget charged only after a wrong guess could not stop the
 * guess that turns out right, nor a burst of concurrent guesses racing the counter (ASVS 5.0 V6.3.1,
 * OWASP Authentication CS "Protect against automated attacks").
 */
export const spendAuthAttempt: MiddlewareHandler<AppEnv> = async (c, next) => {
  const { success } = await c.env.AUTH_ATTEMPT_LIMITER.limit({ key: clientBudgetKey(clientIp(c)) });
  if (!success) {
    throw new ApiError("RATE_LIMITED", "Too many sign-in attempts from this address.", {
      retryAfterSeconds: BUDGET_PERIOD_SECONDS,
    });
  }
  await next();
};
