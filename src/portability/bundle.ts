import { z } from "@hono/zod-openapi";
import { KEPT_VERSIONS } from "../credentials/credential-versions";
import {
  CidrSchema,
  CountrySchema,
  MetadataSchema,
  RatelimitSchema,
  ScopesSchema,
  UsageLimitSchema,
} from "../keys/key-schemas";
import { VERSION_STAGES } from "../lifecycle/rotation-kinds";
import { ALERT_SEVERITIES, CHANNEL_KINDS, RULE_KINDS } from "../monitoring/alert-kinds";
import { SecuritySettingsSchema } from "../policy/security-policy";

/**
 * The tenant bundle: everything an export carries, as plaintext JSON inside the JWE. The `format` names the
 * version of this shape; an import refuses any other, so a later format can change it without being misread.
 * Times are ISO 8601 (UTC). Ids are the exporting tenant's; an import gives every object a new id and maps
 * the references between them (a rule's channels, a channel's SendGrid credential, a key's rotation links).
 */
export const BUNDLE_FORMAT = "keywarden.tenant-bundle/1";

const Id = z.string().min(1).max(64);
const Time = z.iso.datetime({ offset: true });
const FieldValues = z.record(z.string().min(1).max(64), z.string().max(16_384));

export const BundleCredentialVersionSchema = z.strictObject({
  version: z.number().int().min(1),
  stage: z.enum(VERSION_STAGES).nullable(),
  fields: FieldValues,
  provider_key_id: z.string().max(256).nullable(),
  created_at: Time,
});

export const BundleCredentialSchema = z
  .strictObject({
    id: Id,
    service: z.string().min(1).max(64),
    environment: z.enum(["development", "staging", "production"]),
    security_level: z.enum(["basic", "enhanced", "enterprise"]),
    name: z.string().trim().min(1).max(100),
    status: z.enum(["active", "deleted"]),
    deleted_at: Time.nullable(),
    current_version: z.number().int().min(1),
    created_at: Time,
    /** Every stored version: at most KEPT_VERSIONS unlabelled ones plus the labelled ones. */
    versions: z
      .array(BundleCredentialVersionSchema)
      .min(1)
      .max(KEPT_VERSIONS + VERSION_STAGES.length),
  })
  .superRefine((credential, ctx) => {
    const numbers = credential.versions.map((v) => v.version);
    if (new Set(numbers).size !== numbers.length)
      ctx.addIssue({ code: "custom", path: ["versions"], message: "version numbers repeat" });
    for (const stage of VERSION_STAGES) {
      if (credential.versions.filter((v) => v.stage === stage).length > 1)
        ctx.addIssue({ code: "custom", path: ["versions"], message: `more than one ${stage} version` });
    }
    const current = credential.versions.find((v) => v.stage === "current");
    if (current?.version !== credential.current_version)
      ctx.addIssue({
        code: "custom",
        path: ["current_version"],
        message: "must be the version labelled current",
      });
  });

/** A key: the fields of its API view (`keyFields`), then what an import needs to recreate it. */
export const BundleKeySchema = z.strictObject({
  id: Id,
  name: z.string().min(1).max(200),
  start: z.string().max(32),
  last4: z.string().max(8),
  environment: z.enum(["live", "test"]),
  security_level: z.enum(["basic", "enhanced", "enterprise"]),
  scopes: ScopesSchema,
  enabled: z.boolean(),
  revoked_at: Time.nullable(),
  expires_at: Time.nullable(),
  ip_allowlist: z.array(CidrSchema).max(100).nullable(),
  country_allowlist: z.array(CountrySchema).max(250).nullable(),
  ratelimit: RatelimitSchema.nullable(),
  usage_limit: UsageLimitSchema.nullable(),
  metadata: MetadataSchema.nullable(),
  service_id: z.string().max(64).nullable(),
  backup_of_id: Id.nullable(),
  rotated_to_id: Id.nullable(),
  /** SHA-256 of the whole key (src/crypto/keys.ts): what verify looks keys up by. Never the key itself. */
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  rotation_days: z.number().int().min(1).max(3650).nullable(),
  rotation_overlap_seconds: z
    .number()
    .int()
    .min(0)
    .max(30 * 86_400),
  rotated_from_id: Id.nullable(),
  last_rotated_at: Time.nullable(),
  created_at: Time,
});

