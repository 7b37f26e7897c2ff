import { env } from "cloudflare:workers";

export async function countRows(table: string): Promise<number> {
  const row = await env.DB.prepare(`SELECT count(*) AS n FROM ${table}`).first<{ n: number }>();
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

/**
 * A tenant's business state. `last_used_at` is left out: authenticating a request legitimately
 * touches the caller's own key, and that is not a side effect of the call being refused.
 */
export async function snapshotTenantRows(tenantId: string): Promise<string> {
  const keys = await env.DB.prepare("SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY id")
    .bind(tenantId)
    .all();
  for (const row of keys.results) delete row.last_used_at;
  const rowsOf = async (sql: string) => (await env.DB.prepare(sql).bind(tenantId).all()).results;
  return JSON.stringify({
    keys: keys.results,
    audit: await rowsOf("SELECT * FROM audit_log WHERE tenant_id = ? ORDER BY seq"),
    credentials: await rowsOf("SELECT * FROM credentials WHERE tenant_id = ? ORDER BY id"),
    versions: await rowsOf(
      "SELECT * FROM credential_versions WHERE tenant_id = ? ORDER BY credential_id, version",
    ),
  });
}
