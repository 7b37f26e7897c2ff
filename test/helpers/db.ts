import { env } from "cloudflare:workers";

/** The rows of `table`, or of those that match `where` with `params` bound to its placeholders. */
export async function countRows(table: string, where?: string, ...params: unknown[]): Promise<number> {
  const row = await env.DB.prepare(`SELECT count(*) AS n FROM ${table}${where ? ` WHERE ${where}` : ""}`)
    .bind(...params)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** Every row of every table, as text: what a stolen database dump would contain. */
export async function dumpDatabase(): Promise<string> {
  const { results } = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
  ).all<{ name: string }>();
  const parts: string[] = [];
  for (const { name } of results) {
    const rows = await env.DB.prepare(`SELECT * FROM "${name}"`).all();
    parts.push(`${name}: ${JSON.stringify(rows.results)}`);
  }
  return parts.join("\n");
}

/** The queries of a tenant's rows, table by table, each in a stable order. */
const TENANT_ROWS = {
  tenant: "SELECT * FROM tenants WHERE id = ?",
  keys: "SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY id",
  audit: "SELECT * FROM audit_log WHERE tenant_id = ? ORDER BY seq",
  audit_count: "SELECT count(*) AS n FROM audit_log WHERE tenant_id = ?",
  credentials: "SELECT * FROM credentials WHERE tenant_id = ? ORDER BY id",
  versions: "SELECT * FROM credential_versions WHERE tenant_id = ? ORDER BY credential_id, version",
  channels: "SELECT * FROM alert_channels WHERE tenant_id = ? ORDER BY id",
  rules: "SELECT * FROM alert_rules WHERE tenant_id = ? ORDER BY id",
  policy: "SELECT * FROM security_policies WHERE tenant_id = ?",
  data_keys: "SELECT * FROM data_keys WHERE tenant_id = ? ORDER BY version",
  commits: "SELECT * FROM wizard_commits WHERE tenant_id = ?",
} as const;
export type TenantTable = keyof typeof TENANT_ROWS;

/**
 * A tenant's rows of `tables`, as one text to compare before and after. `last_used_at` (api_keys) is left
 * out: authenticating a request legitimately touches the caller's own key, and that is not a side effect of
 * the call being refused.
 */
export async function tenantRows(tenantId: string, tables: readonly TenantTable[]): Promise<string> {
  const state: Record<string, unknown[]> = {};
  for (const table of tables) {
    const { results } = await env.DB.prepare(TENANT_ROWS[table]).bind(tenantId).all();
    for (const row of results) delete row.last_used_at;
    state[table] = results;
  }
  return JSON.stringify(state);
}

/** A tenant's business state: its keys, audit rows, credentials and their versions. */
export function snapshotTenantRows(tenantId: string): Promise<string> {
  return tenantRows(tenantId, ["keys", "audit", "credentials", "versions"]);
}
