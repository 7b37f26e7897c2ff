import { and, eq, inArray } from "drizzle-orm";
import type { Database } from "../db/client";
import { alertChannels, alertRules, tenants } from "../db/schema";
import type { RuleKind } from "./alert-kinds";
import { DEFAULT_RULE_KINDS, type DefaultRuleKind, defaultRule } from "./default-rules";
import type { EvaluatedRule } from "./evaluation";
import { RULE_SETTINGS_SCHEMAS } from "./rule-schemas";

export interface LoadRulesOptions {
  /** Only this tenant's rules (evaluation at once after a critical event); default: every tenant. */
  tenantId?: string;
}

/**
 * The rules of `kinds` the engine evaluates: every tenant's stored enabled rules, plus the default rule
 * (src/monitoring/default-rules.ts) of each default kind for every tenant without a stored rule of that kind.
 * Three queries whatever the number of tenants and rules.
 *
 * A stored rule's channels are narrowed to the tenant's existing channels; a stored rule whose settings no
 * longer parse is skipped (and logged by id), never evaluated with guessed settings.
 */
export async function loadRules(
  db: Database,
  kinds: readonly RuleKind[],
  options: LoadRulesOptions = {},
): Promise<EvaluatedRule[]> {
  if (kinds.length === 0) return [];
  const tenantFilter = options.tenantId;
  const [stored, channels, tenantRows] = await Promise.all([
    db
      .select()
      .from(alertRules)
      .where(
        tenantFilter
          ? and(eq(alertRules.tenantId, tenantFilter), inArray(alertRules.kind, [...kinds]))
          : inArray(alertRules.kind, [...kinds]),
      )
      .all(),
    db
      .select({ id: alertChannels.id, tenantId: alertChannels.tenantId })
      .from(alertChannels)
      .where(tenantFilter ? eq(alertChannels.tenantId, tenantFilter) : undefined)
      .orderBy(alertChannels.tenantId, alertChannels.createdAt, alertChannels.id)
      .all(),
    kinds.some((kind) => (DEFAULT_RULE_KINDS as readonly RuleKind[]).includes(kind))
      ? db
          .select({ id: tenants.id })
          .from(tenants)
          .where(tenantFilter ? eq(tenants.id, tenantFilter) : undefined)
          .orderBy(tenants.id)
          .all()
      : Promise.resolve([]),
  ]);

  const channelsOf = new Map<string, string[]>();
  for (const channel of channels) {
    const list = channelsOf.get(channel.tenantId) ?? [];
    list.push(channel.id);
    channelsOf.set(channel.tenantId, list);
  }

  const rules: EvaluatedRule[] = [];
  /** `<tenant>|<kind>` of every stored rule, enabled or not: these replace the default. */
  const overridden = new Set<string>();
  for (const row of stored) {
    overridden.add(`${row.tenantId}|${row.kind}`);
    if (!row.enabled) continue;
    const settings = RULE_SETTINGS_SCHEMAS[row.kind].safeParse(row.settings ?? {});
    if (!settings.success) {
      console.warn(JSON.stringify({ msg: "alert rule skipped: settings do not parse", ruleId: row.id }));
      continue;
    }
    const existing = new Set(channelsOf.get(row.tenantId) ?? []);
    rules.push({
      tenantId: row.tenantId,
      ruleId: row.id,
      kind: row.kind,
      severity: row.severity,
      cooldownSeconds: row.cooldownSeconds,
      channelIds: row.channelIds.filter((id) => existing.has(id)),
      serviceId: row.serviceId,
      settings: settings.data as Record<string, unknown>,
    });
  }

  const defaultKinds = DEFAULT_RULE_KINDS.filter((kind) => kinds.includes(kind));
  for (const tenant of tenantRows) {
    for (const kind of defaultKinds) {
      if (overridden.has(`${tenant.id}|${kind}`)) continue;
      rules.push({
        ...defaultRule(kind as DefaultRuleKind),
        tenantId: tenant.id,
        channelIds: channelsOf.get(tenant.id) ?? [],
      });
    }
  }
  return rules;
}
