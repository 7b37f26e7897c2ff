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
  try {
    const [createdAt, id] = atob(text).split(".");
    if (createdAt && id && /^\d{1,15}$/.test(createdAt) && /^[a-z]+_[0-9A-Za-z]{1,40}$/.test(id)) {
      return { createdAt: Number(createdAt), id };
    }
  } catch {
    // fall through to the uniform error
  }
  throw new ApiError("BAD_REQUEST", "The cursor is not valid.");
}
