// Read-only SQL on an instance's D1 database file, run as its own process (forked by bench/keyring.mjs). The
// keyring stage asks how far its background work has come every fraction of a second; asked through
// Miniflare's proxy, those queries wait in the same workerd event loop as the thousands of Workflow instances
// and the measured traffic, and under that load the proxy's fetch failed outright. Miniflare keeps D1 as a
// SQLite database in WAL mode on disk, so a second, read-only connection sees every committed write, costs
// workerd nothing and never blocks it. Needs Node 22.5+ (node:sqlite).
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";

let db;

/** The one database file Miniflare keeps for the D1 binding under `persistDir`. */
function databaseFile(persistDir) {
  const dir = join(persistDir, "d1", "miniflare-D1DatabaseObject");
  const files = readdirSync(dir).filter((name) => name.endsWith(".sqlite") && name !== "metadata.sqlite");
  if (files.length !== 1) throw new Error(`expected one D1 database in ${dir}, found ${files.join(", ")}`);
  return join(dir, files[0]);
}

process.on("message", ({ id, cmd, args }) => {
  try {
    if (cmd === "open") {
      db = new DatabaseSync(databaseFile(args.persistDir), { readOnly: true });
      db.exec("PRAGMA busy_timeout = 5000");
      process.send({ id, result: true });
    } else if (cmd === "query") {
      process.send({ id, result: db.prepare(args.sql).all() });
    } else throw new Error(`unknown command ${cmd}`);
  } catch (error) {
    process.send({ id, error: String(error?.stack ?? error) });
  }
});
process.on("disconnect", () => {
  db?.close();
  process.exit(0);
});
