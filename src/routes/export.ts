import { createRoute, z } from "@hono/zod-openapi";
import { auditActor } from "../audit/actor";
import { commitWithAudit } from "../audit/audit-log";
import { requestOrigin, requireScope } from "../auth/authenticate";
import { assertStepUp, TOTP_HEADER } from "../auth/step-up";
import { database } from "../db/client";
import { AUTH_PROBLEMS, bearerSecurity, createRouter, jsonBody, NO_STORE, problems } from "../openapi/shared";
import { BUNDLE_KINDS } from "../portability/bundle";
import { assertInlineExportSize, exportInline, exportStream, STREAM_MEDIA_TYPE } from "../portability/export";
import {
  ExportPublicJwkSchema,
  ImportPrivateJwkSchema,
  type Opener,
  PassphraseSchema,
  publicKeyRecipient,
  type Recipient,
} from "../portability/export-jwe";
import { applyImport, planImport, planView } from "../portability/import";
import { readExport } from "../portability/import-read";
import { IMPORT_MAX_BODY_BYTES } from "../portability/limits";
import { tenantCounts } from "../portability/tenant-pages";
import { unseal } from "../vault/keyring";

const tags = ["Export and import"];

/**
 * Typed as a plain string on purpose: @hono/zod-openapi reads any `application/…json…` key as JSON and would
 * type the streamed answer as JSON; NDJSON is a stream of lines.
 */
const NDJSON: string = STREAM_MEDIA_TYPE;

const Totp = z
  .string()
  .max(10)
  .optional()
  .describe(`A current 2FA code for the step-up (or send it in the \`${TOTP_HEADER}\` header).`);

/** Exactly one of two members: both or neither is a 422 naming them. */
function exactlyOne<T extends Record<string, unknown>>(a: keyof T & string, b: keyof T & string) {
  return (body: T, ctx: z.RefinementCtx) => {
    if ((body[a] === undefined) === (body[b] === undefined))
      ctx.addIssue({ code: "custom", path: [a], message: `send exactly one of ${a} and ${b}` });
  };
}

export const ExportRequestSchema = z
  .strictObject({
    passphrase: PassphraseSchema.optional(),
    public_key: ExportPublicJwkSchema.optional(),
    stream: z
      .boolean()
      .default(false)
      .describe(`Stream the export as ${STREAM_MEDIA_TYPE}, one JWE per line (also chosen by Accept).`),
    totp: Totp,
  })
  .superRefine(exactlyOne("passphrase", "public_key"))
  .openapi("ExportRequest");

export const ExportSchema = z
  .object({
    jwe: z
      .string()
      .describe(
        "Compact JWE (RFC 7516) of the tenant bundle: PBES2-HS512+A256KW (p2c 100000) or ECDH-ES+A256KW / " +
          "RSA-OAEP-256, with A256GCM. See docs/export-import.md.",
      ),
  })
  .openapi("TenantExport");

export const ImportRequestSchema = z
  .strictObject({
    jwe: z
      .string()
      .min(1)
      .max(IMPORT_MAX_BODY_BYTES)
      .describe("The compact JWE of an export, or the NDJSON lines of a streamed export as one string."),
    passphrase: PassphraseSchema.optional(),
    private_key: ImportPrivateJwkSchema.optional(),
    dry_run: z.boolean().default(false).describe("Only compare: list what would change and write nothing."),
    totp: Totp,
  })
  .superRefine(exactlyOne("passphrase", "private_key"))
  .openapi("ImportRequest");

const PlanEntrySchema = z.object({
  name: z.string(),
  kind: z.string().describe("Service/environment, channel or rule kind, or a key's display parts."),
  fields: z.array(z.string()).optional().describe("Names of the settings that differ (update)."),
  reason: z.string().optional().describe("Why it is not imported (conflict)."),
});
const KindPlanSchema = z.object({
  create: z.array(PlanEntrySchema),
  update: z.array(PlanEntrySchema),
  unchanged: z.array(PlanEntrySchema),
  conflicts: z.array(PlanEntrySchema),
});
export const ImportResultSchema = z
  .object({
    dry_run: z.boolean(),
    plan: z.object(
      Object.fromEntries(BUNDLE_KINDS.map((kind) => [kind, KindPlanSchema])) as Record<
        (typeof BUNDLE_KINDS)[number],
        typeof KindPlanSchema
      >,
    ),
  })
  .openapi("ImportResult");

