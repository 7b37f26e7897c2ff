import { z } from "@hono/zod-openapi";

export const CredentialEnvironmentSchema = z.enum(["development", "staging", "production"]);
export const CredentialSecurityLevelSchema = z.enum(["basic", "enhanced", "enterprise"]);

/** Values are validated per service against the catalogue; here only the envelope is bounded. */
export const FieldValuesSchema = z
  .record(z.string().min(1).max(64), z.string().min(1).max(4096))
  .refine((value) => Object.keys(value).length <= 20, "must have at most 20 fields");

export const CreateCredentialSchema = z
  .strictObject({
    service: z.string().min(1).max(64),
    environment: CredentialEnvironmentSchema,
    security_level: CredentialSecurityLevelSchema.default("enhanced"),
    name: z.string().trim().min(1).max(100).optional(),
    fields: FieldValuesSchema,
  })
  .openapi("CreateCredential");

export const UpdateCredentialSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100).optional(),
    fields: FieldValuesSchema.optional(),
  })
  .openapi("UpdateCredential");

/** Documents the precondition; its rules (428 when absent, 412 otherwise unless it matches) are in preconditions.ts. */
export const IfMatchHeader = z.object({
  "if-match": z
    .string()
    .optional()
    .openapi({
      description:
        "The credential's current strong ETag, as read from GET or the last write (RFC 9110 §13.1.1). " +
        "Absent: 428 (a blank value reaches the Worker as no header). Malformed, weak, `*` or stale: 412.",
      example: '"cred_0000000000000000000000.r1"',
    }),
});

export const RollbackCredentialSchema = z
  .strictObject({ version: z.number().int().min(1) })
  .openapi("RollbackCredential");
export const RevealCredentialSchema = z
  .strictObject({
    version: z.number().int().min(1).optional(),
    totp: z
      .string()
      .max(10)
      .optional()
      .describe("Wizard sessions whose key enrolled 2FA: a current code (step-up)."),
  })
  .openapi("RevealCredential");

export const ProbeResultSchema = z
  .object({
    status: z.enum(["valid", "invalid", "unknown"]),
    reason: z.string(),
    latency_ms: z.number().int(),
    http_status: z.number().int().optional(),
    expires_at: z.string().nullable().optional(),
    account: z.string().nullable().optional(),
    retry_after_s: z.number().optional(),
  })
  .openapi("ProbeResult");

export const CredentialSchema = z
  .object({
    id: z.string(),
    service: z.string(),
    environment: CredentialEnvironmentSchema,
    security_level: CredentialSecurityLevelSchema,
    name: z.string(),
    version: z.number().int(),
    status: z.enum(["active", "deleted"]),
    fields: z.record(z.string(), z.string()).describe("Secret fields masked (at most a third shown)."),
    last_test: z
      .object({
        status: z.enum(["valid", "invalid", "unknown"]),
        reason: z.string().nullable(),
        latency_ms: z.number().int().nullable(),
        tested_at: z.string().nullable(),
      })
      .nullable(),
    provider_expires_at: z.string().nullable(),
    provider_account: z.string().nullable(),
    deleted_at: z.string().nullable(),
    restorable_until: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("Credential");

export const CredentialDetailSchema = CredentialSchema.extend({
  versions: z.array(z.object({ version: z.number().int(), created_at: z.string(), created_by: z.string() })),
  warnings: z.array(z.string()).optional(),
}).openapi("CredentialDetail");

export const RevealedCredentialSchema = z
  .object({
    id: z.string(),
    service: z.string(),
    version: z.number().int(),
    fields: z.record(z.string(), z.string()),
  })
  .openapi("RevealedCredential");

export const CredentialListSchema = z
  .object({ items: z.array(CredentialSchema), next_cursor: z.string().nullable() })
  .openapi("CredentialList");
