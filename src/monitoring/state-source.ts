import type { Evaluation } from "./evaluation";

/**
 * Rows one state rule reads per tick, across all tenants. A tick that reaches it evaluates what it read and
 * resolves nothing by absence (scope: the subjects read), so a backlog never resolves alerts it did not look at;
 * the rest is read on the next ticks as the earlier conditions clear.
 */
export const STATE_ROWS_CAP = 5_000;

export interface StateQuery {
  /** Only this tenant (evaluation at once after a critical event); default: every tenant. */
  tenantId?: string;
}

/** `AND tenant_id = ?` for one tenant, nothing for all; `column` names the table's tenant column. */
export function tenantClause(query: StateQuery, column = "tenant_id"): { sql: string; params: string[] } {
  return query.tenantId ? { sql: ` AND ${column} = ?`, params: [query.tenantId] } : { sql: "", params: [] };
}

/** "all" when the read was complete, else only the subjects read. */
export function scopeOf(complete: boolean, subjectIds: Iterable<string>): Evaluation["scope"] {
  return complete ? "all" : { subjects: [...new Set(subjectIds)] };
}

/** Groups rows by their tenant. */
export function byTenant<T extends { tenant_id: string }>(rows: readonly T[]): Map<string, T[]> {
  const grouped = new Map<string, T[]>();
  for (const row of rows) {
    const list = grouped.get(row.tenant_id) ?? [];
    list.push(row);
    grouped.set(row.tenant_id, list);
  }
  return grouped;
}

export const DAY_MS = 86_400_000;
export const HOUR_MS = 3_600_000;

/** A date for people in a summary line (UTC day). */
export function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
