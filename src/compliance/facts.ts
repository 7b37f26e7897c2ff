import { sql } from "drizzle-orm";
import { type ChainVerdict, verifyAuditChain } from "../audit/audit-log";
import type { SecurityLevel } from "../crypto/keys";
import { database } from "../db/client";
import type { Bindings } from "../env";
import { tenantSecurityPolicy } from "../policy/security-policy";
import { rotationDays, SECURITY_LEVELS } from "../wizard/security-levels";
import type { SecurityStep } from "../wizard/steps";

const DAY_MS = 86_400_000;
/** "Alerts delivered in the last 30 days" and rotation outcomes look back this far. */
export const DELIVERY_LOOKBACK_DAYS = 30;
export const ROTATION_LOOKBACK_DAYS = 90;

/**
 * What the controls are judged on. `live` facts are read from what is true now; `planned` facts are the
 * wizard's settings before its commit, with no observation of anything (so a planned control can only
 * promise what the settings make happen, and says where they do not).
 */
export interface ComplianceFacts {
  mode: "live" | "planned";
  policy: {
    level: SecurityLevel;
    environment: "development" | "staging" | "production";
    rotationDays: number | null;
    require2fa: boolean;
    ipAllowlist: number;
    countryAllowlist: number;
  } | null;
  /** Channels configured (planned: in the monitoring step) and, live, their delivery record. */
  monitoring: { channels: number; failingChannels: number; delivered: number | null; dead: number | null };
  /** Only in live facts. */
  observed: {
    keys: { active: number; overdue: number; unscheduled: number };
    credentials: { active: number; overdue: number; scheduled: number };
    rotations: { completed: number; failed: number };
    adminKeys: { active: number; withTotp: number };
    auditChain: ChainVerdict;
    audit: { oldestAgeDays: number | null; horizonMovedAt: number | null };
  } | null;
  /** Only in planned facts: the services the wizard will store credentials for. */
  planned: { services: number } | null;
}

/** The retention the level enforces (src/monitoring/retention.ts runs it on the cron). */
export function retentionOf(level: SecurityLevel) {
  return {
    auditDays: SECURITY_LEVELS[level].audit_retention_days,
    usageDays: SECURITY_LEVELS[level].usage_retention_days,
  };
}

/** The wizard's settings as facts: nothing is observed, everything is what the commit will put in force. */
export function plannedFacts(security: SecurityStep, channels: number, services: number): ComplianceFacts {
  return {
    mode: "planned",
    policy: {
      level: security.security_level,
      environment: security.environment,
      rotationDays: rotationDays(
        security.security_level,
        security.rotation_policy,
        security.custom_rotation_days,
      ),
      require2fa: security.require_2fa,
      ipAllowlist: security.ip_allowlist.length,
      countryAllowlist: security.country_allowlist.length,
    },
    monitoring: { channels, failingChannels: 0, delivered: null, dead: null },
    observed: null,
    planned: { services },
  };
}

type Num = number | null;

