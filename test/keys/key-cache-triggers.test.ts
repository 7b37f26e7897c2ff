/**
 * Migration 0011's triggers: the change feed logs every change to api_keys that can make a cached verify
 * answer wrong, whatever writes it, and nothing else (authentication's last_used_at stamp above all: it is
 * written on every verify, and logging it would make every key's cached entry stale at once).
 */
import { env } from "cloudflare:workers";
import { getTableColumns } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { generateKey, hashKey } from "../../src/crypto/keys";
import { apiKeys } from "../../src/db/schema";
import { HASH_PREFIX_LENGTH } from "../../src/keys/key-change-feed";
import { toKeyRecord } from "../../src/keys/key-record";
import { flushUsage } from "../../src/monitoring/usage-recorder";
import { call, createKey, createTenant, verify } from "../helpers/api";
import { changesSince, latestChange } from "./key-cache-support";

type KeyRow = typeof apiKeys.$inferSelect;

/** The api_keys columns toKeyRecord reads, found by watching it read a row (not from the trigger's text). */
function columnsAKeyRecordReads(): Set<string> {
  const columns = getTableColumns(apiKeys);
  // Every column set (to 1), so that every branch of toKeyRecord runs and reads what it can.
  const sample = Object.fromEntries(
    Object.keys(columns).map((property) => [property, 1]),
  ) as unknown as KeyRow;
  const read = new Set<string>();
  toKeyRecord(
    new Proxy(sample, {
      get(target, property, receiver) {
        const column = columns[property as keyof typeof columns];
        if (column) read.add(column.name);
        return Reflect.get(target, property, receiver);
      },
    }),
  );
  return read;
}

describe("the key change feed's triggers", () => {
  it("log an update of each column a KeyRecord reads and of the hash, and of no other column", async () => {
    const tenant = await createTenant("triggers columns");
    const other = await createTenant("triggers columns other tenant");
    const key = await createKey(tenant, { scopes: ["orders:read"] });
    const hash = await hashKey(key.key);
    const logged = new Set([...columnsAKeyRecordReads(), "hash"]);
    // The fields a verify answer is built from: if toKeyRecord reads them, the watch above saw them.
    for (const column of ["enabled", "revoked_at", "expires_at", "scopes", "tenant_id", "metadata"]) {
      expect(logged).toContain(column);
    }
    const { results } = await env.DB.prepare("SELECT name FROM pragma_table_info('api_keys')").all<{
      name: string;
    }>();
    const otherHash = await hashKey(generateKey("kw", "live", "basic"));
    // A different value of the same kind (JSON stays JSON: a view reads the scopes); each is undone right after.
    const changed = (column: string): [string, ...string[]] =>
      column === "hash"
        ? ["?2", otherHash]
        : column === "tenant_id"
          ? ["?2", other.id]
          : [
              `CASE WHEN "${column}" IS NULL THEN 7
                WHEN json_valid("${column}") AND json_type("${column}") = 'array' THEN json_insert("${column}", '$[#]', 'x')
                WHEN json_valid("${column}") AND json_type("${column}") = 'object' THEN json_set("${column}", '$.x', 1)
                ELSE "${column}" || '~' END`,
            ];

    for (const { name: column } of results) {
      const [expression, ...parameters] = changed(column);
      const before = await latestChange();
      const saved = await env.DB.prepare(`SELECT "${column}" AS value FROM api_keys WHERE hash = ?1`)
        .bind(hash)
        .first<{ value: unknown }>();
      await env.DB.prepare(`UPDATE api_keys SET "${column}" = ${expression} WHERE hash = ?1`)
        .bind(hash, ...parameters)
        .run();
      const logs = await changesSince(before, hash, otherHash);
      const current = column === "hash" ? otherHash : hash;
      await env.DB.prepare(`UPDATE api_keys SET "${column}" = ?2 WHERE hash = ?1`)
        .bind(current, saved?.value ?? null)
        .run();
      // The hash names the key twice: the cached answer under the old hash, and a miss cached under the new one.
      expect(logs, column).toBe(logged.has(column) ? (column === "hash" ? 2 : 1) : 0);
    }
  });

  it("log nothing for an update that leaves those columns as they were", async () => {
    const tenant = await createTenant("triggers same values");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const before = await latestChange();
    await env.DB.prepare(
      "UPDATE api_keys SET enabled = enabled, scopes = scopes, revoked_at = revoked_at, name = name, updated_at = ?2 WHERE hash = ?1",
    )
      .bind(hash, Date.now())
      .run();
    expect(await changesSince(before, hash)).toBe(0);
  });

  it("log nothing when verify stamps a key's last use", async () => {
    const tenant = await createTenant("triggers last used");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const before = await latestChange();
    expect(await verify(tenant, key.key)).toMatchObject({ valid: true });
    await flushUsage(env.DB);
    const stamped = await env.DB.prepare("SELECT last_used_at FROM api_keys WHERE id = ?")
      .bind(key.id)
      .first<{ last_used_at: number | null }>();
    expect(stamped?.last_used_at).not.toBeNull();
    expect(await changesSince(before, hash)).toBe(0);
  });

  it("log the creation, rotation, revocation and deletion of a key through the API, under the hash's prefix", async () => {
    const tenant = await createTenant("triggers api");
    const before = await latestChange();
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    expect(await changesSince(before, hash)).toBe(1);
    const prefix = await env.DB.prepare("SELECT hash_prefix FROM key_changes WHERE seq > ? ORDER BY seq DESC")
      .bind(before)
      .first<{ hash_prefix: string }>();
    expect(prefix?.hash_prefix).toBe(hash.slice(0, HASH_PREFIX_LENGTH));

    const rotated = await call("POST", `/api/v1/keys/${key.id}/rotate`, {
      key: tenant.adminKey,
      body: { grace_seconds: 3600 },
    });
    expect(rotated.status).toBe(201);
    const successor = (await rotated.json()) as { key: string; id: string };
    // The old key's expiry and successor pointer; the successor's creation.
    expect(await changesSince(before, hash)).toBeGreaterThanOrEqual(2);
    const successorHash = await hashKey(successor.key);
    expect(await changesSince(before, successorHash)).toBeGreaterThanOrEqual(1);

    const afterRotation = await latestChange();
    expect((await call("POST", `/api/v1/keys/${successor.id}/revoke`, { key: tenant.adminKey })).status).toBe(
      200,
    );
    expect(await changesSince(afterRotation, successorHash)).toBe(1);
    expect((await call("DELETE", `/api/v1/keys/${successor.id}`, { key: tenant.adminKey })).status).toBe(204);
    expect(await changesSince(afterRotation, successorHash)).toBe(2);
  });
});
