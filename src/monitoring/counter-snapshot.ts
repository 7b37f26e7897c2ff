import type { Bindings } from "../env";
import type { OriginKind, UsageBucket } from "./alert-kinds";
import type { SlotBaseline } from "./anomaly";
import { hourOfWeek } from "./anomaly";
import { firstUseColumn, slotColumns, slotFromRow, slotRowOf } from "./baselines";
import type { Evaluation } from "./evaluation";
import { bucketStart, DAY_MS, HOUR_MS } from "./usage-counts";

/**
 * What the counter rules read, once per tick for all of them: the usage of the current and the previous hour
 * (and day, when a rule has a daily window) of every tenant that has a counter rule, and the origins first seen
 * in the last day. The rules themselves (src/monitoring/rules/*.ts) are pure functions of this snapshot.
 *
 * Queries do not grow with tenants or rules. Per window:
 * - Keys, paged: a pass over the window's keys in two phases, each through the period index (bucket, start,
 *   rowid) in rowid order: (0) the previous bucket's rows, each with the same key's row of the current bucket
 *   joined by primary key; (1) the current bucket's rows of keys without a previous row. So every key comes
 *   with both of its rows at once, and a key is never evaluated on half of its window. The hour-of-week
 *   baselines and the key's usage limit are joined in the same statement when a rule needs them.
 * - Totals, one query: sums per tenant and service of both buckets (GROUP BY in D1); and, only for tenants with
 *   refused authentications in the window, a second one for each one's key with the most. The tenant- and
 *   service-wide figures are therefore always complete.
 *
 * A pass that does not fit the tick's page budget continues on the next tick where it stopped (`job_cursors`,
 * one row per window); a new bucket starts a new pass. The snapshot then says which keys it holds
 * (`complete: false`): the rules resolve only among those keys (and the keys with an open alert and no usage in
 * the window, read as zero), never an alert of a key they did not look at; the next ticks look at the others.
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

/** Counters in the previous and the current bucket: one key's, or a sum over keys. */
export interface WindowCounts {
  previous: Counts;
  current: Counts;
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
  /**
   * The keys read this tick, each with both of its buckets. Every key of the window when `complete`; else one
   * stretch of a pass that spans ticks, plus the keys with an open counter alert and no usage in the window.
   */
  byTenant: Map<string, Map<string, KeyWindow>>;
  /** Every key of the window, summed per tenant and service (null: keys of no service, and the '' row). */
  totals: Map<string, Map<string | null, WindowCounts>>;
  /** Per tenant, the key with the most refused authentications in the window (sliding), if any. */
  topAuthFailed: Map<string, { keyId: string; refused: number }>;
  /** True when every key of the window was read this tick (a whole pass). */
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
export function sliding(window: WindowSnapshot, key: WindowCounts, pick: (counts: Counts) => number): number {
  return pick(key.current) + pick(key.previous) * window.previousWeight;
}

export const requestsOf = (counts: Counts) => counts.valid + counts.invalid;

/** Keys per page of the usage scan (each with its rows of both buckets: up to twice as many usage rows). */
export const COUNTER_PAGE = 5000;
/**
 * Pages per tick over both windows: 300,000 keys. 100,000 active keys (the hour and the day) fit in one tick;
 * 1,000,000 take a pass of four ticks (20 minutes at the five-minute cron). With a daily window too, each
 * window has half and the hour's unused pages go to the day.
 */
export const COUNTER_MAX_PAGES = 60;
/** The snapshot's page size and pages per tick (tests inject small ones). */
export interface CounterLimits {
  page: number;
  maxPages: number;
}
export const COUNTER_LIMITS: CounterLimits = { page: COUNTER_PAGE, maxPages: COUNTER_MAX_PAGES };
/** A new origin stays news (its alert open) this long after it was first seen. */
export const NEW_ORIGIN_WINDOW_MS = 24 * HOUR_MS;
/** A key's origins within this long after its first one are its normal set, not news. */
export const NEW_ORIGIN_LEARNING_MS = 24 * HOUR_MS;
/** New origins read per tick; more than this and the rule resolves nothing by absence that tick. */
export const NEW_ORIGIN_MAX_ROWS = 1000;
/** The rule kinds whose alerts are about one key's counters (resolved by a pass that looks at the key). */
const KEY_COUNTER_KINDS = ["usage_threshold", "failure_rate", "anomaly_volume", "anomaly_failures"];

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

/** A page row: the driving row `d` of the phase and the key's other row `o` (phase 0 only), o_* null if none. */
interface PageRow extends Record<string, unknown> {
  rid: number;
  tenant_id: string;
  key_id: string;
  service_id: string | null;
  d_valid: number;
  d_invalid: number;
  d_auth_failed: number;
  o_rid: number | null;
  o_valid: number | null;
  o_invalid: number | null;
  o_auth_failed: number | null;
  usage_limit?: number | null;
}

/**
 * One page of a pass. Phase 0 drives on the previous bucket's rows (?2) and joins the current bucket's row (?3)
 * of the same key by primary key; phase 1 drives on the current bucket's rows (?2) and keeps those with no row in
 * the previous bucket (?3). ?5/?6: the hour-of-week slots of ?2/?3.
 */
function pageSql(needs: SnapshotNeeds, bucket: UsageBucket, phase: 0 | 1): string {
  const slots = needs.slots && bucket === "hour";
  const baselines = phase === 0 ? ["bd", "bo"] : ["bd"];
  return `SELECT d.rowid AS rid, d.tenant_id, d.key_id, d.service_id,
  d.valid AS d_valid, d.invalid AS d_invalid, d.auth_failed AS d_auth_failed,
  o.rowid AS o_rid, o.valid AS o_valid, o.invalid AS o_invalid, o.auth_failed AS o_auth_failed
  ${needs.usageLimits ? ", (SELECT coalesce(k.refill_amount, k.usage_limit) FROM api_keys k WHERE k.id = d.key_id) AS usage_limit" : ""}
  ${slots ? `, ${baselines.map((b) => slotColumns(b, `${b}_`)).join(", ")}, ${firstUseColumn("d", baselines)}` : ""}
FROM usage_counts d
  LEFT JOIN usage_counts o ON o.tenant_id = d.tenant_id AND o.key_id = d.key_id AND o.bucket = d.bucket AND o.start = ?3
  ${slots ? "LEFT JOIN key_baselines bd ON bd.key_id = d.key_id AND bd.hour_of_week = ?5" : ""}
  ${slots && phase === 0 ? "LEFT JOIN key_baselines bo ON bo.key_id = d.key_id AND bo.hour_of_week = ?6" : ""}
WHERE d.bucket = ?1 AND d.start = ?2 AND d.rowid > ?7 AND d.tenant_id IN (SELECT value FROM json_each(?4))
  ${phase === 1 ? "AND o.rowid IS NULL" : ""}
ORDER BY d.rowid LIMIT ?8`;
}

/** Sums per tenant and service of both buckets; the null service holds the keys of none and the '' row. */
const TOTALS_SQL = `SELECT tenant_id, service_id, start, sum(valid) AS valid, sum(invalid) AS invalid,
  sum(auth_failed) AS auth_failed
FROM usage_counts WHERE bucket = ?1 AND start IN (?2, ?3) AND tenant_id IN (SELECT value FROM json_each(?4))
GROUP BY tenant_id, service_id, start`;

/** Per tenant, the key with the most refused authentications by the sliding estimate (?5: previousWeight). */
const TOP_AUTH_FAILED_SQL = `SELECT tenant_id, key_id, refused FROM (
  SELECT tenant_id, key_id, refused, row_number() OVER (PARTITION BY tenant_id ORDER BY refused DESC, key_id) AS n
  FROM (SELECT tenant_id, key_id, sum(CASE WHEN start = ?3 THEN auth_failed ELSE auth_failed * ?5 END) AS refused
        FROM usage_counts
        WHERE bucket = ?1 AND start IN (?2, ?3) AND tenant_id IN (SELECT value FROM json_each(?4)) AND auth_failed > 0
        GROUP BY tenant_id, key_id))
WHERE n = 1 AND refused > 0`;

/**
 * Keys with an open alert of a per-key counter rule and no usage row in either bucket: a pass never reads them,
 * and their counters are zero, so they are looked at (as zero) on every tick that does not see the whole window.
 */
const QUIET_KEYS_SQL = `SELECT DISTINCT a.tenant_id, a.subject_id AS key_id, k.service_id
FROM alerts a LEFT JOIN api_keys k ON k.id = a.subject_id
WHERE a.tenant_id IN (SELECT value FROM json_each(?4)) AND a.state != 'resolved' AND a.subject_type = 'key'
  AND a.kind IN (SELECT value FROM json_each(?5))
  AND NOT EXISTS (SELECT 1 FROM usage_counts u WHERE u.tenant_id = a.tenant_id AND u.key_id = a.subject_id
    AND u.bucket = ?1 AND u.start IN (?2, ?3))`;

const noCounts = (): Counts => ({ valid: 0, invalid: 0, authFailed: 0 });

interface Budget {
  pages: number;
  queries: number;
}

interface Cursor {
  windowStart: number;
  phase: 0 | 1;
  after: number;
}

const cursorName = (bucket: UsageBucket) => `counters:${bucket}`;

async function readCursors(env: Pick<Bindings, "DB">, budget: Budget): Promise<Map<string, Cursor>> {
  budget.queries++;
  const { results } = await env.DB.prepare(
    "SELECT name, window_start, phase, after_rowid FROM job_cursors WHERE name LIKE 'counters:%'",
  ).all<{ name: string; window_start: number; phase: number; after_rowid: number }>();
  return new Map(
    results.map((row) => [
      row.name,
      { windowStart: row.window_start, phase: row.phase === 1 ? 1 : 0, after: row.after_rowid },
    ]),
  );
}

const SAVE_CURSOR_SQL = `INSERT INTO job_cursors (name, window_start, phase, after_rowid, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (name) DO UPDATE SET window_start = excluded.window_start, phase = excluded.phase,
  after_rowid = excluded.after_rowid, updated_at = excluded.updated_at`;

function keyOf(window: WindowSnapshot, tenantId: string, keyId: string, serviceId: string | null): KeyWindow {
  let keys = window.byTenant.get(tenantId);
  if (!keys) {
    keys = new Map();
    window.byTenant.set(tenantId, keys);
  }
  let key = keys.get(keyId);
  if (!key) {
    key = { keyId, serviceId, usageLimit: null, previous: noCounts(), current: noCounts(), slots: {} };
    keys.set(keyId, key);
  }
  return key;
}

async function readTotals(
  env: Pick<Bindings, "DB">,
  window: WindowSnapshot,
  tenantList: string,
  budget: Budget,
): Promise<void> {
  const { bucket, previousStart, currentStart, previousWeight } = window;
  budget.queries++;
  const { results: sums } = await env.DB.prepare(TOTALS_SQL)
    .bind(bucket, previousStart, currentStart, tenantList)
    .all<{
      tenant_id: string;
      service_id: string | null;
      start: number;
      valid: number;
      invalid: number;
      auth_failed: number;
    }>();
  const refusing = new Set<string>();
  for (const row of sums) {
    let services = window.totals.get(row.tenant_id);
    if (!services) {
      services = new Map();
      window.totals.set(row.tenant_id, services);
    }
    let counts = services.get(row.service_id);
    if (!counts) {
      counts = { previous: noCounts(), current: noCounts() };
      services.set(row.service_id, counts);
    }
    counts[row.start === currentStart ? "current" : "previous"] = {
      valid: row.valid,
      invalid: row.invalid,
      authFailed: row.auth_failed,
    };
    if (row.auth_failed > 0) refusing.add(row.tenant_id);
  }
  if (refusing.size === 0) return;
  budget.queries++;
  const { results: tops } = await env.DB.prepare(TOP_AUTH_FAILED_SQL)
    .bind(bucket, previousStart, currentStart, JSON.stringify([...refusing]), previousWeight)
    .all<{ tenant_id: string; key_id: string; refused: number }>();
  for (const row of tops) {
    window.topAuthFailed.set(row.tenant_id, { keyId: row.key_id, refused: row.refused });
  }
}

async function readWindow(
  env: Pick<Bindings, "DB">,
  bucket: UsageBucket,
  tenants: string[],
  needs: SnapshotNeeds,
  now: number,
  stored: Cursor | undefined,
  pages: { page: number; maxPages: number },
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
    totals: new Map(),
    topAuthFailed: new Map(),
    complete: false,
  };
  const tenantList = JSON.stringify(tenants);
  await readTotals(env, window, tenantList, budget);

