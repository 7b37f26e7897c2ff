import { and, eq, lt } from "drizzle-orm";
import type { Context } from "hono";
import type { Database } from "../db/client";
import { adminTotp, securityPolicies } from "../db/schema";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { rejectFailedAuth } from "./authenticate";
import { matchTotp } from "./totp";
import { totpSecretOf } from "./totp-store";

/**
 * Once a key has enrolled TOTP, sign-in needs a fresh code (never one already used); a tenant whose
 * policy requires 2FA refuses keys that have not enrolled yet (NIST SP 800-63B §4.2.1, AAL2).
 */
export async function assertSecondFactor(
  c: Context<AppEnv>,
  db: Database,
  record: { keyId: string; tenantId: string },
  code: string | undefined,
) {
  const enrolled = await db
    .select()
    .from(adminTotp)
    .where(and(eq(adminTotp.keyId, record.keyId), eq(adminTotp.tenantId, record.tenantId)))
    .get();
  if (!enrolled?.confirmedAt) {
    const policy = await db
      .select()
      .from(securityPolicies)
      .where(eq(securityPolicies.tenantId, record.tenantId))
      .get();
    if (policy?.require2fa) {
      throw new ApiError(
        "FORBIDDEN",
        "This tenant requires 2FA: enroll it with POST /api/v1/auth/totp/enroll first.",
      );
    }
    return;
  }
  const step = code
    ? await matchTotp(await totpSecretOf(c.env, db, enrolled), code, Date.now(), enrolled.lastStep)
    : null;
  // Compare-and-set on last_step: of two sign-ins racing with one code, only one wins.
  const claimed =
    step !== null &&
    (
      await db
        .update(adminTotp)
        .set({ lastStep: step })
        .where(and(eq(adminTotp.keyId, record.keyId), lt(adminTotp.lastStep, step)))
        .run()
    ).meta.changes === 1;
  if (!claimed) {
    await rejectFailedAuth(
      c,
      new ApiError("UNAUTHENTICATED", "A valid two-factor code is required.", {
        errors: [
          { path: "totp", message: code ? "did not match or was already used" : "required for this key" },
        ],
      }),
    );
  }
}
