import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { SEALED_SOURCES } from "../../src/vault/sealed-records";

/**
 * The DEK re-encryption and the keyring status walk SEALED_SOURCES and nothing else: a table that stores
 * DEK ciphertext but is missing from the list would keep fields under a DEK that is about to be deleted.
 */
async function tableColumns(): Promise<Map<string, string[]>> {
  const tables = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%'",
  ).all<{ name: string }>();
  const columnsOf = new Map<string, string[]>();
  for (const { name } of tables.results) {
    const columns = await env.DB.prepare("SELECT name FROM pragma_table_info(?1)")
      .bind(name)
      .all<{ name: string }>();
    columnsOf.set(
      name,
      columns.results.map((column) => column.name),
    );
  }
  return columnsOf;
}

describe("the sealed-record registry", () => {
  it("lists exactly the tables that record a dek_version, each with its key and blob columns", async () => {
    const columnsOf = await tableColumns();
    const withDekVersion = [...columnsOf]
      .filter(([, names]) => names.includes("dek_version"))
      .map(([name]) => name);
    expect(SEALED_SOURCES.map((source) => source.table).sort()).toEqual(withDekVersion.sort());
    for (const source of SEALED_SOURCES) {
      expect(columnsOf.get(source.table), source.table).toEqual(
        expect.arrayContaining(["tenant_id", "dek_version", source.blobColumn, ...source.keyColumns]),
      );
    }
  });

  it("registers every sealed_* column of the schema: none holds ciphertext the re-encryption would miss", async () => {
    const sealedColumns = [...(await tableColumns())].flatMap(([table, names]) =>
      names.filter((name) => name.startsWith("sealed_")).map((name) => `${table}.${name}`),
    );
    expect(sealedColumns.length).toBeGreaterThan(0);
    const registered = SEALED_SOURCES.map((source) => `${source.table}.${source.blobColumn}`);
    expect(sealedColumns.filter((column) => !registered.includes(column))).toEqual([]);
  });
});
