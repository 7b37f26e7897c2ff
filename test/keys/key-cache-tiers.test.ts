/**
 * The verify lookup's tiers (src/keys/key-cache-tier.ts) seen from "another isolate": a KeyCacheTiers of the
 * test's own, with its own LRU and view of the change feed, over the real D1 and a real Cache API cache, and a
 * clock the test sets per lookup. The changes themselves go through the API, so the app's isolate forgets its
 * own entries, and this one only learns of them from the feed.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { generateKey, hashKey } from "../../src/crypto/keys";
import { cacheUrl } from "../../src/keys/key-cache-tier";
import {
  HASH_PREFIX_LENGTH,
  KEY_ENTRY_MAX_AGE_MS,
  KEY_FEED_POLL_INTERVAL_MS,
  KEY_PROPAGATION_BOUND_MS,
} from "../../src/keys/key-change-feed";
import type { KeyRecord } from "../../src/keys/key-record";
import { type CreatedKey, call, createKey, createTenant, type TestTenant } from "../helpers/api";
import { exportWith, importInto, names, PASSPHRASE } from "../portability/export-support";
import {
  countingCache,
  countingD1,
  freshCache,
  frozenReplica,
  latestChange,
  locationHolding,
  otherIsolate,
  replicaWithoutTheKey,
  runningIsolate,
} from "./key-cache-support";

const POLL = KEY_FEED_POLL_INTERVAL_MS;

/** A copy of a key's row under another hash and id, as an insert by any code path would make it. */
async function copyKeyRow(id: string, hash: string): Promise<void> {
  const { results } = await env.DB.prepare("SELECT name FROM pragma_table_info('api_keys')").all<{
    name: string;
  }>();
  const columns = results.map((column) => column.name);
  const source = columns.map((name) =>
    name === "id"
      ? "'key_copy_' || lower(hex(randomblob(8)))"
      : name === "hash"
        ? "?1"
        : name === "rotated_from_id"
          ? "NULL"
          : `"${name}"`,
  );
  await env.DB.prepare(
    `INSERT INTO api_keys (${columns.map((name) => `"${name}"`).join(", ")}) SELECT ${source.join(", ")} FROM api_keys WHERE id = ?2`,
  )
    .bind(hash, id)
    .run();
}

async function keyOf(tenant: TestTenant, body: Record<string, unknown> = {}) {
  const key = await createKey(tenant, { scopes: ["orders:read", "orders:write"], ...body });
  return { key, hash: await hashKey(key.key) };
}