/** A channel with its secret settings in plaintext (the webhook signing secret too, so receivers keep verifying). */
export const BundleChannelSchema = z.strictObject({
  kind: z.enum(CHANNEL_KINDS),
  name: z.string().min(1).max(60),
  config: z.record(z.string().max(64), z.string().max(2048)),
  secrets: z.record(z.string().max(64), z.string().max(2048)),
});

/** A rule names its channels by name (unique per tenant), so it can be resolved in the importing tenant. */
export const BundleRuleSchema = z.strictObject({
  name: z.string().min(1).max(80),
  kind: z.enum(RULE_KINDS),
  service_id: z.string().max(64).nullable(),
  settings: z.record(z.string(), z.unknown()),
  channels: z.array(z.string().max(60)).max(10),
  severity: z.enum(ALERT_SEVERITIES),
  cooldown_seconds: z.number().int().min(0),
  enabled: z.boolean(),
});

export const TenantBundleSchema = z.strictObject({
  format: z.literal(BUNDLE_FORMAT),
  exported_at: Time,
  source_tenant: Id,
  credentials: z.array(BundleCredentialSchema),
  keys: z.array(BundleKeySchema),
  channels: z.array(BundleChannelSchema),
  rules: z.array(BundleRuleSchema),
  policy: SecuritySettingsSchema.nullable(),
});

export type BundleCredential = z.infer<typeof BundleCredentialSchema>;
export type BundleKey = z.infer<typeof BundleKeySchema>;
export type BundleChannel = z.infer<typeof BundleChannelSchema>;
export type BundleRule = z.infer<typeof BundleRuleSchema>;
export type BundlePolicy = z.infer<typeof SecuritySettingsSchema>;
export type TenantBundle = z.infer<typeof TenantBundleSchema>;

/** The kinds of a bundle, in the order an import writes them (credentials before the channels naming them). */
export const BUNDLE_KINDS = ["credentials", "keys", "channels", "rules", "policy"] as const;
export type BundleKind = (typeof BUNDLE_KINDS)[number];

/** One page of a bundle: the unit the streamed export encrypts as one line. */
export type BundlePage =
  | { kind: "credentials"; items: BundleCredential[] }
  | { kind: "keys"; items: BundleKey[] }
  | { kind: "channels"; items: BundleChannel[] }
  | { kind: "rules"; items: BundleRule[] }
  | { kind: "policy"; items: BundlePolicy[] };

export const BundlePageSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("credentials"), items: z.array(BundleCredentialSchema) }),
  z.strictObject({ kind: z.literal("keys"), items: z.array(BundleKeySchema) }),
  z.strictObject({ kind: z.literal("channels"), items: z.array(BundleChannelSchema) }),
  z.strictObject({ kind: z.literal("rules"), items: z.array(BundleRuleSchema) }),
  z.strictObject({ kind: z.literal("policy"), items: z.array(SecuritySettingsSchema).max(1) }),
]);

/** Folds pages into a bundle (the streamed export's pages, or the pages an inline export was read in). */
export function bundleOf(
  pages: Iterable<BundlePage>,
  meta: { exportedAt: string; sourceTenant: string },
): TenantBundle {
  const bundle: TenantBundle = {
    format: BUNDLE_FORMAT,
    exported_at: meta.exportedAt,
    source_tenant: meta.sourceTenant,
    credentials: [],
    keys: [],
    channels: [],
    rules: [],
    policy: null,
  };
  for (const page of pages) {
    if (page.kind === "policy") bundle.policy = page.items[0] ?? bundle.policy;
    else (bundle[page.kind] as unknown[]).push(...page.items);
  }
  return bundle;
}

/** What a bundle holds, by kind: the audit rows of export and import record these counts, never names. */
export function bundleCounts(bundle: TenantBundle) {
  return {
    credentials: bundle.credentials.length,
    credential_versions: bundle.credentials.reduce((n, c) => n + c.versions.length, 0),
    keys: bundle.keys.length,
    channels: bundle.channels.length,
    rules: bundle.rules.length,
    policy: bundle.policy !== null,
  };
}
