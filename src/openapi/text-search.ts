import { z } from "@hono/zod-openapi";
import { type SQL, sql } from "drizzle-orm";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";

/** A list's `q` parameter: trimmed, at most 100 characters (a name's length); empty means no search. */
export const SearchTextSchema = z.string().trim().max(100).optional();

/*
 * The text is bound as a parameter and compared as a plain substring with instr(), not with LIKE: there are no
 * wildcards to escape, so `%`, `_` and `\` are ordinary characters (OWASP SQL Injection Prevention Cheat
 * Sheet: parameterize; threat model case 17). LIKE would also fail here: D1 refuses LIKE patterns longer than
 * 50 bytes ("LIKE or GLOB pattern too complex", Cloudflare D1 platform limits), which a 100-character search,
 * doubled by escaping, exceeds; and SQLite's LIKE reads its pattern only up to a NUL, so `a<NUL>c` would find
 * `a<NUL>b`. lower() folds ASCII letters only (SQLite without ICU), as LIKE does.
 */

/** `column` contains `text`, ASCII case-insensitive. */
export function containsText(column: SQLiteColumn, text: string): SQL {
  return sql`instr(lower(${column}), lower(${text})) > 0`;
}

/** `column` starts with `text`, ASCII case-insensitive. */
export function startsWithText(column: SQLiteColumn, text: string): SQL {
  return sql`instr(lower(${column}), lower(${text})) = 1`;
}