const stepUp =
  "Admin scope and a step-up: a browser session must have signed in within 5 minutes, and a key that " +
  `enrolled 2FA (or any key, once the policy requires 2FA) sends a current code (\`totp\` or \`${TOTP_HEADER}\`).`;

const exportRoute = createRoute({
  method: "post",
  path: "/export",
  operationId: "exportTenant",
  tags,
  summary: "Export the tenant as a JWE to a passphrase or a public key (audited; no-store)",
  description:
    `${stepUp} The bundle holds every credential version decrypted, keys' metadata and hashes, the policy, ` +
    `channels with their secrets and rules. With \`stream: true\` or \`Accept: ${STREAM_MEDIA_TYPE}\` the ` +
    "answer is NDJSON, one JWE per line (required above 1,000 credentials or keys). See docs/export-import.md.",
  security: bearerSecurity,
  middleware: [requireScope("admin")] as const,
  request: { body: jsonBody(ExportRequestSchema) },
  responses: {
    200: {
      description: "The encrypted export.",
      content: {
        "application/json": { schema: ExportSchema },
        [NDJSON]: { schema: z.string().describe("One compact JWE per line.") },
      },
    },
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "INTEGRITY_ERROR", "SEALED"),
  },
});

const importRoute = createRoute({
  method: "post",
  path: "/import",
  operationId: "importTenant",
  tags,
  summary: "Import an export into this tenant, or with dry_run list what would change",
  description:
    `${stepUp} Merges: creates what is missing, updates what differs, never removes; conflicts are listed ` +
    `with their reason and skipped. Bodies up to ${IMPORT_MAX_BODY_BYTES} bytes. A tampered export is refused ` +
    "before anything is compared or written.",
  security: bearerSecurity,
  middleware: [requireScope("admin")] as const,
  request: { body: jsonBody(ImportRequestSchema) },
  responses: {
    200: {
      description: "The plan; applied unless dry_run.",
      content: { "application/json": { schema: ImportResultSchema } },
    },
    ...problems(
      ...AUTH_PROBLEMS,
      "VALIDATION_FAILED",
      "CONFLICT",
      "PAYLOAD_TOO_LARGE",
      "INTEGRITY_ERROR",
      "SEALED",
    ),
  },
});

export const exportRoutes = createRouter()
  .openapi(exportRoute, async (c) => {
    const body = c.req.valid("json");
    const db = database(c.env.DB);
    // Everything the tenant holds, decrypted, leaves in one answer: a step-up like reveal (OWASP ASVS 5.0 V6.8).
    await assertStepUp(c, db, body.totp);
    const recipient: Recipient = body.public_key
      ? await publicKeyRecipient(body.public_key)
      : { kind: "passphrase", passphrase: body.passphrase as string };
    const { tenantId } = c.get("principal");
    const stream = body.stream || (c.req.header("accept") ?? "").includes(STREAM_MEDIA_TYPE);
    const counts = await tenantCounts(db, tenantId);
    if (!stream) assertInlineExportSize(counts);
    const keys = await unseal(c.env, db);
    const now = Date.now();
    const audit = () =>
      commitWithAudit(
        c.env,
        auditActor(c),
        [],
        [
          {
            action: "tenant.export",
            targetType: "tenant",
            targetId: tenantId,
            detail: { ...counts, recipient: recipient.kind, stream },
          },
        ],
      );
    if (stream) {
      // Audited before the first byte: an export that cannot be audited does not start (Vault's rule).
      await audit();
      return c.body(exportStream(keys, db, tenantId, recipient, counts, now), 200, {
        "content-type": STREAM_MEDIA_TYPE,
        ...NO_STORE,
      });
    }
    const jwe = await exportInline(keys, db, tenantId, recipient, now);
    await audit();
    return c.json({ jwe }, 200, NO_STORE);
  })
  .openapi(importRoute, async (c) => {
    const body = c.req.valid("json");
    const db = database(c.env.DB);
    await assertStepUp(c, db, body.totp);
    const opener: Opener = body.private_key
      ? { kind: "private_key", jwk: body.private_key }
      : { kind: "passphrase", passphrase: body.passphrase as string };
    const bundle = await readExport(body.jwe, opener);
    const keys = await unseal(c.env, db);
    const { tenantId } = c.get("principal");
    const plan = await planImport(c.env, keys, db, bundle, {
      tenantId,
      origin: requestOrigin(c),
      now: Date.now(),
    });
    if (!body.dry_run) await applyImport(c.env, keys, auditActor(c), plan);
    return c.json({ dry_run: body.dry_run, plan: planView(plan) }, 200, NO_STORE);
  });
