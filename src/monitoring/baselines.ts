import type { Bindings } from "../env";
import { emptySlot, foldHour, hourOfWeek, MAX_CATCH_UP_WEEKS, type SlotBaseline } from "./anomaly";
import { bucketStart, HOUR_MS } from "./usage-counts";

/**
 * Folding usage hours into the keys' hour-of-week baselines (src/monitoring/anomaly.ts), on the cron.
 *
 * An hour is folded once it has left the counter rules' window: they score the current hour and the last
 * closed one against the baseline as it stood BEFORE that hour (src/monitoring/rules/anomaly.ts), so the fold
 * runs two hours behind (`FOLD_LAG_HOURS`). Each slot is next read a week later, so the lag costs nothing.
 *
 * Idempotent and resumable: a slot records the hour it last folded (`last_hour`) and the write only ever moves
 * it forward, so a repeated or concurrent tick changes nothing. Rows of one hour are folded in rowid order, a
 * page per read and one upsert per page, so "the hour's last row is folded" means the hour is done: one probe
 * per tick finds the hours still to do. A page reads only rows whose slot is not folded yet (filtered in the
 * statement, a primary-key probe of key_baselines per row), so a tick that ran out of pages continues on the
 * next from the first row it did not fold, however many rows the hour has, and no row is folded twice.
 */
export const FOLD_LAG_HOURS = 2;
/** After a cron outage, hours up to this far back are still folded; older ones count as quiet weeks later. */
export const FOLD_CATCH_UP_HOURS = 24;
/** Usage rows read (and baselines written) per query. */
export const FOLD_PAGE = 5000;
/**
 * Pages per tick: 120,000 keys' hour in one tick; a larger deployment spreads an hour over several (1,000,000
 * active keys: 9 ticks). Twelve five-minute ticks an hour fold 1,440,000 rows an hour, what keeps up with that
 * many keys active every hour; 24 pages are 48 D1 calls of the 1,000 an invocation may make.
 */
export const FOLD_MAX_PAGES = 24;

/** The fold's page size and pages per tick (tests inject small ones). */
export interface FoldLimits {
  page: number;
  maxPages: number;
}
export const FOLD_LIMITS: FoldLimits = { page: FOLD_PAGE, maxPages: FOLD_MAX_PAGES };

/** The baseline columns of a slot and the key's first day of use, as the readers below select them. */
export interface SlotRow {
  samples: number | null;
  volume_mean: number | null;
  volume_var: number | null;
  failure_mean: number | null;
  failure_var: number | null;
  last_hour: number | null;
  first_use: number | null;
}

/** The columns of a slot, in SlotRow's names (`first_use` apart). */
const SLOT_FIELDS = [
  "samples",
  "volume_mean",
  "volume_var",
  "failure_mean",
  "failure_var",
  "last_hour",
] as const;

/**
 * SQL selecting the slot of baseline `b` (LEFT JOINed on the slot), each column named with `prefix`: a
 * SlotRow once `first_use` is added (`firstUseColumn`).
 */
export function slotColumns(b: string, prefix = ""): string {
  return SLOT_FIELDS.map((field) => `${b}.${field} AS ${prefix}${field}`).join(", ");
}

/**
 * SQL selecting `first_use` for usage row `u`: a key without a row for one of the slots `baselines` gets its
 * first day of use (its oldest daily usage row), for `emptySlot`.
 */
export function firstUseColumn(u: string, baselines: string[]): string {
  return `CASE WHEN ${baselines.map((b) => `${b}.key_id IS NULL`).join(" OR ")} THEN (SELECT min(d.start) FROM usage_counts d
    WHERE d.tenant_id = ${u}.tenant_id AND d.key_id = ${u}.key_id AND d.bucket = 'day') END AS first_use`;
}

/** The SlotRow of the columns `slotColumns(_, prefix)` named, from a row that also has `first_use`. */
export function slotRowOf(row: Record<string, unknown>, prefix: string): SlotRow {
  const value = (field: string) => (row[`${prefix}${field}`] ?? null) as number | null;
  return {
    samples: value("samples"),
    volume_mean: value("volume_mean"),
    volume_var: value("volume_var"),
    failure_mean: value("failure_mean"),
    failure_var: value("failure_var"),
    last_hour: value("last_hour"),
    first_use: (row.first_use ?? null) as number | null,
  };
}

/** The slot of `hour` as a row stands, caught up to just before `hour` by the caller (foldHour / catchUp). */
export function slotFromRow(row: SlotRow, hour: number): SlotBaseline {
  if (row.last_hour === null) return emptySlot(hour, row.first_use);
  return {
    samples: Math.min(row.samples ?? 0, MAX_CATCH_UP_WEEKS),
    volume: { mean: row.volume_mean ?? 0, variance: row.volume_var ?? 0 },
    failures: { mean: row.failure_mean ?? 0, variance: row.failure_var ?? 0 },
    lastHour: row.last_hour,
  };
}

