import { z } from "@hono/zod-openapi";
import { CUSTOM_SCOPE_PATTERN, ROLES } from "../auth/scopes";
import { PREFIX_PATTERN } from "../crypto/keys";
import { RotationSchema } from "../lifecycle/rotation-schema";
import { parseCidr } from "./ip-allowlist";
import { KEY_STATES } from "./key-state";
import { VERIFY_CODES } from "./verify-key";

const MAX_METADATA_BYTES = 4096;

export const ScopesSchema = z.array(z.string().regex(CUSTOM_SCOPE_PATTERN)).max(50);
export const RoleSchema = z.enum(Object.keys(ROLES) as [keyof typeof ROLES, ...(keyof typeof ROLES)[]]);
export const EnvironmentSchema = z.enum(["live", "test"]);
export const SecurityLevelSchema = z.enum(["basic", "enhanced", "enterprise"]);
export const KeyStateSchema = z.enum(KEY_STATES);

export const CidrSchema = z
  .string()
  .max(50)
  .refine(
    (value) => parseCidr(value) !== null,
    "must be an IPv4 or IPv6 address or CIDR with no host bits set",
  );
export const CountrySchema = z.string().regex(/^[A-Z]{2}$/, "must be an ISO 3166-1 alpha-2 code");

export const RatelimitSchema = z.strictObject({
  limit: z.number().int().min(1).max(1_000_000),
  window_ms: z.number().int().min(1_000).max(86_400_000),
});

export const UsageLimitSchema = z.strictObject({
  remaining: z.number().int().min(0).max(1_000_000_000),
  refill_amount: z.number().int().min(1).max(1_000_000_000).optional(),
  refill_interval_ms: z
    .number()
    .int()
    .min(60_000)
    .max(31 * 86_400_000)
    .optional(),
});

export const MetadataSchema = z
  .record(z.string().max(64), z.union([z.string().max(1024), z.number(), z.boolean(), z.null()]))
  .refine(
    (value) => JSON.stringify(value).length <= MAX_METADATA_BYTES,
    `must be at most ${MAX_METADATA_BYTES} bytes`,
  )
  .refine((value) => Object.keys(value).length <= 50, "must have at most 50 entries");

const FutureTimeSchema = z.iso.datetime({ offset: true });

export const DEFAULT_ROTATION_OVERLAP_SECONDS = 86_400;
export const MAX_ROTATION_OVERLAP_SECONDS = 30 * 86_400;

export const KeyRotationSettingsSchema = z
  .strictObject({
    policy_days: z
      .number()
      .int()
      .min(1)
      .max(365)
      .nullable()
      .optional()
      .describe(
        "Days between automatic rotations (null: by hand only). Defaults to the tenant's security policy. " +
          "A schedule, not an expiry: the key keeps working until its successor's overlap ends.",
      ),
    overlap_seconds: z
      .number()
      .int()
      .min(0)
      .max(MAX_ROTATION_OVERLAP_SECONDS)
      .optional()
      .describe("How long the old key keeps verifying after its successor is promoted. Default 86400."),
  })
  .openapi("KeyRotationSettings");

const limitFields = {
  ip_allowlist: z.array(CidrSchema).max(100).optional(),
  country_allowlist: z.array(CountrySchema).max(250).optional(),
  ratelimit: RatelimitSchema.optional(),
  usage_limit: UsageLimitSchema.optional(),
  metadata: MetadataSchema.optional(),
};

export const CreateKeySchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100),
    role: RoleSchema.optional(),
    scopes: ScopesSchema.optional(),
    environment: EnvironmentSchema.default("live"),
    security_level: SecurityLevelSchema.default("basic"),
    prefix: z.string().regex(PREFIX_PATTERN).optional(),
    expires_at: FutureTimeSchema.optional(),
    service_id: z.string().max(64).optional(),
    rotation: KeyRotationSettingsSchema.optional(),
    ...limitFields,
  })
  .openapi("CreateKey");

