import type { Bindings } from "../env";
import type { OriginKind, UsageBucket } from "./alert-kinds";
import type { SlotBaseline } from "./anomaly";
import { hourOfWeek } from "./anomaly";
import { SLOT_COLUMNS, type SlotRow, slotFromRow } from "./baselines";
import { bucketStart, DAY_MS, HOUR_MS } from "./usage-counts";

/**
 * What the counter rules read, once per tick for all of them: the usage rows of the current and the previous
 * hour (and day, when a rule has a daily window) of every tenant that has a counter rule, and the origins first
 * seen in the last day. The rules themselves (src/monitoring/rules/*.ts) are pure functions of this snapshot.
 *
 * Queries do not grow with tenants or rules: one paged scan per bucket start through the period index
 * (bucket, start, rowid), with each row's hour-of-week baseline and the key's usage limit joined in the same
 * statement when a rule needs them.
 */

export interface Counts {
  valid: number;
  invalid: number;
  authFailed: number;
}

/** One key's counters in the previous and the current bucket. key_id '' = answers naming no key. */
export interface KeyWindow {
  keyId: string;
  serviceId: string | null;
  /**
   * The key's usage budget: its refill amount when it refills, else its usage limit (only read when a
   * percent_of_limit rule exists).
   */
  usageLimit: number | null;
  previous: Counts;
  current: Counts;
  /** Hourly windows for anomaly rules: the hour-of-week baselines of the previous and the current hour. */
  slots: { previous?: SlotBaseline; current?: SlotBaseline };
}

export interface WindowSnapshot {
  bucket: UsageBucket;
  previousStart: number;
  currentStart: number;
  /**
   * The share of the previous bucket inside the sliding window of one bucket ending now (1 - elapsed share of
   * the current bucket). A window estimated as `current + previous x weight` moves smoothly across the bucket
   * boundary instead of dropping to zero at it (the sliding-window counter of rate limiters), so an alert on
   * "the last hour" neither resolves nor re-fires just because the clock passed the hour.
   */
  previousWeight: number;
  byTenant: Map<string, Map<string, KeyWindow>>;
  /** False when the scan stopped at its bound: rules on this window then resolve nothing by absence. */
  complete: boolean;
}

export interface OriginRow {
  tenantId: string;
  keyId: string;
  serviceId: string | null;
  kind: OriginKind;
  value: string;
  firstSeenAt: number;
}

export interface CounterSnapshot {
  now: number;
  hour: WindowSnapshot | null;
  day: WindowSnapshot | null;
  /** Origins first seen within NEW_ORIGIN_WINDOW_MS, after their key's learning period. */
  origins: { rows: OriginRow[]; complete: boolean } | null;
  /** D1 calls made to read it. */
  queries: number;
}

/** The sliding-window estimate of one counter (see `previousWeight`). */
export function sliding(window: WindowSnapshot, key: KeyWindow, pick: (counts: Counts) => number): number {
  return pick(key.current) + pick(key.previous) * window.previousWeight;
}

export const requestsOf = (counts: Counts) => counts.valid + counts.invalid;

/** Rows per page of the usage scan. */
export const COUNTER_PAGE = 5000;
/** Pages per tick over both buckets: 300,000 rows (100,000 keys x 2 hours, and a daily window besides). */
export const COUNTER_MAX_PAGES = 60;
/** A new origin stays news (its alert open) this long after it was first seen. */
export const NEW_ORIGIN_WINDOW_MS = 24 * HOUR_MS;
/** A key's origins within this long after its first one are its normal set, not news. */
export const NEW_ORIGIN_LEARNING_MS = 24 * HOUR_MS;
/** New origins read per tick; more than this and the rule resolves nothing by absence that tick. */
export const NEW_ORIGIN_MAX_ROWS = 1000;

export interface SnapshotNeeds {
  /** Tenants with a rule on hourly counts (usage_threshold/failure_rate by hour, anomalies, auth failures). */
  hourTenants: string[];
  /** Tenants with a rule on daily counts. */
  dayTenants: string[];
  slots: boolean;
  usageLimits: boolean;
  /** Tenants with a new_origin rule. */
  originTenants: string[];
}

interface UsageRow extends SlotRow {
  rid: number;
  tenant_id: string;
  key_id: string;
  service_id: string | null;
  valid: number;
  invalid: number;
  auth_failed: number;
  usage_limit?: number | null;
}

function pageSql(needs: SnapshotNeeds, bucket: UsageBucket): string {
  const slots = needs.slots && bucket === "hour";
  return `SELECT u.rowid AS rid, u.tenant_id, u.key_id, u.service_id, u.valid, u.invalid, u.auth_failed
  ${needs.usageLimits ? ", (SELECT coalesce(k.refill_amount, k.usage_limit) FROM api_keys k WHERE k.id = u.key_id) AS usage_limit" : ""}
  ${slots ? `, ${SLOT_COLUMNS}` : ""}
FROM usage_counts u
  ${slots ? "LEFT JOIN key_baselines b ON b.key_id = u.key_id AND b.hour_of_week = ?5" : ""}
WHERE u.bucket = ?1 AND u.start = ?2 AND u.rowid > ?3 AND u.tenant_id IN (SELECT value FROM json_each(?4))
ORDER BY u.rowid LIMIT ?6`;
}

const noCounts = (): Counts => ({ valid: 0, invalid: 0, authFailed: 0 });

