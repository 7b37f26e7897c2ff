import { z } from "@hono/zod-openapi";
import { CHANNEL_SECRET_FIELDS, type Channel, ChannelSchema } from "../monitoring/channels";
import { SecuritySettingsSchema } from "../policy/security-policy";

export const STEPS = ["services", "security", "keys", "testing", "monitoring", "review"] as const;
export type Step = (typeof STEPS)[number];
export const StepSchema = z.enum(STEPS);

export const ServicesStepSchema = z
  .strictObject({ service_ids: z.array(z.string().min(1).max(64)).min(1).max(20) })
  .openapi("WizardServicesStep");

/** The security step is the policy's settings: one schema (src/policy/security-policy.ts). */
export const SecurityStepSchema = SecuritySettingsSchema;

const ChannelNameSchema = z.string().trim().min(1).max(60);

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

/** Channels are validated and stored by src/monitoring/channels.ts; the wizard uses the same schema. */
export { CHANNEL_SECRET_FIELDS, type Channel, ChannelSchema };
