import { eq } from "drizzle-orm";
import type { AuditEvent } from "../audit/audit-log";
import { newId } from "../crypto/random";
import type { Database } from "../db/client";
import { alertRules } from "../db/schema";
import type { RuleKind } from "../monitoring/alert-kinds";
import {
  type ChannelChange,
  type ChannelRow,
  type ChannelSpec,
  channelCreateStatements,
  channelDeleteStatements,
  channelSpec,
  channelUpdateStatements,
  diffChannels,
  storedSpec,
  tenantChannelsQuery,
} from "../monitoring/channels";
import { DEFAULT_COOLDOWN_SECONDS } from "../monitoring/default-rules";
import type { Change } from "../monitoring/diff-by-name";
import {
  diffRules,
  parseSettings,
  type RuleChange,
  type RuleDraft,
  type RuleRow,
  type RuleShape,
  ruleCreateStatement,
  ruleDeleteStatement,
  ruleUpdateStatement,
} from "../monitoring/rules";
import {
  changedPolicyFields,
  policyValues,
  policyWriteStatement,
  type SecurityPolicy,
  tenantSecurityPolicyQuery,
} from "../policy/security-policy";
import type { ActiveDekRead } from "../vault/data-keys";
import type { Unsealed } from "../vault/keyring";
import { channelSlots, fieldsUnder } from "./slots";
import { type Channel, type Rule, RuleSchema, type SecurityStep } from "./steps";
import type { MaskedChannel } from "./wizard-state";

/**
 * A wizard commit reconciles instead of appending: the monitoring step is the wanted set of channels
 * (matched by name, unique per tenant) and of rules of the kinds the wizard can express (matched by a name
 * derived from what the rule watches); the security step is the wanted policy. The review step shows the
 * same plan the commit then writes, so what the admin confirmed is what happens.
 */

/** The rule kinds the wizard's monitoring step offers; stored rules of other kinds are not its business. */
export const WIZARD_RULE_KINDS = RuleSchema.options.map((option) => option.shape.kind.value) as RuleKind[];

/**
 * A wizard rule's name: what it watches, not its threshold, so changing a threshold in a later wizard
 * changes that rule instead of adding a second one (and two wizard rules watching the same thing are refused).
 */
export function wizardRuleName(rule: Rule): string {
  switch (rule.kind) {
    case "usage_threshold":
      return `usage_threshold:${rule.service_id}:${rule.window}`;
    case "failure_rate":
      return `failure_rate:${rule.service_id}`;
    case "expiry_warning":
      return "expiry_warning";
  }
}

/** The stored settings of a wizard rule, parsed by the kind's schema (so its defaults apply as for the API). */
export function wizardRuleShape(rule: Rule): RuleShape {
  const base = { name: wizardRuleName(rule), kind: rule.kind, channels: rule.channel_names };
  switch (rule.kind) {
    case "usage_threshold":
      return {
        ...base,
        serviceId: rule.service_id,
        settings: parseSettings(rule.kind, { threshold: rule.threshold, window: rule.window }),
      };
    case "failure_rate":
      return {
        ...base,
        serviceId: rule.service_id,
        settings: parseSettings(rule.kind, { threshold_percent: rule.threshold_percent }),
      };
    case "expiry_warning":
      // The wizard asks for one reminder; a rule reminds on a list of days.
      return {
        ...base,
        serviceId: null,
        settings: parseSettings(rule.kind, { days_before: [rule.days_before] }),
      };
  }
}

export interface PolicyChange {
  change: Exclude<Change, "removed">;
  fields: string[];
}

export interface ReconcilePlan {
  channels: ChannelChange[];
  rules: RuleChange[];
  policy: PolicyChange;
  /** What the commit writes from (kept out of every response: channel specs hold plaintext secrets). */
  internal: {
    wanted: ChannelSpec[];
    storedChannels: ChannelRow[];
    ruleShapes: RuleShape[];
    storedRules: RuleRow[];
    policy: SecurityPolicy;
  };
}

/** The wizard's channels with their secrets opened: the masked state supplies the public settings. */
export function wizardChannelSpecs(
  masked: readonly MaskedChannel[],
  plain: Readonly<Record<string, string>>,
): ChannelSpec[] {
  return masked.map((channel) => {
    const secrets = fieldsUnder(plain, channelSlots(channel.name));
    const spec = channelSpec({ ...channel, ...secrets } as Channel, secrets);
    return spec;
  });
}

/** What a plan compares the wizard with: the tenant's channels, rules and policy as they are stored. */
export interface StoredSettings {
  channels: ChannelRow[];
  rules: RuleRow[];
  policy: SecurityPolicy | null;
}

/**
 * The reads of `StoredSettings` as single-table queries (drizzle maps a batched join's columns by name), for
 * one D1 batch with the caller's other reads; `storedSettingsOf` takes what they found.
 */
export function storedSettingsQueries(db: Database, tenantId: string) {
  return [
    tenantChannelsQuery(db, tenantId),
    db.select().from(alertRules).where(eq(alertRules.tenantId, tenantId)),
    tenantSecurityPolicyQuery(db, tenantId),
  ] as const;
}

export function storedSettingsOf(
  channels: ChannelRow[],
  rules: RuleRow[],
  policies: SecurityPolicy[],
): StoredSettings {
  return { channels, rules, policy: policies[0] ?? null };
}

/** The tenant's stored settings, in one round trip. */
export async function readStoredSettings(db: Database, tenantId: string): Promise<StoredSettings> {
  return storedSettingsOf(...(await db.batch(storedSettingsQueries(db, tenantId))));
}

/**
 * Compares the wizard's settings with what the tenant has (`stored`, read by the caller). Reads nothing else;
 * opens stored channel secrets to compare.
 */