const CHANGES: [
  string,
  (tenant: TestTenant, key: CreatedKey) => Promise<number>,
  (r: KeyRecord | null) => void,
][] = [
  [
    "revoked",
    async (tenant, key) =>
      (await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status,
    (record) => expect(record?.revoked).toBe(true),
  ],
  [
    "disabled",
    async (tenant, key) =>
      (await call("PATCH", `/api/v1/keys/${key.id}`, { key: tenant.adminKey, body: { enabled: false } }))
        .status,
    (record) => expect(record?.enabled).toBe(false),
  ],
  [
    "down-scoped",
    async (tenant, key) =>
      (
        await call("PATCH", `/api/v1/keys/${key.id}`, {
          key: tenant.adminKey,
          body: { scopes: ["orders:read"] },
        })
      ).status,
    (record) => expect(record?.scopes).toEqual(["orders:read"]),
  ],
  [
    "deleted",
    async (tenant, key) => (await call("DELETE", `/api/v1/keys/${key.id}`, { key: tenant.adminKey })).status,
    (record) => expect(record).toBeNull(),
  ],
];

describe("another isolate's view of a changed key (threat model case 11, across isolates)", () => {
  it.each(CHANGES)(
    "refuses a %s key once its view has polled, and serves the old answer only until then",
    async (_label, change, isChanged) => {
      const tenant = await createTenant("tiers change");
      const { key, hash } = await keyOf(tenant);
      const other = otherIsolate();
      const t0 = Date.now();
      expect(await other.tiers.lookup(env.DB, hash, t0)).toMatchObject({ id: key.id, enabled: true });
      await other.settle();

      expect([200, 204]).toContain(await change(tenant, key));

      // Inside the poll interval the other isolate still answers from what its view vouched for: the bound.
      expect(await other.tiers.lookup(env.DB, hash, t0 + 1_000)).toMatchObject({ id: key.id, enabled: true });
      // The poll is due: it starts in the background, and this lookup is still served from the view it had.
      expect(await other.tiers.lookup(env.DB, hash, t0 + POLL + 1)).toMatchObject({ id: key.id });
      await other.settle();
      isChanged(await other.tiers.lookup(env.DB, hash, t0 + POLL + 2));
    },
  );

  it("waits for a poll when its view is older than the hard bound, instead of serving what it holds", async () => {
    const tenant = await createTenant("tiers hard bound");
    const { key, hash } = await keyOf(tenant);
    const other = otherIsolate();
    const t0 = Date.now();
    const first = countingD1();
    await other.tiers.lookup(first.db, hash, t0);
    await other.settle();
    expect(first.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 1, feedReads: 1 });

    expect((await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status).toBe(200);

    // No traffic for longer than the hard bound (no poll ran): this lookup waits for one, and is refused.
    const late = countingD1();
    const record = await other.tiers.lookup(late.db, hash, t0 + KEY_PROPAGATION_BOUND_MS + 1);
    expect(record?.revoked).toBe(true);
    expect(late.counts.feedReads).toBe(1);
    // The view is current again: the next lookup is a hit, with no D1 read at all.
    const next = countingD1();
    expect((await other.tiers.lookup(next.db, hash, t0 + KEY_PROPAGATION_BOUND_MS + 2))?.revoked).toBe(true);
    expect(next.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 0, feedReads: 0 });
  });

  it("answers from the primary, not from what it holds or what a replica says, while polls fail past the hard bound", async () => {
    const tenant = await createTenant("tiers polls fail");
    const { key, hash } = await keyOf(tenant);
    const replica = frozenReplica();
    const other = otherIsolate();
    const t0 = Date.now();
    expect(await other.tiers.lookup(countingD1(replica).db, hash, t0)).toMatchObject({ revoked: false });
    await other.settle();
    expect((await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status).toBe(200);

    for (const after of [1, 2, POLL + 3]) {
      const down = countingD1(replica, { feedDown: true });
      expect(await other.tiers.lookup(down.db, hash, t0 + KEY_PROPAGATION_BOUND_MS + after)).toMatchObject({
        revoked: true,
      });
      expect(down.counts).toMatchObject({ feedReads: 1, primaryKeyReads: 1 });
      await other.settle();
    }
  });

  it("serves no entry older than a day, even with no change to its key", async () => {
    const tenant = await createTenant("tiers max age");
    const { hash } = await keyOf(tenant);
    const other = otherIsolate({ feed: { hardBoundMs: 2 * KEY_ENTRY_MAX_AGE_MS } });
    const t0 = Date.now();
    await other.tiers.lookup(env.DB, hash, t0);
    await other.settle();
    const hit = countingD1();
    await other.tiers.lookup(hit.db, hash, t0 + KEY_ENTRY_MAX_AGE_MS - 1);
    expect(hit.counts.sessionKeyReads).toBe(0);
    const expired = countingD1();
    await other.tiers.lookup(expired.db, hash, t0 + KEY_ENTRY_MAX_AGE_MS);
    expect(expired.counts.sessionKeyReads).toBe(1);
  });
});

describe("a fresh isolate's concurrent misses", () => {
  it("reads D1 once for concurrent misses of one key", async () => {
    const tenant = await createTenant("tiers single flight");
    const { key, hash } = await keyOf(tenant);
    const other = otherIsolate();
    const d1 = countingD1();
    const t0 = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 5 }, (_, i) => other.tiers.lookup(d1.db, hash, t0 + i)),
    );
    for (const answer of answers) expect(answer).toMatchObject({ id: key.id, enabled: true });
    expect(d1.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 1, feedReads: 1 });

    // Once the read has settled, the next miss of the key (after the isolate forgot it) reads again.
    other.tiers.forget(hash, t0 + 10);
    await other.settle();
    expect(await other.tiers.lookup(d1.db, hash, t0 + 11)).toMatchObject({ id: key.id });
    expect(d1.counts.primaryKeyReads).toBe(1);
  });
});

