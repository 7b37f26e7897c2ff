import { ApiError } from "../errors";
import type { UsageBucket } from "./alert-kinds";
import { bucketStart, DAY_MS, USAGE_COUNTERS, type UsageTotals } from "./usage-counts";

/** What a usage report adds up: one key, one service (a key's service_id), or the whole tenant. */
export const USAGE_GROUPINGS = ["key", "service", "tenant"] as const;
export type UsageGrouping = (typeof USAGE_GROUPINGS)[number];

export const USAGE_ORDERS = ["requests", "failures"] as const;
export type UsageOrder = (typeof USAGE_ORDERS)[number];

/**
 * The longest range one report may span: a month of hours (hourly rows are kept HOURLY_RETENTION_DAYS
 * anyway) or two years of days. With at most MAX_TOP groups that bounds an answer to 100 x 744 points.
 */
export const MAX_RANGE_MS: Record<UsageBucket, number> = { hour: 31 * DAY_MS, day: 731 * DAY_MS };
/** The range when the caller names no `from`: a day of hours, or 30 days. */
export const DEFAULT_RANGE_MS: Record<UsageBucket, number> = { hour: DAY_MS, day: 30 * DAY_MS };
export const MAX_TOP = 100;

export interface UsageQuery {
  tenantId: string;
  granularity: UsageBucket;
  /** Every bucket that starts in [from rounded down to its bucket, to). */
  from: number;
  to: number;
  groupBy: UsageGrouping;
  keyId?: string;
  serviceId?: string;
  top: number;
  orderBy: UsageOrder;
}

export interface UsagePoint {
  start: number;
  totals: UsageTotals;
}

export interface UsageGroup {
  /** The key id, service id or null (the tenant; for keys, malformed or unknown keys; for services, none). */
  group: string | null;
  totals: UsageTotals;
  series: UsagePoint[];
}

/** The range of a request: defaults filled in, `from` rounded down to its bucket, capped (422 beyond). */
export function usageRange(
  granularity: UsageBucket,
  requested: { from?: number; to?: number },
  now: number,
): { from: number; to: number } {
  const to = requested.to ?? now;
  const from = bucketStart(granularity, requested.from ?? to - DEFAULT_RANGE_MS[granularity]);
  const invalid = (path: string, message: string) =>
    new ApiError("VALIDATION_FAILED", "The usage range is not valid.", { errors: [{ path, message }] });
  if (from >= to) throw invalid("from", "must be before `to`");
  if (to - from > MAX_RANGE_MS[granularity]) {
    throw invalid("to", `a ${granularity} report spans at most ${MAX_RANGE_MS[granularity] / DAY_MS} days`);
  }
  return { from, to };
}

const GROUP_COLUMN: Record<UsageGrouping, string> = {
  key: "nullif(key_id, '')",
  service: "service_id",
  tenant: "NULL",
};

const ORDER_SQL: Record<UsageOrder, string> = {
  requests: "sum(valid) + sum(invalid)",
  failures: "sum(invalid)",
};

const sums = USAGE_COUNTERS.map((counter) => `sum(${counter}) AS ${counter}`).join(", ");

type SumRow = Record<(typeof USAGE_COUNTERS)[number], number> & { grp: string | null; start?: number };

function totalsOf(row: SumRow): UsageTotals {
  return Object.fromEntries(USAGE_COUNTERS.map((counter) => [counter, row[counter] ?? 0])) as UsageTotals;
}

/**
 * A tenant's counts in one D1 round trip (a batch of two reads): the top groups by requests or failures over
 * the range, then those groups' non-empty buckets. Only this tenant's rows are ever read.
 */
export async function queryUsage(d1: D1Database, query: UsageQuery): Promise<UsageGroup[]> {
  const filters = [
    "tenant_id = ?1",
    "bucket = ?2",
    "start >= ?3",
    "start < ?4",
    query.keyId === undefined ? "?5 IS NULL" : "key_id = ?5",
    query.serviceId === undefined ? "?6 IS NULL" : "service_id = ?6",
  ].join(" AND ");
  const group = GROUP_COLUMN[query.groupBy];
  const top = `SELECT ${group} AS grp, ${sums} FROM usage_counts WHERE ${filters}
    GROUP BY grp ORDER BY ${ORDER_SQL[query.orderBy]} DESC, grp LIMIT ?7`;
  const series = `WITH top AS (${top})
    SELECT u.grp, u.start, ${USAGE_COUNTERS.map((c) => `sum(u.${c}) AS ${c}`).join(", ")}
    FROM (SELECT ${group} AS grp, * FROM usage_counts WHERE ${filters}) AS u
    JOIN top ON top.grp IS u.grp
    GROUP BY u.grp, u.start ORDER BY u.start`;
  const params = [
    query.tenantId,
    query.granularity,
    query.from,
    query.to,
    query.keyId ?? null,
    query.serviceId ?? null,
    query.top,
  ];
  const [totals, points] = await d1.batch<SumRow>([
    d1.prepare(top).bind(...params),
    d1.prepare(series).bind(...params),
  ]);
  const groups = new Map<string | null, UsageGroup>();
  for (const row of totals?.results ?? []) {
    groups.set(row.grp, { group: row.grp, totals: totalsOf(row), series: [] });
  }
  for (const row of points?.results ?? []) {
    groups.get(row.grp)?.series.push({ start: Number(row.start), totals: totalsOf(row) });
  }
  return [...groups.values()];
}

/** Whether `keyId` is this tenant's key, or was (its usage rows outlive a deleted key). */
export async function tenantKnowsKey(d1: D1Database, tenantId: string, keyId: string): Promise<boolean> {
  const row = await d1
    .prepare(
      `SELECT EXISTS (SELECT 1 FROM api_keys WHERE tenant_id = ?1 AND id = ?2)
        OR EXISTS (SELECT 1 FROM usage_counts WHERE tenant_id = ?1 AND key_id = ?2) AS known`,
    )
    .bind(tenantId, keyId)
    .first<{ known: number }>();
  return row?.known === 1;
}