export const UpdateKeySchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100).optional(),
    enabled: z.boolean().optional(),
    role: RoleSchema.optional(),
    scopes: ScopesSchema.optional(),
    expires_at: FutureTimeSchema.nullable().optional(),
    rotation: KeyRotationSettingsSchema.optional(),
    ip_allowlist: z.array(CidrSchema).max(100).nullable().optional(),
    country_allowlist: z.array(CountrySchema).max(250).nullable().optional(),
    ratelimit: RatelimitSchema.nullable().optional(),
    usage_limit: UsageLimitSchema.nullable().optional(),
    metadata: MetadataSchema.nullable().optional(),
  })
  .openapi("UpdateKey");

export const RotateKeySchema = z
  .strictObject({
    grace_seconds: z
      .number()
      .int()
      .min(0)
      .max(MAX_ROTATION_OVERLAP_SECONDS)
      .optional()
      .describe("The overlap for this rotation; the key's own `rotation.overlap_seconds` when omitted."),
  })
  .openapi("RotateKey");

export const KeySchema = z
  .object({
    id: z.string(),
    name: z.string(),
    start: z
      .string()
      .describe("Prefix, environment and first characters: enough to recognise, never to use."),
    last4: z.string(),
    environment: EnvironmentSchema,
    security_level: SecurityLevelSchema,
    scopes: z.array(z.string()),
    enabled: z.boolean(),
    state: KeyStateSchema.describe(
      "Where the key stands when it was read, the first that holds: `revoked`; `expired` (at or past " +
        "`expires_at`); `disabled`; `rotated` (replaced by `rotated_to_id`, still verifying until the overlap " +
        "ends); otherwise `active`. The same rule as the list's `state` filter.",
    ),
    revoked_at: z.string().nullable(),
    expires_at: z.string().nullable(),
    ip_allowlist: z.array(z.string()).nullable(),
    country_allowlist: z.array(z.string()).nullable(),
    ratelimit: RatelimitSchema.nullable(),
    usage_limit: UsageLimitSchema.nullable(),
    metadata: z.record(z.string(), z.unknown()).nullable(),
    service_id: z.string().nullable(),
    backup_of_id: z.string().nullable(),
    rotated_to_id: z.string().nullable(),
    rotation: RotationSchema,
    created_at: z.string(),
    updated_at: z.string(),
    last_used_at: z.string().nullable(),
  })
  .openapi("Key");

export const CreatedKeySchema = KeySchema.extend({
  key: z.string().describe("The plaintext key. Returned once, never stored."),
  backup_key: z
    .object({ id: z.string(), key: z.string() })
    .optional()
    .describe("Enterprise level only: a second key with the same rights, for break-glass use."),
}).openapi("CreatedKey");

export const RotatedKeySchema = CreatedKeySchema.extend({
  previous: z.object({ id: z.string(), expires_at: z.string().nullable() }),
}).openapi("RotatedKey");

export const KeyListSchema = z
  .object({ items: z.array(KeySchema), next_cursor: z.string().nullable() })
  .openapi("KeyList");

export const KeyUsageSchema = z
  .object({
    key_id: z.string(),
    remaining: z.number().int().nullable(),
    days: z.array(z.object({ day: z.string(), valid: z.number().int(), invalid: z.number().int() })),
  })
  .openapi("KeyUsage");

export const VerifyKeyRequestSchema = z
  .strictObject({
    key: z.string().max(512),
    scopes: z.array(z.string().max(64)).max(50).optional(),
  })
  .openapi("VerifyKeyRequest");

export const VerifyKeyResponseSchema = z
  .object({
    valid: z.boolean(),
    code: z.enum(VERIFY_CODES),
    key_id: z.string().optional(),
    name: z.string().optional(),
    environment: EnvironmentSchema.optional(),
    scopes: z.array(z.string()).optional(),
    expires_at: z.string().nullable().optional(),
    remaining: z.number().int().optional(),
    ratelimit: z
      .object({ limit: z.number().int(), remaining: z.number().int(), reset: z.number().int() })
      .optional(),
    replaced_by: z.string().optional().describe("Set during a rotation's overlap: the id of the new key."),
    metadata: z.record(z.string(), z.unknown()).nullable().optional(),
  })
  .openapi("VerifyKeyResponse");
