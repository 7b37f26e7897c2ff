import { createRoute, z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import { auditActor } from "../audit/actor";
import { commitWithAudit } from "../audit/audit-log";
import { requireScope } from "../auth/authenticate";
import { spendAuthAttempt } from "../auth/budgets";
import { claimTotpCode } from "../auth/second-factor";
import { newTotpSecret, otpauthUri, toBase32 } from "../auth/totp";
import { totpRecord } from "../auth/totp-store";
import { sealValues } from "../credentials/sealed-fields";
import { database } from "../db/client";
import { adminTotp } from "../db/schema";
import { ApiError } from "../errors";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  jsonBody,
  jsonContent,
  NO_STORE,
  problems,
} from "../openapi/shared";
import { unseal } from "../vault/keyring";

const tags = ["Auth"];
const route = <T extends Parameters<typeof createRoute>[0]>(config: T) =>
  createRoute({ tags, security: bearerSecurity, middleware: [requireScope("wizard")] as const, ...config });

const enrollRoute = route({
  method: "post",
  path: "/enroll",
  operationId: "enrollTotp",
  summary: "Start TOTP enrollment for the calling admin key (the secret is shown once)",
  responses: {
    201: jsonContent(
      z.object({ secret: z.string(), otpauth_uri: z.string() }),
      "Add it to an authenticator app, then confirm.",
    ),
    ...problems(...AUTH_PROBLEMS, "CONFLICT", "SEALED"),
  },
});

const confirmRoute = createRoute({
  tags,
  security: bearerSecurity,
  // The attempt budget comes first: a client over it is refused before its key or its code is looked at.
  middleware: [spendAuthAttempt, requireScope("wizard")] as const,
  method: "post",
  path: "/confirm",
  operationId: "confirmTotp",
  summary: "Confirm enrollment with a current code; from then on sign-in and step-up need a code",
  description:
    "Every call spends the client's sign-in attempt budget. A wrong code counts against the key's lockout " +
    "(see the README's second-factor section); while the key is locked even the right code answers 429.",
  request: { body: jsonBody(z.strictObject({ code: z.string().max(10) }).openapi("ConfirmTotp")) },
  responses: {
    200: jsonContent(z.object({ enrolled: z.literal(true) }), "Enrolled."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "VALIDATION_FAILED", "SEALED"),
  },
});

export const twoFactorRoutes = createRouter()
  .openapi(enrollRoute, async (c) => {
    const principal = c.get("principal");
    const db = database(c.env.DB);
    const existing = await db.select().from(adminTotp).where(eq(adminTotp.keyId, principal.keyId)).get();
    if (existing?.confirmedAt) throw new ApiError("CONFLICT", "2FA is already enrolled for this key.");
    const secret = newTotpSecret();
    const keys = await unseal(c.env, db);
    const { sealed, dekVersion, countEncryptions } = await sealValues(keys, db, totpRecord(principal), {
      secret: toBase32(secret),
    });
    const row = {
      keyId: principal.keyId,
      tenantId: principal.tenantId,
      sealedSecret: sealed.secret as string,
      dekVersion,
      confirmedAt: null,
      lastStep: 0,
      createdAt: Date.now(),
    };
    await commitWithAudit(
      c.env,
      auditActor(c),
      [
        db.insert(adminTotp).values(row).onConflictDoUpdate({ target: adminTotp.keyId, set: row }),
        countEncryptions,
      ],
      [{ action: "totp.enroll", targetType: "key", targetId: principal.keyId }],
    );
    return c.json(
      { secret: toBase32(secret), otpauth_uri: otpauthUri(secret, principal.keyId) },
      201,
      NO_STORE,
    );
  })
  .openapi(confirmRoute, async (c) => {
    const principal = c.get("principal");
    const db = database(c.env.DB);
    const row = await db
      .select()
      .from(adminTotp)
      .where(and(eq(adminTotp.keyId, principal.keyId), eq(adminTotp.tenantId, principal.tenantId)))
      .get();
    if (!row) throw new ApiError("NOT_FOUND", "Start enrollment first.");
    await claimTotpCode(
      c,
      db,
      row,
      c.req.valid("json").code,
      (reason) =>
        new ApiError("VALIDATION_FAILED", "The code did not match.", {
          errors: [{ path: "code", message: reason }],
        }),
    );
    await commitWithAudit(
      c.env,
      auditActor(c),
      [db.update(adminTotp).set({ confirmedAt: Date.now() }).where(eq(adminTotp.keyId, row.keyId))],
      [{ action: "totp.confirm", targetType: "key", targetId: row.keyId }],
    );
    return c.json({ enrolled: true as const }, 200);
  });
