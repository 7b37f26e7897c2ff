import { z } from "@hono/zod-openapi";
import { type SQL, sql } from "drizzle-orm";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";

/**
 * A list's `q` parameter: trimmed, at most 100 characters (a name's length); empty means no search. The text
 * is always bound as a parameter, and its LIKE metacharacters are escaped (`likeEscaped`), so `%` and `_`
 * match themselves (OWASP SQL Injection Prevention Cheat Sheet: parameterize, and escape wildcards in LIKE).
 */
export const SearchTextSchema = z.string().trim().max(100).optional();

/** `text` with `\`, `%` and `_` escaped by a backslash, for a LIKE pattern with `ESCAPE '\'`. */
export function likeEscaped(text: string): string {
  return text.replace(/[\\%_]/g, (ch) => `\\${ch}`);
}

/** `column` contains `text` (ASCII case-insensitive, as SQLite's LIKE compares). */
export function containsText(column: SQLiteColumn, text: string): SQL {
  return sql`${column} LIKE ${`%${likeEscaped(text)}%`} ESCAPE '\\'`;
}

/** `column` starts with `text` (ASCII case-insensitive). */
export function startsWithText(column: SQLiteColumn, text: string): SQL {
  return sql`${column} LIKE ${`${likeEscaped(text)}%`} ESCAPE '\\'`;
}
