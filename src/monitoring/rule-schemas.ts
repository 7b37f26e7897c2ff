import { z } from "@hono/zod-openapi";
import { ORIGIN_KINDS, type RuleKind } from "./alert-kinds";

/**
 * The settings of each rule kind: the one source for the API's input, the wizard's step and the evaluators
 * (which parse stored settings with the same schema, so a default applies the same everywhere).
 */
const KeyFilter = z
  .string()
  .min(1)
  .max(64)
  .optional()
  .describe("Only this key (default: every key in scope).");
const Window = z.enum(["hour", "day"]);

export const RULE_SETTINGS_SCHEMAS = {
  usage_threshold: z
    .object({
      window: Window.default("day"),
      threshold: z.number().int().min(1).max(1_000_000_000).optional().describe("Requests in the window."),
      percent_of_limit: z
        .number()
        .min(1)
        .max(100)
        .optional()
        .describe("Fires when a key has used this percent of its usage limit."),
      key_id: KeyFilter,
    })
    .refine((s) => (s.threshold === undefined) !== (s.percent_of_limit === undefined), {
      message: "set exactly one of threshold and percent_of_limit",
    }),
  failure_rate: z.object({
    window: Window.default("hour"),
    threshold_percent: z.number().min(0.1).max(100),
    /** Below this many verifications in the window the rate says nothing. */
    min_requests: z.number().int().min(1).max(1_000_000).default(20),
    key_id: KeyFilter,
  }),
  expiry_warning: z.object({
    days_before: z
      .array(z.number().int().min(1).max(365))
      .min(1)
      .max(5)
      .refine((days) => new Set(days).size === days.length, { message: "the days must differ" })
      .default([30, 7, 1]),
    subjects: z
      .array(z.enum(["key", "credential"]))
      .min(1)
      .default(["key", "credential"]),
  }),
  rotation: z.object({
    on: z
      .array(z.enum(["due", "overdue", "failed"]))
      .min(1)
      .default(["due", "overdue", "failed"]),
    /** A rotation still not done this long after it was due is overdue. */
    overdue_after_hours: z.number().int().min(1).max(720).default(24),
  }),
  retest_failing: z.object({}),
  anomaly_volume: z.object({
    z_threshold: z.number().min(2).max(20).default(4),
    /** Hours with fewer requests than this never count as anomalous. */
    min_count: z.number().int().min(1).max(1_000_000).default(50),
    key_id: KeyFilter,
  }),
  anomaly_failures: z.object({
    z_threshold: z.number().min(2).max(20).default(4),
    min_count: z.number().int().min(1).max(1_000_000).default(20),
    key_id: KeyFilter,
  }),
  new_origin: z.object({
    origins: z.array(z.enum(ORIGIN_KINDS)).min(1).default(["country", "network"]),
    key_id: KeyFilter,
  }),
  auth_failure_burst: z.object({
    /** Refused authentications with the tenant's keys over the last hour (sliding). */
    threshold: z.number().int().min(1).max(1_000_000).default(25),
  }),
  channel_failing: z.object({
    /** Deliveries that gave up in a row before the channel counts as failing. */
    after_failures: z.number().int().min(1).max(100).default(3),
  }),
} satisfies Record<RuleKind, z.ZodType>;

export type RuleSettings<K extends RuleKind> = z.infer<(typeof RULE_SETTINGS_SCHEMAS)[K]>;

/** Stored settings with their defaults applied; unknown fields are dropped, invalid ones throw. */
export function parseRuleSettings<K extends RuleKind>(kind: K, raw: unknown): RuleSettings<K> {
  return RULE_SETTINGS_SCHEMAS[kind].parse(raw ?? {}) as RuleSettings<K>;
}
