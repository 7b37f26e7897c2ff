// Database set-up done straight on the harness's D1 (never through the API): migrations and bulk rows.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const ROWS_PER_STATEMENT = 250;
const STATEMENTS_PER_BATCH = 20;

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

const literal = (value) =>
  value === null
    ? "NULL"
    : typeof value === "number"
      ? String(value)
      : `'${String(value).replaceAll("'", "''")}'`;

/** Inserts api_keys rows (objects keyed by column name). */
export const insertKeyRows = (db, rows) => insertRows(db, "api_keys", rows);

/** Inserts rows of `table` (objects keyed by column name) as multi-row INSERTs, a few statements per batch. */
export async function insertRows(db, table, rows) {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]);
  const head = `INSERT INTO ${table} (${columns.join(", ")}) VALUES `;
  const statements = [];
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
    const values = rows
      .slice(i, i + ROWS_PER_STATEMENT)
      .map((row) => `(${columns.map((column) => literal(row[column])).join(", ")})`);
    statements.push(head + values.join(", "));
  }
  for (let i = 0; i < statements.length; i += STATEMENTS_PER_BATCH) {
    await db.batch(statements.slice(i, i + STATEMENTS_PER_BATCH).map((sql) => db.prepare(sql)));
  }
}