/** Reads a tenant's live facts: a handful of aggregate queries and the audit chain's verification. */
export async function liveFacts(env: Bindings, tenantId: string, now: number): Promise<ComplianceFacts> {
  const db = database(env.DB);
  const policy = await tenantSecurityPolicy(db, tenantId);
  const periodMs = policy?.rotationDays ? policy.rotationDays * DAY_MS : null;
  const liveKey = sql`k.tenant_id = ${tenantId} AND k.revoked_at IS NULL AND k.enabled = 1
    AND (k.expires_at IS NULL OR k.expires_at > ${now}) AND k.rotated_to_id IS NULL`;
  const [keys, admins, creds, runs, channels, deliveries, oldest, horizon] = await Promise.all([
    db.get<{ active: Num; overdue: Num; unscheduled: Num }>(sql`
      SELECT count(*) AS active,
        sum(CASE WHEN ${periodMs} IS NOT NULL AND coalesce(k.last_rotated_at, k.created_at) < ${now} - ${periodMs}
          THEN 1 ELSE 0 END) AS overdue,
        sum(CASE WHEN k.rotation_days IS NULL THEN 1 ELSE 0 END) AS unscheduled
      FROM api_keys k WHERE ${liveKey}`),
    db.get<{ active: Num; with_totp: Num }>(sql`
      SELECT count(*) AS active, sum(CASE WHEN t.confirmed_at IS NOT NULL THEN 1 ELSE 0 END) AS with_totp
      FROM api_keys k LEFT JOIN admin_totp t ON t.key_id = k.id
      WHERE ${liveKey} AND EXISTS (SELECT 1 FROM json_each(k.scopes) WHERE value = 'admin')`),
    db.get<{ active: Num; overdue: Num; scheduled: Num }>(sql`
      SELECT count(*) AS active,
        sum(CASE WHEN ${periodMs} IS NOT NULL AND v.created_at < ${now} - ${periodMs} THEN 1 ELSE 0 END) AS overdue,
        sum(CASE WHEN r.credential_id IS NOT NULL THEN 1 ELSE 0 END) AS scheduled
      FROM credentials c
      JOIN credential_versions v ON v.credential_id = c.id AND v.version = c.current_version
      LEFT JOIN credential_rotations r ON r.credential_id = c.id
      WHERE c.tenant_id = ${tenantId} AND c.status = 'active'`),
    db.get<{ completed: Num; failed: Num }>(sql`
      SELECT sum(CASE WHEN state = 'completed' THEN 1 ELSE 0 END) AS completed,
        sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed
      FROM rotation_runs WHERE tenant_id = ${tenantId} AND started_at >= ${now - ROTATION_LOOKBACK_DAYS * DAY_MS}`),
    db.get<{ total: Num; failing: Num }>(sql`
      SELECT count(*) AS total, sum(CASE WHEN health = 'failing' THEN 1 ELSE 0 END) AS failing
      FROM alert_channels WHERE tenant_id = ${tenantId}`),
    db.get<{ delivered: Num; dead: Num }>(sql`
      SELECT sum(CASE WHEN state = 'delivered' THEN 1 ELSE 0 END) AS delivered,
        sum(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) AS dead
      FROM alert_deliveries WHERE tenant_id = ${tenantId} AND created_at >= ${now - DELIVERY_LOOKBACK_DAYS * DAY_MS}`),
    db.get<{ at: Num }>(sql`SELECT min(at) AS at FROM audit_log WHERE tenant_id = ${tenantId}`),
    db.get<{ moved_at: Num }>(sql`SELECT moved_at FROM audit_horizons WHERE tenant_id = ${tenantId}`),
  ]);
  const auditChain = await verifyAuditChain(env, tenantId);
  const n = (value: Num | undefined) => value ?? 0;
  return {
    mode: "live",
    policy: policy && {
      level: policy.securityLevel,
      environment: policy.environment,
      rotationDays: policy.rotationDays,
      require2fa: policy.require2fa,
      ipAllowlist: policy.ipAllowlist.length,
      countryAllowlist: policy.countryAllowlist.length,
    },
    monitoring: {
      channels: n(channels?.total),
      failingChannels: n(channels?.failing),
      delivered: n(deliveries?.delivered),
      dead: n(deliveries?.dead),
    },
    observed: {
      keys: { active: n(keys?.active), overdue: n(keys?.overdue), unscheduled: n(keys?.unscheduled) },
      credentials: { active: n(creds?.active), overdue: n(creds?.overdue), scheduled: n(creds?.scheduled) },
      rotations: { completed: n(runs?.completed), failed: n(runs?.failed) },
      adminKeys: { active: n(admins?.active), withTotp: n(admins?.with_totp) },
      auditChain,
      audit: {
        oldestAgeDays: oldest?.at == null ? null : Math.floor((now - oldest.at) / DAY_MS),
        horizonMovedAt: horizon?.moved_at ?? null,
      },
    },
    planned: null,
  };
}
