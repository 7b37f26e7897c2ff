import { and, eq, lt, or, type SQL } from "drizzle-orm";
import type { SQLiteColumn } from "drizzle-orm/sqlite-core";
import { ApiError } from "../errors";

/** Opaque keyset cursor over (created_at DESC, id DESC): stable under inserts, no deep OFFSET scans. */
export interface Cursor {
  createdAt: number;
  id: string;
}

export function encodeCursor(cursor: Cursor): string {
  return btoa(`${cursor.createdAt}.${cursor.id}`).replaceAll("=", "");
}

export function decodeCursor(text: string): Cursor {
  let decoded = "";
  try {
    decoded = atob(text);
  } catch {
    // fall through to the uniform error
  }
  const match = /^(\d{1,15})\.([a-z]+_[0-9A-Za-z]{1,40})$/.exec(decoded);
  if (!match) throw new ApiError("BAD_REQUEST", "The cursor is not valid.");
  return { createdAt: Number(match[1]), id: match[2] as string };
}

/**
 * The rows after `cursor` in a list ordered by (time DESC, id DESC), as a WHERE term; undefined without a
 * cursor. Decodes (and refuses) the cursor where it is called.
 */
export function olderThanCursor(
  cursor: string | undefined,
  time: SQLiteColumn,
  id: SQLiteColumn,
): SQL | undefined {
  if (!cursor) return undefined;
  const after = decodeCursor(cursor);
  return or(lt(time, after.createdAt), and(eq(time, after.createdAt), lt(id, after.id)));
}

/** A page of a list read with `limit + 1` rows, and the cursor to the next page (null on the last one). */
export function keysetPage<T>(
  rows: T[],
  limit: number,
  cursorOf: (row: T) => Cursor,
): { page: T[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { page, nextCursor: rows.length > limit && last ? encodeCursor(cursorOf(last)) : null };
}

/** Opaque keyset cursor over an id alone (ascending), for lists ordered by id. */
export function encodeIdCursor(id: string): string {
  return btoa(id).replaceAll("=", "");
}

export function decodeIdCursor(text: string): string {
  let decoded = "";
  try {
    decoded = atob(text);
  } catch {
    // fall through to the uniform error
  }
  if (!/^[a-z]+_[0-9A-Za-z]{1,40}$/.test(decoded))
    throw new ApiError("BAD_REQUEST", "The cursor is not valid.");
  return decoded;
}