describe("the location's cache (Workers Cache API)", () => {
  it("serves a second isolate without reading the key from D1, and a warm hit touches neither D1 nor the cache", async () => {
    const tenant = await createTenant("tiers cache api");
    const { key, hash } = await keyOf(tenant);
    const t0 = Date.now();
    const location = await locationHolding([hash], t0);

    const cache = countingCache(location);
    const second = await runningIsolate({ cache: cache.cache });
    const d1 = countingD1();
    expect(await second.tiers.lookup(d1.db, hash, t0 + 10)).toMatchObject({ id: key.id, enabled: true });
    expect(d1.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 0, feedReads: 1 });
    expect(cache.counts).toEqual({ match: 1, put: 0, delete: 0 });

    // The warm path: nothing but the isolate's own memory.
    const warm = countingD1();
    for (let i = 1; i <= 3; i++) {
      expect(await second.tiers.lookup(warm.db, hash, t0 + 10 + i)).toMatchObject({ id: key.id });
    }
    expect(warm.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 0, feedReads: 0 });
    expect(cache.counts).toEqual({ match: 1, put: 0, delete: 0 });
  });

  it("refuses an entry older than a change to its key, reads D1 instead and replaces the entry", async () => {
    const tenant = await createTenant("tiers stale entry");
    const { key, hash } = await keyOf(tenant);
    const t0 = Date.now();
    const location = await locationHolding([hash], t0);
    const before = (await (await location.match(cacheUrl(hash)))?.json()) as { seq: number };

    expect(
      (await call("PATCH", `/api/v1/keys/${key.id}`, { key: tenant.adminKey, body: { enabled: false } }))
        .status,
    ).toBe(200);
    const changedAt = await latestChange(hash);
    expect(before.seq).toBeLessThan(changedAt);

    const reader = await runningIsolate({ cache: location });
    const d1 = countingD1();
    expect(await reader.tiers.lookup(d1.db, hash, t0 + 10)).toMatchObject({ id: key.id, enabled: false });
    expect(d1.counts.sessionKeyReads).toBe(1);
    await reader.settle();
    const after = (await (await location.match(cacheUrl(hash)))?.json()) as {
      seq: number;
      record: KeyRecord;
    };
    expect(after.seq).toBeGreaterThanOrEqual(changedAt);
    expect(after.record.enabled).toBe(false);
  });

  it("holds the KeyRecord and the feed stamp only: no key, no hash, no hash prefix, no tenant policy (threat model cases 10 and 15)", async () => {
    const tenant = await createTenant("tiers entry contents");
    const { key, hash } = await keyOf(tenant, {
      metadata: { team: "billing" },
      ratelimit: { limit: 10, window_ms: 60_000 },
      ip_allowlist: ["203.0.113.0/24"],
    });
    const location = await freshCache();
    const other = await runningIsolate({ cache: location });
    const record = await other.tiers.lookup(env.DB, hash, Date.now());
    await other.settle();
    const response = await location.match(cacheUrl(hash));
    expect(response?.headers.get("cache-control")).toBe("max-age=86400");
    const text = (await response?.text()) ?? "";
    for (const secret of [
      key.key,
      key.key.slice(8, 28),
      hash,
      hash.slice(0, HASH_PREFIX_LENGTH),
      hash.toUpperCase(),
    ]) {
      expect(text).not.toContain(secret);
    }
    const body = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(["readAt", "record", "seq", "v"]);
    expect(body.record).toEqual(record);
    expect(body.record).not.toHaveProperty("tenantFence");
  });

  it("treats an entry of another shape as a miss and reads D1", async () => {
    const tenant = await createTenant("tiers malformed entry");
    const { key, hash } = await keyOf(tenant);
    const location = await freshCache();
    await location.put(
      cacheUrl(hash),
      new Response(JSON.stringify({ v: 1, seq: 1e12, readAt: Date.now(), record: { id: key.id } }), {
        headers: { "cache-control": "max-age=86400" },
      }),
    );
    const other = await runningIsolate({ cache: location });
    const d1 = countingD1();
    expect(await other.tiers.lookup(d1.db, hash, Date.now())).toMatchObject({
      id: key.id,
      tenantId: tenant.id,
    });
    expect(d1.counts.sessionKeyReads).toBe(1);
  });
});