export async function planReconcile(
  keys: Unsealed,
  db: Database,
  input: {
    tenantId: string;
    wizardId: string;
    security: SecurityStep;
    monitoring: { channels: MaskedChannel[]; rules: Rule[] } | null;
    plain: Readonly<Record<string, string>>;
    now: number;
  },
  stored: StoredSettings,
): Promise<ReconcilePlan> {
  const { channels: storedChannels, rules: storedRules, policy: storedPolicy } = stored;
  const wanted = wizardChannelSpecs(input.monitoring?.channels ?? [], input.plain);
  const storedSpecs = await Promise.all(
    storedChannels.map(async (row) => ({ row, spec: await storedSpec(keys, db, row) })),
  );
  const nameOf = new Map(storedChannels.map((row) => [row.id, row.name]));
  const ruleShapes = (input.monitoring?.rules ?? []).map(wizardRuleShape);
  const storedShapes = storedRules.map((row) => ({
    row,
    shape: {
      name: row.name,
      kind: row.kind,
      serviceId: row.serviceId,
      settings: row.settings,
      channels: row.channelIds.map((id) => nameOf.get(id) ?? id),
    },
  }));
  const policy = policyValues(input.tenantId, input.security, { wizardId: input.wizardId, now: input.now });
  const policyFields = changedPolicyFields(storedPolicy, policy);
  return {
    channels: diffChannels(storedSpecs, wanted),
    rules: diffRules(storedShapes, ruleShapes, WIZARD_RULE_KINDS),
    policy: {
      change: storedPolicy ? (policyFields.length ? "changed" : "unchanged") : "added",
      fields: policyFields,
    },
    internal: { wanted, storedChannels, ruleShapes, storedRules, policy },
  };
}

export interface ReconcileIds {
  added: string[];
  changed: string[];
  removed: string[];
  unchanged: string[];
}

const emptyIds = (): ReconcileIds => ({ added: [], changed: [], removed: [], unchanged: [] });

/**
 * The statements of a plan, for the commit's one batch: removed channels first (taken out of every rule in
 * the same statement set), then channel writes, then rules with their channel names resolved to ids, then
 * the policy. A rule the wizard changes keeps its stored severity, cool-down and switch, which the wizard
 * does not express.
 */
export async function reconcileStatements(
  keys: Unsealed,
  db: Database,
  plan: ReconcilePlan,
  target: { tenantId: string; now: number },
  /** What `activeDekQuery` found, when the caller read it in its own batch: new channel secrets are sealed with it. */
  activeDek?: ActiveDekRead,
) {
  const statements: { toSQL(): { sql: string; params: unknown[] } }[] = [];
  const events: AuditEvent[] = [];
  const channelIds = emptyIds();
  const ruleIds = emptyIds();
  const { wanted, storedChannels, ruleShapes, storedRules, policy } = plan.internal;

  const removedChannels = storedChannels.filter((row) =>
    plan.channels.some((change) => change.change === "removed" && change.id === row.id),
  );
  const removal = channelDeleteStatements(db, target, removedChannels);
  statements.push(...removal.statements);
  events.push(...removal.events);
  channelIds.removed.push(...removedChannels.map((row) => row.id));

  const idByName = new Map<string, string>();
  for (const change of plan.channels) {
    if (change.change === "removed") continue;
    const spec = wanted.find((entry) => entry.name === change.name) as ChannelSpec;
    const channelId = change.id ?? newId("chan");
    idByName.set(change.name, channelId);
    channelIds[change.change].push(channelId);
    if (change.change === "unchanged") continue;
    const write =
      change.change === "added"
        ? await channelCreateStatements(keys, db, { ...target, channelId }, spec, activeDek)
        : await channelUpdateStatements(keys, db, { ...target, channelId }, spec, change.fields, activeDek);
    statements.push(...write.statements);
    events.push(write.event);
  }

  for (const change of plan.rules) {
    if (change.change === "removed") {
      const row = storedRules.find((entry) => entry.id === change.id) as RuleRow;
      const removed = ruleDeleteStatement(db, target.tenantId, row);
      statements.push(removed.statement);
      events.push(removed.event);
      ruleIds.removed.push(row.id);
      continue;
    }
    const ruleId = change.id ?? newId("rule");
    ruleIds[change.change].push(ruleId);
    if (change.change === "unchanged") continue;
    const shape = ruleShapes.find((entry) => entry.name === change.name) as RuleShape;
    const stored = storedRules.find((entry) => entry.id === change.id);
    const draft: RuleDraft = {
      name: shape.name,
      kind: shape.kind,
      serviceId: shape.serviceId,
      settings: shape.settings,
      channelIds: shape.channels.map((name) => idByName.get(name) as string),
      severity: stored?.severity ?? "warning",
      cooldownSeconds: stored?.cooldownSeconds ?? DEFAULT_COOLDOWN_SECONDS,
      enabled: stored?.enabled ?? true,
    };
    const write =
      change.change === "added"
        ? ruleCreateStatement(db, { tenantId: target.tenantId, ruleId, now: target.now }, draft)
        : ruleUpdateStatement(db, { tenantId: target.tenantId, ruleId, now: target.now }, draft);
    statements.push(write.statement);
    events.push(write.event);
  }

  // Written even when unchanged, so the policy names the wizard that last confirmed it.
  const policyWrite = policyWriteStatement(db, policy, plan.policy.fields);
  statements.push(policyWrite.statement);
  events.push(policyWrite.event);
  return { statements, events, channelIds, ruleIds };
}

/** The plan as the review step and the commit summary show it: names, kinds, changed field names and ids only. */
export function planView(plan: ReconcilePlan) {
  return { channels: plan.channels, rules: plan.rules, policy: plan.policy };
}
