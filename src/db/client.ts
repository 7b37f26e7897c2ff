import { drizzle } from "drizzle-orm/d1";
import * as schema from "./schema";

export type Database = ReturnType<typeof createDatabase>;

function createDatabase(d1: D1Database) {
  return drizzle(d1, { schema });
}

const byBinding = new WeakMap<D1Database, Database>();

/** One drizzle wrapper per D1 binding object, reused across requests of the isolate. */
export function database(d1: D1Database): Database {
  let db = byBinding.get(d1);
  if (!db) {
    db = createDatabase(d1);
    byBinding.set(d1, db);
  }
  return db;
}