  // A cursor of an earlier bucket belongs to a pass that ended with its window: start again.
  let cursor: Cursor =
    stored && stored.windowStart === currentStart
      ? stored
      : { windowStart: currentStart, phase: 0, after: 0 };
  const fresh = cursor.phase === 0 && cursor.after === 0;
  let read = 0;
  let done = false;
  while (read < pages.maxPages) {
    read++;
    budget.queries++;
    const phase = cursor.phase;
    const [driver, other] =
      phase === 0 ? (["previous", "current"] as const) : (["current", "previous"] as const);
    const driverStart = window[`${driver}Start`];
    const otherStart = window[`${other}Start`];
    const { results: rows } = await env.DB.prepare(pageSql(needs, bucket, phase))
      .bind(
        bucket,
        driverStart,
        otherStart,
        tenantList,
        hourOfWeek(driverStart),
        hourOfWeek(otherStart),
        cursor.after,
        pages.page,
      )
      .all<PageRow>();
    for (const row of rows) {
      const key = keyOf(window, row.tenant_id, row.key_id, row.service_id);
      key.usageLimit = row.usage_limit ?? null;
      key[driver] = { valid: row.d_valid, invalid: row.d_invalid, authFailed: row.d_auth_failed };
      if (row.o_rid !== null) {
        key[other] = {
          valid: row.o_valid ?? 0,
          invalid: row.o_invalid ?? 0,
          authFailed: row.o_auth_failed ?? 0,
        };
      }
      if (row.key_id !== "" && "first_use" in row) {
        key.slots[driver] = slotFromRow(slotRowOf(row, "bd_"), driverStart);
        if (row.o_rid !== null) key.slots[other] = slotFromRow(slotRowOf(row, "bo_"), otherStart);
      }
    }
    const last = rows.at(-1);
    if (last && rows.length === pages.page) {
      cursor = { ...cursor, after: last.rid };
    } else if (phase === 0) {
      cursor = { ...cursor, phase: 1, after: 0 };
    } else {
      done = true;
      break;
    }
  }
  budget.pages += read;
  window.complete = done && fresh;
  if (!window.complete) {
    // The next tick continues this pass, or (done) starts the next one.
    budget.queries++;
    const next = done ? { phase: 0, after: 0 } : cursor;
    await env.DB.prepare(SAVE_CURSOR_SQL)
      .bind(cursorName(bucket), currentStart, next.phase, next.after, now)
      .run();
    budget.queries++;
    const { results: quiet } = await env.DB.prepare(QUIET_KEYS_SQL)
      .bind(bucket, window.previousStart, currentStart, tenantList, JSON.stringify(KEY_COUNTER_KINDS))
      .all<{ tenant_id: string; key_id: string; service_id: string | null }>();
    for (const row of quiet) keyOf(window, row.tenant_id, row.key_id, row.service_id);
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

/**
 * Reads what `needs` asks for, within `limits.maxPages` pages of `limits.page` keys: a window's pass that does
 * not fit continues on the next tick. With both windows, the hour has half the pages and the day the rest.
 */
export async function readCounterSnapshot(
  env: Pick<Bindings, "DB">,
  needs: SnapshotNeeds,
  now: number,
  limits: CounterLimits = COUNTER_LIMITS,
): Promise<CounterSnapshot> {
  const budget: Budget = { pages: 0, queries: 0 };
  const windows = needs.hourTenants.length > 0 || needs.dayTenants.length > 0;
  const cursors = windows ? await readCursors(env, budget) : new Map<string, Cursor>();
  const both = needs.hourTenants.length > 0 && needs.dayTenants.length > 0;
  const hour = needs.hourTenants.length
    ? await readWindow(
        env,
        "hour",
        needs.hourTenants,
        needs,
        now,
        cursors.get(cursorName("hour")),
        {
          page: limits.page,
          maxPages: both ? Math.ceil(limits.maxPages / 2) : limits.maxPages,
        },
        budget,
      )
    : null;
  const day = needs.dayTenants.length
    ? await readWindow(
        env,
        "day",
        needs.dayTenants,
        needs,
        now,
        cursors.get(cursorName("day")),
        {
          page: limits.page,
          maxPages: Math.max(1, limits.maxPages - budget.pages),
        },
        budget,
      )
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

/** Every key's counters of a tenant in `window` summed: of one service when `serviceId` is given. */
export function totalOf(window: WindowSnapshot, tenantId: string, serviceId?: string): WindowCounts {
  const sum: WindowCounts = { previous: noCounts(), current: noCounts() };
  for (const [service, counts] of window.totals.get(tenantId) ?? []) {
    if (serviceId !== undefined && service !== serviceId) continue;
    for (const which of ["previous", "current"] as const) {
      sum[which].valid += counts[which].valid;
      sum[which].invalid += counts[which].invalid;
      sum[which].authFailed += counts[which].authFailed;
    }
  }
  return sum;
}

/**
 * The scope of an evaluation of a rule of `tenantId` on `window`: every subject when the whole window was read;
 * else the keys read this tick and `wide` (the rule's tenant- or service-wide subjects, whose totals are always
 * complete), so nothing resolves by absence for a key the tick did not look at.
 */
export function scopeOf(window: WindowSnapshot, tenantId: string, wide: string[] = []): Evaluation["scope"] {
  if (window.complete) return "all";
  return { subjects: [...(window.byTenant.get(tenantId)?.keys() ?? []), ...wide] };
}

/** Rounds for people: whole numbers stay whole, others keep one decimal. */
export function rounded(n: number): number {
  return Math.round(n * 10) / 10;
}
