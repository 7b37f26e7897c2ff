// Database set-up done straight on the harness's D1 (never through the API): migrations and bulk rows.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Applies migrations/*.sql in order; drizzle-kit separates statements with `--> statement-breakpoint`. */
export async function applyMigrations(db, migrationsDir) {
  const files = readdirSync(migrationsDir)
    .filter((name) => name.endsWith(".sql"))
    .sort();
  for (const file of files) {
    const statements = readFileSync(join(migrationsDir, file), "utf8")
      .split("--> statement-breakpoint")
      // D1 refuses a statement followed by an empty one (0008 has a `;;`), as wrangler's own splitter does not.
      .map((sql) => sql.trim().replace(/;+$/, ";"))
      .filter(Boolean);
    await db.batch(statements.map((sql) => db.prepare(sql)));
  }
  return files;
}

/**
 * Rows per statement are bounded by bytes, not by count: each statement binds its rows as one JSON array of
 * arrays and inserts them with `json_each`, so the SQL text stays short (D1 refuses statements over 100,000
 * bytes: SQLITE_TOOBIG) and the one bound value stays well under D1's 2 MB limit on a string.
 */
const JSON_BYTES_PER_STATEMENT = 1_000_000;
/** Statements per D1 batch (one transaction, one round trip from the harness). */
const STATEMENTS_PER_BATCH = 8;

/** Inserts api_keys rows (objects keyed by column name). */
export const insertKeyRows = (db, rows) => insertRows(db, "api_keys", rows);

/**
 * Inserts rows of `table` (objects keyed by column name, all with the same columns) as a few big
 * `INSERT ... SELECT ... FROM json_each(?)` statements per batch: about 4,000 key rows per statement, 32,000
 * per round trip. Values keep their JSON types (string, integer, real, null), which is what SQLite stores.
 */
export async function insertRows(db, table, rows) {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]);
  const sql =
    `INSERT INTO ${table} (${columns.join(", ")}) SELECT ` +
    columns.map((_, i) => `value ->> ${i}`).join(", ") +
    " FROM json_each(?1)";
  const payloads = [];
  let chunk = [];
  let bytes = 0;
  for (const row of rows) {
    const json = JSON.stringify(columns.map((column) => row[column] ?? null));
    if (bytes + json.length > JSON_BYTES_PER_STATEMENT && chunk.length) {
      payloads.push(`[${chunk.join(",")}]`);
      chunk = [];
      bytes = 0;
    }
    chunk.push(json);
    bytes += json.length + 1;
  }
  payloads.push(`[${chunk.join(",")}]`);
  for (let i = 0; i < payloads.length; i += STATEMENTS_PER_BATCH) {
    await db.batch(payloads.slice(i, i + STATEMENTS_PER_BATCH).map((json) => db.prepare(sql).bind(json)));
  }
}
