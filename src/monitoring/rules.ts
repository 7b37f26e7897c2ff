import { z } from "@hono/zod-openapi";
import { and, eq, inArray } from "drizzle-orm";
import type { AuditEvent } from "../audit/audit-log";
import { requireService } from "../credentials/require-service";
import type { Database } from "../db/client";
import { alertChannels, alertRules } from "../db/schema";
import { ApiError } from "../errors";
import { isoTime } from "../openapi/shared";
import { ALERT_SEVERITIES, type AlertSeverity, RULE_KINDS, type RuleKind } from "./alert-kinds";
import { DEFAULT_COOLDOWN_SECONDS } from "./default-rules";
import { diffByName, type NamedChange } from "./diff-by-name";
import { RULE_SETTINGS_SCHEMAS } from "./rule-schemas";

/**
 * Alert rules: the one place that turns a rule's input into its row (settings parsed by the kind's schema in
 * rule-schemas.ts, channels checked to be the tenant's own), for the `/monitoring/rules` routes and the
 * wizard's commit alike.
 */

export const RuleNameSchema = z.string().trim().min(1).max(80);
const MAX_COOLDOWN_SECONDS = 30 * 86_400;

const ruleFields = {
  name: RuleNameSchema.describe("Unique within the tenant."),
  service_id: z
    .string()
    .min(1)
    .max(64)
    .nullable()
    .optional()
    .describe("Only keys of this catalogue service."),
  settings: z
    .record(z.string(), z.unknown())
    .default({})
    .describe("The kind's settings (see docs/alerts.md); missing ones take the kind's defaults."),
  channel_ids: z
    .array(z.string().min(1).max(64))
    .max(10)
    .default([])
    .describe("Where its alerts are sent; none: alerts are only listed by GET /api/v1/alerts."),
  severity: z.enum(ALERT_SEVERITIES).default("warning"),
  cooldown_seconds: z.number().int().min(0).max(MAX_COOLDOWN_SECONDS).default(DEFAULT_COOLDOWN_SECONDS),
  enabled: z.boolean().default(true),
};

export const RuleInputSchema = z
  .strictObject({ kind: z.enum(RULE_KINDS), ...ruleFields })
  .openapi("AlertRuleInput");
export type RuleInput = z.infer<typeof RuleInputSchema>;

/** A PATCH names what changes; the kind is fixed (its settings would mean something else). */
export const RulePatchSchema = z
  .strictObject({
    name: ruleFields.name.optional(),
    service_id: ruleFields.service_id,
    settings: z.record(z.string(), z.unknown()).optional(),
    channel_ids: z.array(z.string().min(1).max(64)).max(10).optional(),
    severity: z.enum(ALERT_SEVERITIES).optional(),
    cooldown_seconds: z.number().int().min(0).max(MAX_COOLDOWN_SECONDS).optional(),
    enabled: z.boolean().optional(),
  })
  .openapi("AlertRulePatch");
export type RulePatch = z.infer<typeof RulePatchSchema>;

export type RuleRow = typeof alertRules.$inferSelect;

/** A rule ready to store: settings parsed with the kind's defaults. */
export interface RuleDraft {
  name: string;
  kind: RuleKind;
  serviceId: string | null;
  settings: Record<string, unknown>;
  channelIds: string[];
  severity: AlertSeverity;
  cooldownSeconds: number;
  enabled: boolean;
}

/**
 * The kind's schema parses the settings (defaults applied, unknown fields dropped): what is stored is what
 * the evaluators will read. Invalid settings are a 422 naming each field under `settings`.
 */
export function parseSettings(kind: RuleKind, raw: unknown, path = "settings"): Record<string, unknown> {
  const parsed = RULE_SETTINGS_SCHEMAS[kind].safeParse(raw ?? {});
  if (!parsed.success) {
    throw new ApiError("VALIDATION_FAILED", `The ${kind} settings are not valid.`, {
      errors: parsed.error.issues.slice(0, 20).map((issue) => ({
        path: [path, ...issue.path.map(String)].join("."),
        message: issue.message,
      })),
    });
  }
  return parsed.data as Record<string, unknown>;
}

export function ruleDraft(input: RuleInput): RuleDraft {
  if (input.service_id) requireService(input.service_id, "service_id");
  return {
    name: input.name,
    kind: input.kind,
    serviceId: input.service_id ?? null,
    settings: parseSettings(input.kind, input.settings),
    channelIds: [...new Set(input.channel_ids)],
    severity: input.severity,
    cooldownSeconds: input.cooldown_seconds,
    enabled: input.enabled,
  };
}

/** A stored rule with a PATCH applied, validated as a whole. */
export function patchedDraft(row: RuleRow, patch: RulePatch): RuleDraft {
  return ruleDraft(
    RuleInputSchema.parse({
      kind: row.kind,
      name: patch.name ?? row.name,
      service_id: patch.service_id === undefined ? row.serviceId : patch.service_id,
      settings: patch.settings ?? row.settings,
      channel_ids: patch.channel_ids ?? row.channelIds,
      severity: patch.severity ?? row.severity,
      cooldown_seconds: patch.cooldown_seconds ?? row.cooldownSeconds,
      enabled: patch.enabled ?? row.enabled,
    }),
  );
}

/** Every channel a rule names must be one of the tenant's own; another tenant's is simply unknown. */
export async function assertTenantChannels(db: Database, tenantId: string, channelIds: readonly string[]) {
  if (channelIds.length === 0) return;
  const found = await db
    .select({ id: alertChannels.id })
    .from(alertChannels)
    .where(and(eq(alertChannels.tenantId, tenantId), inArray(alertChannels.id, [...channelIds])))
    .all();
  const known = new Set(found.map((row) => row.id));
  const errors = channelIds.flatMap((id, index) =>
    known.has(id) ? [] : [{ path: `channel_ids.${index}`, message: "no such channel" }],
  );
  if (errors.length) throw new ApiError("VALIDATION_FAILED", "The rule names unknown channels.", { errors });
}