interface Budget {
  pages: number;
  queries: number;
}

async function readWindow(
  env: Pick<Bindings, "DB">,
  bucket: UsageBucket,
  tenants: string[],
  needs: SnapshotNeeds,
  now: number,
  budget: Budget,
): Promise<WindowSnapshot> {
  const size = bucket === "hour" ? HOUR_MS : DAY_MS;
  const currentStart = bucketStart(bucket, now);
  const window: WindowSnapshot = {
    bucket,
    previousStart: currentStart - size,
    currentStart,
    previousWeight: 1 - (now - currentStart) / size,
    byTenant: new Map(),
    complete: true,
  };
  const sql = pageSql(needs, bucket);
  const tenantList = JSON.stringify(tenants);
  for (const which of ["current", "previous"] as const) {
    const start = which === "current" ? window.currentStart : window.previousStart;
    let after = 0;
    for (;;) {
      if (budget.pages === COUNTER_MAX_PAGES) {
        window.complete = false;
        return window;
      }
      budget.pages++;
      budget.queries++;
      const { results: rows } = await env.DB.prepare(sql)
        .bind(bucket, start, after, tenantList, hourOfWeek(start), COUNTER_PAGE)
        .all<UsageRow>();
      for (const row of rows) {
        let keys = window.byTenant.get(row.tenant_id);
        if (!keys) {
          keys = new Map();
          window.byTenant.set(row.tenant_id, keys);
        }
        let key = keys.get(row.key_id);
        if (!key) {
          key = {
            keyId: row.key_id,
            serviceId: row.service_id,
            usageLimit: row.usage_limit ?? null,
            previous: noCounts(),
            current: noCounts(),
            slots: {},
          };
          keys.set(row.key_id, key);
        }
        key[which] = { valid: row.valid, invalid: row.invalid, authFailed: row.auth_failed };
        if (row.key_id !== "" && "first_use" in row) key.slots[which] = slotFromRow(row, start);
      }
      const last = rows.at(-1);
      if (!last || rows.length < COUNTER_PAGE) break;
      after = last.rid;
    }
  }
  return window;
}

const ORIGINS_SQL = `SELECT o.tenant_id, o.key_id, k.service_id, o.kind, o.value, o.first_seen_at
FROM key_origins o JOIN api_keys k ON k.id = o.key_id
WHERE o.first_seen_at > ?1 AND o.first_seen_at <= ?2 AND o.tenant_id IN (SELECT value FROM json_each(?3))
  AND o.first_seen_at >= ?4 + (SELECT min(p.first_seen_at) FROM key_origins p WHERE p.key_id = o.key_id AND p.kind = o.kind)
ORDER BY o.first_seen_at LIMIT ?5`;

async function readNewOrigins(
  env: Pick<Bindings, "DB">,
  tenants: string[],
  now: number,
  budget: Budget,
): Promise<{ rows: OriginRow[]; complete: boolean }> {
  budget.queries++;
  const { results } = await env.DB.prepare(ORIGINS_SQL)
    .bind(
      now - NEW_ORIGIN_WINDOW_MS,
      now,
      JSON.stringify(tenants),
      NEW_ORIGIN_LEARNING_MS,
      NEW_ORIGIN_MAX_ROWS,
    )
    .all<{
      tenant_id: string;
      key_id: string;
      service_id: string | null;
      kind: OriginKind;
      value: string;
      first_seen_at: number;
    }>();
  const rows = results.map((row) => ({
    tenantId: row.tenant_id,
    keyId: row.key_id,
    serviceId: row.service_id,
    kind: row.kind,
    value: row.value,
    firstSeenAt: row.first_seen_at,
  }));
  return { rows, complete: rows.length < NEW_ORIGIN_MAX_ROWS };
}

/** Reads what `needs` asks for, within COUNTER_MAX_PAGES pages. */
export async function readCounterSnapshot(
  env: Pick<Bindings, "DB">,
  needs: SnapshotNeeds,
  now: number,
): Promise<CounterSnapshot> {
  const budget: Budget = { pages: 0, queries: 0 };
  const hour = needs.hourTenants.length
    ? await readWindow(env, "hour", needs.hourTenants, needs, now, budget)
    : null;
  const day = needs.dayTenants.length
    ? await readWindow(env, "day", needs.dayTenants, needs, now, budget)
    : null;
  const origins = needs.originTenants.length
    ? await readNewOrigins(env, needs.originTenants, now, budget)
    : null;
  return { now, hour, day, origins, queries: budget.queries };
}

/**
 * The keys of a rule's tenant in `window` that the rule covers: those of its service when it names one, only
 * `keyId` when its settings name one, and never the '' row (answers naming no key).
 */
export function keysInScope(
  window: WindowSnapshot,
  rule: { tenantId: string; serviceId: string | null },
  keyId: string | undefined,
): KeyWindow[] {
  const keys = window.byTenant.get(rule.tenantId);
  if (!keys) return [];
  const candidates =
    keyId === undefined ? [...keys.values()] : [keys.get(keyId)].filter((k) => k !== undefined);
  return candidates.filter(
    (key) => key.keyId !== "" && (rule.serviceId === null || key.serviceId === rule.serviceId),
  );
}

/** Rounds for people: whole numbers stay whole, others keep one decimal. */
export function rounded(n: number): number {
  return Math.round(n * 10) / 10;
}