describe("D1 through the Sessions API", () => {
  it("confirms a replica's NOT_FOUND on the primary, so a key the replica has not seen verifies at once", async () => {
    const tenant = await createTenant("tiers replica miss");
    const { key, hash } = await keyOf(tenant);
    const other = otherIsolate();
    const d1 = countingD1(replicaWithoutTheKey);
    expect(await other.tiers.lookup(d1.db, hash, Date.now())).toMatchObject({ id: key.id });
    expect(d1.counts).toMatchObject({ sessionKeyReads: 1, primaryKeyReads: 1 });
  });

  it("re-reads a replica's answer from the primary when the feed shows it superseded", async () => {
    const tenant = await createTenant("tiers replica stale");
    const { key, hash } = await keyOf(tenant);
    const replica = frozenReplica();
    const before = otherIsolate();
    const t0 = Date.now();
    const first = countingD1(replica);
    expect(await before.tiers.lookup(first.db, hash, t0)).toMatchObject({ id: key.id, revoked: false });
    // A replica's answer the view vouches for is used as it is.
    expect(first.counts).toMatchObject({ sessionKeyReads: 1, primaryKeyReads: 0 });

    expect((await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status).toBe(200);

    // A fresh isolate whose replica still answers as before the revocation.
    const after = otherIsolate();
    const second = countingD1(replica);
    expect(await after.tiers.lookup(second.db, hash, t0 + 10)).toMatchObject({ id: key.id, revoked: true });
    expect(second.counts).toMatchObject({ sessionKeyReads: 1, primaryKeyReads: 1 });
  });
});

describe("keys that come into existence after their hash was cached as unknown", () => {
  it("verifies an imported key in another isolate once its view has polled, and in a fresh isolate at once", async () => {
    const source = await createTenant("tiers import source");
    const target = await createTenant("tiers import target");
    const { key, hash } = await keyOf(source);
    const jwe = await exportWith(source);
    expect((await call("DELETE", `/api/v1/keys/${key.id}`, { key: source.adminKey })).status).toBe(204);

    const location = await freshCache();
    const other = await runningIsolate({ cache: location });
    const t0 = Date.now();
    expect(await other.tiers.lookup(env.DB, hash, t0)).toBeNull();
    await other.settle();

    const imported = await importInto(target, { jwe, passphrase: PASSPHRASE });
    expect(names(imported.body.plan.keys.create)).toContain("test key");

    // A fresh isolate at the same location: the cached "unknown" predates the import in its view.
    const fresh = await runningIsolate({ cache: location });
    expect(await fresh.tiers.lookup(env.DB, hash, t0 + 10)).toMatchObject({ tenantId: target.id });

    await other.tiers.lookup(env.DB, hash, t0 + POLL + 1);
    await other.settle();
    expect(await other.tiers.lookup(env.DB, hash, t0 + POLL + 2)).toMatchObject({ tenantId: target.id });
  });

  it("verifies a key created under a hash this isolate cached as unknown, once its view has polled", async () => {
    const tenant = await createTenant("tiers created");
    const template = await keyOf(tenant);
    const newKey = generateKey("kw", "live", "basic");
    const newHash = await hashKey(newKey);
    const other = otherIsolate();
    const t0 = Date.now();
    expect(await other.tiers.lookup(env.DB, newHash, t0)).toBeNull();
    await other.settle();

    // A row inserted under the cached hash (the trigger sees an INSERT, whichever code path makes it).
    await copyKeyRow(template.key.id, newHash);

    await other.tiers.lookup(env.DB, newHash, t0 + POLL + 1);
    await other.settle();
    expect(await other.tiers.lookup(env.DB, newHash, t0 + POLL + 2)).toMatchObject({ tenantId: tenant.id });
  });
});

describe("the isolate that made the change", () => {
  it("refuses the key at once, before any poll and whatever a replica says, and deletes the location's entry", async () => {
    const tenant = await createTenant("tiers forget");
    const { key, hash } = await keyOf(tenant);
    const location = await freshCache();
    const cache = countingCache(location);
    const replica = frozenReplica();
    const here = await runningIsolate({ cache: cache.cache });
    const t0 = Date.now();
    await here.tiers.lookup(countingD1(replica).db, hash, t0);
    await here.settle();
    expect(await location.match(cacheUrl(hash))).toBeDefined();

    // As a route does after its commit (the app's own isolate is not this one, so change the row directly).
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(t0, key.id).run();
    here.tiers.forget(hash, t0 + 1);
    await here.settle();
    expect(cache.counts.delete).toBe(1);
    expect(await location.match(cacheUrl(hash))).toBeUndefined();

    // No poll is due and the replica still has the key unrevoked: the lookup reads the primary.
    const d1 = countingD1(replica);
    expect((await here.tiers.lookup(d1.db, hash, t0 + 2))?.revoked).toBe(true);
    expect(d1.counts).toEqual({ primaryKeyReads: 1, sessionKeyReads: 0, feedReads: 0 });
  });
});
