import { z } from "@hono/zod-openapi";
import { ROTATION_METHODS, VERSION_STAGES } from "../lifecycle/rotation-kinds";
import { RotationSchema } from "../lifecycle/rotation-schema";

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

/** Overlap bounds of an automatic rotation: how long the old value keeps working after the new one is current. */
export const DEFAULT_OVERLAP_SECONDS = 86_400;
export const MAX_OVERLAP_SECONDS = 30 * 86_400;

const rotationPolicy = {
  policy_days: z.number().int().min(1).max(365).describe("Days between scheduled rotations."),
  overlap_seconds: z
    .number()
    .int()
    .min(0)
    .max(MAX_OVERLAP_SECONDS)
    .default(DEFAULT_OVERLAP_SECONDS)
    .describe("How long the old value stays valid at the provider after the new one is current."),
};

/** `PUT /credentials/{id}/rotation`: how a credential rotates, one shape per method. */
export const CredentialRotationConfigSchema = z
  .discriminatedUnion("method", [
    z
      .strictObject({ method: z.literal("assisted"), ...rotationPolicy })
      .describe("No provider API: reminders when due, then an admin enters the new value (POST .../rotate)."),
    z
      .strictObject({
        method: z.literal("provider"),
        ...rotationPolicy,
        rotator_credential_id: z
          .string()
          .min(1)
          .max(64)
          .describe(
            "A separate, least-privileged credential of the rotator's service that may mint and revoke.",
          ),
        settings: z
          .record(z.string().min(1).max(64), z.string().max(256))
          .default({})
          .describe("Non-secret settings the provider's API needs (e.g. the AWS IAM user name)."),
      })
      .describe("Keywarden mints the new key and revokes the old one at the provider."),
    z
      .strictObject({
        method: z.literal("external"),
        ...rotationPolicy,
        endpoint_url: z.string().min(1).max(2048).describe("https, port 443 or 8443, a public host."),
      })
      .describe("Keywarden calls the tenant's own endpoint (Standard Webhooks-signed) to mint and revoke."),
  ])
  .openapi("CredentialRotationConfig");

/** `POST /credentials/{id}/rotate`: empty for an automatic method, or the new value for an assisted one. */
export const RotateCredentialSchema = z
  .strictObject({
    fields: FieldValuesSchema.optional().describe(
      "The new value (assisted rotation): validated, sealed as the pending version, tested live, promoted.",
    ),
  })
  .openapi("RotateCredential");

/** The `rotation` object of a credential: the fixed points, plus how it rotates. */
export const CredentialRotationSchema = RotationSchema.extend({
  method: z.enum(ROTATION_METHODS).nullable().describe("null: no rotation configured."),
  overlap_seconds: z.number().int().nullable(),
  rotator_credential_id: z.string().nullable(),
  endpoint_url: z.string().nullable(),
  settings: z.record(z.string(), z.string()).nullable(),
}).openapi("CredentialRotation");

export const CredentialRotationConfiguredSchema = CredentialRotationSchema.extend({
  signing_secret: z
    .string()
    .optional()
    .describe("External method: the Standard Webhooks secret that signs calls to the endpoint. Shown once."),
}).openapi("CredentialRotationConfigured");

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
    rotation: CredentialRotationSchema,
  })
  .openapi("Credential");

export const CredentialDetailSchema = CredentialSchema.extend({
  versions: z.array(
    z.object({
      version: z.number().int(),
      stage: z
        .enum(VERSION_STAGES)
        .nullable()
        .describe(
          "current: what readers get; pending: a rotation's successor under test; previous: for rollback.",
        ),
      created_at: z.string(),
      created_by: z.string(),
    }),
  ),
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
