/**
 * The write watch behind the property tests' "a rejection changes nothing" (test/properties/worker-support.ts
 * `counts`): AFTER INSERT/UPDATE/DELETE triggers on every table a request can write bump per-table counters,
 * so one indexed read of the counters tells whether anything at all was written, instead of counting and
 * summing whole tables before and after every request (which grew with the database and was a third of
 * the properties' time). It catches strictly more than those aggregates did: any update of any column.
 *
 * Installed by the first `counts()` of a file, removed after the file (shared-state.ts), so no other file
 * ever sees the triggers or the counter table.
 */
import { env } from "cloudflare:workers";

export const WATCH_TABLE = "_test_write_watch";

/** The tables a request can write (usage_counts and key_origins aside: authenticating touches them off the response path). */
export const WATCHED_TABLES = [
  "tenants",
  "data_keys",
  "api_keys",
  "audit_log",
  "keyring",
  "credentials",
  "credential_versions",
  "alert_channels",
  "alert_rules",
  "security_policies",
  "wizard_commits",
] as const;
export type WatchedTable = (typeof WATCHED_TABLES)[number];

/** Columns whose update is not a write of the request: authenticating stamps the caller's own key. */
const UNWATCHED_COLUMNS: Partial<Record<WatchedTable, string[]>> = { api_keys: ["last_used_at"] };

const OPERATIONS = { INSERT: "inserted", UPDATE: "updated", DELETE: "deleted" } as const;

let installed = false;

const triggerName = (table: string, operation: string) =>
  `${WATCH_TABLE}_${table}_${operation.toLowerCase()}`;

export async function installWriteWatch(): Promise<void> {
  if (installed) return;
  const statements = [
    env.DB.prepare(
      `CREATE TABLE IF NOT EXISTS ${WATCH_TABLE} (tbl TEXT PRIMARY KEY, inserted INTEGER NOT NULL DEFAULT 0,
         updated INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0)`,
    ),
  ];
  for (const table of WATCHED_TABLES) {
    statements.push(env.DB.prepare(`INSERT OR IGNORE INTO ${WATCH_TABLE} (tbl) VALUES (?)`).bind(table));
    let updateOf = "";
    const skipped = UNWATCHED_COLUMNS[table];
    if (skipped) {
      const { results } = await env.DB.prepare("SELECT name FROM pragma_table_info(?)")
        .bind(table)
        .all<{ name: string }>();
      const columns = results.map((column) => column.name).filter((name) => !skipped.includes(name));
      if (columns.length === 0) throw new Error(`no columns found for ${table}`);
      updateOf = ` OF ${columns.map((name) => `"${name}"`).join(", ")}`;
    }
    for (const [operation, counter] of Object.entries(OPERATIONS)) {
      statements.push(
        env.DB.prepare(
          `CREATE TRIGGER IF NOT EXISTS ${triggerName(table, operation)} AFTER ${operation}${operation === "UPDATE" ? updateOf : ""}
             ON ${table} BEGIN UPDATE ${WATCH_TABLE} SET ${counter} = ${counter} + 1 WHERE tbl = '${table}'; END`,
        ),
      );
    }
  }
  await env.DB.batch(statements);
  installed = true;
}

export async function uninstallWriteWatch(): Promise<void> {
  if (!installed) return;
  const statements = WATCHED_TABLES.flatMap((table) =>
    Object.keys(OPERATIONS).map((operation) =>
      env.DB.prepare(`DROP TRIGGER IF EXISTS ${triggerName(table, operation)}`),
    ),
  );
  statements.push(env.DB.prepare(`DROP TABLE IF EXISTS ${WATCH_TABLE}`));
  await env.DB.batch(statements);
  installed = false;
}
