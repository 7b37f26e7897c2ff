import { z } from "@hono/zod-openapi";
import { CidrSchema, CountrySchema } from "../keys/key-schemas";
import {
  COMPLIANCE_STANDARDS,
  ENVIRONMENTS,
  ROTATION_POLICIES,
  type RotationPolicy,
} from "./security-levels";

export const STEPS = ["services", "security", "keys", "testing", "monitoring", "review"] as const;
export type Step = (typeof STEPS)[number];
export const StepSchema = z.enum(STEPS);

export const ServicesStepSchema = z
  .strictObject({ service_ids: z.array(z.string().min(1).max(64)).min(1).max(20) })
  .openapi("WizardServicesStep");

export const SecurityStepSchema = z
  .strictObject({
    security_level: z.enum(["basic", "enhanced", "enterprise"]),
    environment: z.enum(ENVIRONMENTS),
    rotation_policy: z.enum(Object.keys(ROTATION_POLICIES) as [RotationPolicy, ...RotationPolicy[]]),
    custom_rotation_days: z.number().int().min(1).max(365).optional(),
    ip_allowlist: z.array(CidrSchema).max(100).default([]),
    country_allowlist: z.array(CountrySchema).max(250).default([]),
    require_2fa: z.boolean().default(false),
    compliance: z
      .array(z.enum(COMPLIANCE_STANDARDS.map((s) => s.id) as [string, ...string[]]))
      .max(4)
      .default([]),
  })
  .openapi("WizardSecurityStep");

const ChannelNameSchema = z.string().trim().min(1).max(60);

export const ChannelSchema = z
  .discriminatedUnion("kind", [
    z.strictObject({ kind: z.literal("email"), name: ChannelNameSchema, to: z.email().max(254) }),
    z.strictObject({
      kind: z.literal("slack"),
      name: ChannelNameSchema,
      webhook_url: z
        .string()
        .max(300)
        .regex(
          /^https:\/\/hooks\.slack\.com\/services\/[A-Za-z0-9]+\/[A-Za-z0-9]+\/[A-Za-z0-9]+$/,
          "must be a Slack incoming webhook URL",
        ),
    }),
    z.strictObject({ kind: z.literal("webhook"), name: ChannelNameSchema, url: z.url().max(500) }),
    z.strictObject({
      kind: z.literal("sms"),
      name: ChannelNameSchema,
      to: z.string().regex(/^\+[1-9]\d{6,14}$/, "must be an E.164 phone number"),
      from: z.string().regex(/^\+[1-9]\d{6,14}$/, "must be an E.164 phone number"),
      twilio_account_sid: z.string().regex(/^AC[0-9a-f]{32}$/, "must be a Twilio Account SID"),
      twilio_auth_token: z.string().regex(/^[0-9a-f]{32}$/, "must be a Twilio auth token"),
    }),
  ])
  .openapi("WizardChannel");
export type Channel = z.infer<typeof ChannelSchema>;

export const RuleSchema = z
  .discriminatedUnion("kind", [
    z.strictObject({
      kind: z.literal("usage_threshold"),
      service_id: z.string().max(64),
      threshold: z.number().int().min(1).max(1_000_000_000),
      window: z.enum(["hour", "day"]).default("day"),
      channel_names: z.array(ChannelNameSchema).min(1).max(10),
    }),
    z.strictObject({
      kind: z.literal("failure_rate"),
      service_id: z.string().max(64),
      threshold_percent: z.number().min(0.1).max(100),
      channel_names: z.array(ChannelNameSchema).min(1).max(10),
    }),
    z.strictObject({
      kind: z.literal("expiry_warning"),
      days_before: z.number().int().min(1).max(90),
      channel_names: z.array(ChannelNameSchema).min(1).max(10),
    }),
  ])
  .openapi("WizardRule");
export type Rule = z.infer<typeof RuleSchema>;

export const MonitoringStepSchema = z
  .strictObject({
    channels: z.array(ChannelSchema).max(10).default([]),
    rules: z.array(RuleSchema).max(20).default([]),
  })
  .openapi("WizardMonitoringStep");

export const ConfirmStepSchema = z.strictObject({}).openapi("WizardConfirmStep");

export const CommitStepSchema = z
  .strictObject({
    totp: z
      .string()
      .max(10)
      .optional()
      .describe("A current 2FA code, for a key that enrolled 2FA (step-up); or send it as x-keywarden-totp."),
  })
  .openapi("WizardCommit");

export type ServicesStep = z.infer<typeof ServicesStepSchema>;
export type SecurityStep = z.infer<typeof SecurityStepSchema>;
export type MonitoringStep = z.infer<typeof MonitoringStepSchema>;

/** The secret part of each channel kind: sealed with the tenant DEK, masked in every view. */
export const CHANNEL_SECRET_FIELDS: Record<Channel["kind"], string[]> = {
  email: [],
  slack: ["webhook_url"],
  webhook: ["signing_secret"],
  sms: ["twilio_auth_token"],
};