/** Rule names are unique within a tenant, so the wizard can reconcile by name. */
export async function assertRuleNameFree(db: Database, tenantId: string, name: string, exceptId?: string) {
  const row = await db
    .select({ id: alertRules.id })
    .from(alertRules)
    .where(and(eq(alertRules.tenantId, tenantId), eq(alertRules.name, name)))
    .get();
  if (row && row.id !== exceptId) {
    throw new ApiError("CONFLICT", "A rule of this name already exists.", {
      errors: [{ path: "name", message: "is taken by another rule" }],
    });
  }
}

export async function requireRule(db: Database, tenantId: string, ruleId: string): Promise<RuleRow> {
  const row = await db
    .select()
    .from(alertRules)
    .where(and(eq(alertRules.id, ruleId), eq(alertRules.tenantId, tenantId)))
    .get();
  if (!row) throw new ApiError("NOT_FOUND", "No such rule.");
  return row;
}

const ruleColumns = (draft: RuleDraft) => ({
  name: draft.name,
  kind: draft.kind,
  serviceId: draft.serviceId,
  settings: draft.settings,
  channelIds: draft.channelIds,
  severity: draft.severity,
  cooldownSeconds: draft.cooldownSeconds,
  enabled: draft.enabled,
});

const auditDetail = (draft: RuleDraft) => ({
  kind: draft.kind,
  name: draft.name,
  severity: draft.severity,
  enabled: draft.enabled,
  channels: draft.channelIds,
});

export function ruleCreateStatement(
  db: Database,
  target: { tenantId: string; ruleId: string; now: number },
  draft: RuleDraft,
) {
  const event: AuditEvent = {
    action: "rule.create",
    targetType: "alert_rule",
    targetId: target.ruleId,
    detail: auditDetail(draft),
  };
  return {
    statement: db.insert(alertRules).values({
      id: target.ruleId,
      tenantId: target.tenantId,
      ...ruleColumns(draft),
      createdAt: target.now,
      updatedAt: target.now,
    }),
    event,
  };
}

export function ruleUpdateStatement(
  db: Database,
  target: { tenantId: string; ruleId: string; now: number },
  draft: RuleDraft,
) {
  const event: AuditEvent = {
    action: "rule.update",
    targetType: "alert_rule",
    targetId: target.ruleId,
    detail: auditDetail(draft),
  };
  return {
    statement: db
      .update(alertRules)
      .set({ ...ruleColumns(draft), updatedAt: target.now })
      .where(and(eq(alertRules.id, target.ruleId), eq(alertRules.tenantId, target.tenantId))),
    event,
  };
}

export function ruleDeleteStatement(
  db: Database,
  tenantId: string,
  row: Pick<RuleRow, "id" | "kind" | "name">,
) {
  const event: AuditEvent = {
    action: "rule.delete",
    targetType: "alert_rule",
    targetId: row.id,
    detail: { kind: row.kind, name: row.name },
  };
  return {
    statement: db.delete(alertRules).where(and(eq(alertRules.id, row.id), eq(alertRules.tenantId, tenantId))),
    event,
  };
}

export const RuleViewSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    kind: z.enum(RULE_KINDS),
    service_id: z.string().nullable(),
    settings: z.record(z.string(), z.unknown()),
    channel_ids: z.array(z.string()),
    severity: z.enum(ALERT_SEVERITIES),
    cooldown_seconds: z.number().int(),
    enabled: z.boolean(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("AlertRule");

export function ruleView(row: RuleRow): z.infer<typeof RuleViewSchema> {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    service_id: row.serviceId,
    settings: row.settings,
    channel_ids: row.channelIds,
    severity: row.severity,
    cooldown_seconds: row.cooldownSeconds,
    enabled: row.enabled,
    created_at: isoTime(row.createdAt) as string,
    updated_at: isoTime(row.updatedAt || row.createdAt) as string,
  };
}

/** What a reconcile compares of a rule: channels as the caller names them (ids or names, consistently). */
export interface RuleShape {
  name: string;
  kind: RuleKind;
  serviceId: string | null;
  settings: Record<string, unknown>;
  channels: readonly string[];
}

export type RuleChange = NamedChange<RuleKind>;

/** JSON with sorted keys, so settings that differ only in key order compare equal. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
      .join(",")}}`;
  }
  return JSON.stringify(value);
}

export function changedRuleFields(before: RuleShape, after: RuleShape): string[] {
  const fields: string[] = [];
  if (before.kind !== after.kind) fields.push("kind");
  if (before.serviceId !== after.serviceId) fields.push("service_id");
  if (canonical(before.settings) !== canonical(after.settings)) fields.push("settings");
  if (canonical([...before.channels].sort()) !== canonical([...after.channels].sort()))
    fields.push("channels");
  return fields;
}

/**
 * How wanted rules differ from stored ones, matched by name. Only stored rules of `managedKinds` can be
 * removed: rules of kinds the caller cannot express are left alone and not listed.
 */
export function diffRules(
  stored: readonly { row: RuleRow; shape: RuleShape }[],
  wanted: readonly RuleShape[],
  managedKinds: readonly RuleKind[],
): RuleChange[] {
  return diffByName(
    stored.map(({ row, shape }) => ({ id: row.id, name: row.name, kind: row.kind, current: shape })),
    wanted,
    changedRuleFields,
    (kind) => managedKinds.includes(kind),
  );
}