/** Hours (oldest first) whose last usage row is not folded yet: one probe query for the whole window. */
const PENDING_HOURS = `SELECT h.value ->> 0 AS hour FROM json_each(?1) AS h
WHERE (SELECT coalesce(b.last_hour, -1) FROM usage_counts u
        LEFT JOIN key_baselines b ON b.key_id = u.key_id AND b.hour_of_week = h.value ->> 1
        WHERE u.bucket = 'hour' AND u.start = h.value ->> 0 AND u.key_id != ''
        ORDER BY u.rowid DESC LIMIT 1) < h.value ->> 0
ORDER BY 1`;

/**
 * One page of an hour's usage rows of keys (not the '' row of answers naming no key) whose slot has not folded
 * that hour yet, with their slot. Rows already folded are skipped inside the statement (never sent back), so
 * every tick's first page starts at the first row still to fold.
 */
const FOLD_PAGE_SQL = `SELECT u.rowid AS rid, u.tenant_id, u.key_id, u.valid + u.invalid AS volume, u.invalid AS failures,
  ${slotColumns("b")}, ${firstUseColumn("u", ["b"])}
FROM usage_counts u LEFT JOIN key_baselines b ON b.key_id = u.key_id AND b.hour_of_week = ?2
WHERE u.bucket = 'hour' AND u.start = ?1 AND u.key_id != '' AND u.rowid > ?3
  AND (b.last_hour IS NULL OR b.last_hour < ?1)
ORDER BY u.rowid LIMIT ?4`;

/** Positions of each JSON row: tenant, key, samples, then the four moments. Only ever moves `last_hour` on. */
const UPSERT_SLOTS = `INSERT INTO key_baselines
  (tenant_id, key_id, hour_of_week, samples, volume_mean, volume_var, failure_mean, failure_var, last_hour)
SELECT j.value ->> 0, j.value ->> 1, ?2, j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5, j.value ->> 6, ?1
FROM json_each(?3) AS j WHERE true
ON CONFLICT (key_id, hour_of_week) DO UPDATE SET
  samples = excluded.samples, volume_mean = excluded.volume_mean, volume_var = excluded.volume_var,
  failure_mean = excluded.failure_mean, failure_var = excluded.failure_var, last_hour = excluded.last_hour
WHERE excluded.last_hour > key_baselines.last_hour`;

interface FoldRow extends SlotRow {
  rid: number;
  tenant_id: string;
  key_id: string;
  volume: number;
  failures: number;
}

export interface FoldOutcome {
  /** Hours (first milliseconds) completely folded by this call. */
  hours: number[];
  /** Slots written. */
  folded: number;
  /** D1 calls made. */
  queries: number;
  /** Usage rows read (each one folded). */
  rows: number;
  /** False when the page budget ran out: the next tick continues. */
  complete: boolean;
}

/** The hours the fold looks at for `now`, oldest first: the catch-up window ending FOLD_LAG_HOURS back. */
export function foldWindow(now: number): number[] {
  const newest = bucketStart("hour", now) - FOLD_LAG_HOURS * HOUR_MS;
  return Array.from(
    { length: FOLD_CATCH_UP_HOURS },
    (_, i) => newest - (FOLD_CATCH_UP_HOURS - 1 - i) * HOUR_MS,
  );
}

/**
 * Folds every key's usage of the closed hours in `foldWindow(now)` that are not folded yet into the key's
 * baseline for that hour of the week, at most `limits.maxPages` pages of `limits.page` rows per call.
 */
export async function foldClosedHours(
  env: Pick<Bindings, "DB">,
  now: number,
  limits: FoldLimits = FOLD_LIMITS,
): Promise<FoldOutcome> {
  const outcome: FoldOutcome = { hours: [], folded: 0, queries: 1, rows: 0, complete: true };
  const window = foldWindow(now).map((hour) => [hour, hourOfWeek(hour)]);
  const { results: pending } = await env.DB.prepare(PENDING_HOURS)
    .bind(JSON.stringify(window))
    .all<{ hour: number }>();
  let pages = 0;
  for (const { hour } of pending) {
    const slot = hourOfWeek(hour);
    let after = 0;
    for (;;) {
      if (pages === limits.maxPages) {
        outcome.complete = false;
        return outcome;
      }
      pages++;
      const { results: rows } = await env.DB.prepare(FOLD_PAGE_SQL)
        .bind(hour, slot, after, limits.page)
        .all<FoldRow>();
      outcome.queries++;
      outcome.rows += rows.length;
      const updates: (string | number)[][] = [];
      for (const row of rows) {
        const next = foldHour(slotFromRow(row, hour), hour, { volume: row.volume, failures: row.failures });
        updates.push([
          row.tenant_id,
          row.key_id,
          next.samples,
          next.volume.mean,
          next.volume.variance,
          next.failures.mean,
          next.failures.variance,
        ]);
      }
      if (updates.length > 0) {
        await env.DB.prepare(UPSERT_SLOTS).bind(hour, slot, JSON.stringify(updates)).run();
        outcome.queries++;
        outcome.folded += updates.length;
      }
      const last = rows.at(-1);
      if (!last || rows.length < limits.page) break;
      after = last.rid;
    }
    outcome.hours.push(hour);
  }
  return outcome;
}
