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
