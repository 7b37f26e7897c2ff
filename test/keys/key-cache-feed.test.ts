/**
 * The change feed's window, its purge by the cron, and a tenant erasure's disable of every key. In ISOLATED
 * (vitest.config.ts): it writes feed rows of no key, counts the whole feed, and runs the cron.
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { hashKey } from "../../src/crypto/keys";
import { requestErasure } from "../../src/erasure/tenant-erasure";
import worker from "../../src/index";
import {
  KEY_CHANGE_RETENTION_MS,
  KEY_FEED_POLL_INTERVAL_MS,
  purgeKeyChanges,
} from "../../src/keys/key-change-feed";
import { call, createKey, createTenant } from "../helpers/api";
import { countRows } from "../helpers/db";
import {
  changesSince,
  countingD1,
  latestChange,
  locationHolding,
  otherIsolate,
  runningIsolate,
} from "./key-cache-support";

const POLL = KEY_FEED_POLL_INTERVAL_MS;
const HOUR = 3_600_000;

/** Feed rows for keys that do not exist: changes elsewhere that fill an isolate's window. */
async function unrelatedChanges(count: number, changedAt = Date.now()): Promise<void> {
  await env.DB.batch(
    Array.from({ length: count }, (_, i) =>
      env.DB.prepare("INSERT INTO key_changes (hash_prefix, changed_at) VALUES (?, ?)").bind(
        `0000unrelated${String(i).padStart(3, "0")}`,
        changedAt,
      ),
    ),
  );
}

const feedRows = (where: string, ...params: unknown[]) => countRows("key_changes", where, ...params);

describe("the feed window an isolate holds", () => {
  it("serves an entry while the window holds every change since its read, and counts it as a miss once the window is capped above it", async () => {
    const tenant = await createTenant("feed window at load");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const t0 = Date.now();
    const location = await locationHolding([hash], t0);
    // Three changes since the entry was read: a window of 3 still holds every one of them.
    await unrelatedChanges(3);
    const full = await runningIsolate({ feed: { window: 3 }, cache: location });
    const fullReads = countingD1();
    expect(await full.tiers.lookup(fullReads.db, hash, t0 + 10)).toMatchObject({ id: key.id });
    expect(fullReads.counts.sessionKeyReads).toBe(0);

    // A fourth: the window no longer reaches back to the entry's read, so the entry is a miss.
    await unrelatedChanges(1);
    const capped = await runningIsolate({ feed: { window: 3 }, cache: location });
    const cappedReads = countingD1();
    expect(await capped.tiers.lookup(cappedReads.db, hash, t0 + 10)).toMatchObject({ id: key.id });
    expect(cappedReads.counts.sessionKeyReads).toBe(1);

    const covering = await runningIsolate({ feed: { window: 1_000 }, cache: location });
    const coveringReads = countingD1();
    expect(await covering.tiers.lookup(coveringReads.db, hash, t0 + 10)).toMatchObject({ id: key.id });
    expect(coveringReads.counts.sessionKeyReads).toBe(0);
  });

  it("turns an entry into a miss once the changes polled since push its seq out of the window", async () => {
    const tenant = await createTenant("feed window polled");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const isolate = otherIsolate({ feed: { window: 3 } });
    const t0 = Date.now();
    await isolate.tiers.lookup(env.DB, hash, t0);
    await isolate.settle();
    const hit = countingD1();
    await isolate.tiers.lookup(hit.db, hash, t0 + 1);
    expect(hit.counts.sessionKeyReads).toBe(0);

    await unrelatedChanges(4);
    await isolate.tiers.lookup(env.DB, hash, t0 + POLL + 1);
    await isolate.settle();
    const miss = countingD1();
    expect(await isolate.tiers.lookup(miss.db, hash, t0 + POLL + 2)).toMatchObject({ id: key.id });
    expect(miss.counts.sessionKeyReads).toBe(1);
  });
});

describe("the feed's retention", () => {
  it("deletes changes older than 48 hours in bounded chunks, and keeps every younger one", async () => {
    const now = Date.now();
    await unrelatedChanges(5, now - KEY_CHANGE_RETENTION_MS - HOUR);
    await unrelatedChanges(1, now - KEY_CHANGE_RETENTION_MS + HOUR);
    const young = await feedRows("changed_at >= ?", now - KEY_CHANGE_RETENTION_MS);
    expect(await feedRows("changed_at < ?", now - KEY_CHANGE_RETENTION_MS)).toBe(5);

    expect(await purgeKeyChanges(env.DB, now, { chunk: 2, rounds: 2 })).toBe(4);
    expect(await purgeKeyChanges(env.DB, now, { chunk: 2, rounds: 2 })).toBe(1);
    expect(await purgeKeyChanges(env.DB, now)).toBe(0);
    expect(await feedRows("changed_at < ?", now - KEY_CHANGE_RETENTION_MS)).toBe(0);
    expect(await feedRows("changed_at >= ?", now - KEY_CHANGE_RETENTION_MS)).toBe(young);
  });

  it("is purged by the cron tick", async () => {
    const now = Date.now();
    await unrelatedChanges(2, now - KEY_CHANGE_RETENTION_MS - HOUR);
    await unrelatedChanges(1, now);
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ scheduledTime: now, cron: "*/5 * * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);
    expect(await feedRows("changed_at < ?", now - KEY_CHANGE_RETENTION_MS)).toBe(0);
  });
});

describe("a cron whose clock runs far ahead of D1's", () => {
  it("purges no change younger than 48 hours before the newest one, so a fresh isolate still refuses an entry read before a revocation", async () => {
    const tenant = await createTenant("feed clock ahead");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const t0 = Date.now();
    const location = await locationHolding([hash], t0);
    expect((await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status).toBe(200);
    await unrelatedChanges(1);

    // The Worker's clock a month ahead: every change looks 30 days old to it, none is to D1's.
    expect(await purgeKeyChanges(env.DB, t0 + 31 * 24 * HOUR, { chunk: 5_000, rounds: 100 })).toBe(0);
    expect(await changesSince(0, hash)).toBeGreaterThan(0);

    // The location still holds the entry read before the revocation; the fresh view has the revocation.
    const fresh = await runningIsolate({ cache: location });
    const reads = countingD1();
    expect(await fresh.tiers.lookup(reads.db, hash, t0 + 10)).toMatchObject({ id: key.id, revoked: true });
    expect(reads.counts.sessionKeyReads).toBe(1);
  });
});

describe("a feed emptied, then written again (floor 0 below the window's cap)", () => {
  it("serves a fresh isolate an entry stamped at the emptied feed's head, after new changes to other keys", async () => {
    const tenant = await createTenant("feed emptied");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    await env.DB.prepare("DELETE FROM key_changes").run();
    const t0 = Date.now();
    const location = await locationHolding([hash], t0);
    // New rows: their seqs continue past every deleted one (AUTOINCREMENT), far above the entry's head of 0.
    await unrelatedChanges(3);

    const fresh = await runningIsolate({ cache: location });
    const reads = countingD1();
    expect(await fresh.tiers.lookup(reads.db, hash, t0 + 10)).toMatchObject({ id: key.id, enabled: true });
    expect(reads.counts).toEqual({ primaryKeyReads: 0, sessionKeyReads: 0, feedReads: 1 });

    // A change to this key among the new rows is in the view, so the same entry is refused.
    expect((await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status).toBe(200);
    const after = await runningIsolate({ cache: location });
    const rereads = countingD1();
    expect(await after.tiers.lookup(rereads.db, hash, t0 + 20)).toMatchObject({ id: key.id, revoked: true });
    expect(rereads.counts.sessionKeyReads).toBe(1);
  });
});

describe("a tenant's erasure", () => {
  it("logs the disable of every enabled key of the tenant, so every isolate refuses them after its next poll", async () => {
    const tenant = await createTenant("feed erasure");
    const bystander = await createTenant("feed erasure bystander");
    const keys = [await createKey(tenant), await createKey(tenant, { name: "second" })];
    const disabled = await createKey(tenant, { name: "already disabled" });
    expect(
      (await call("PATCH", `/api/v1/keys/${disabled.id}`, { key: tenant.adminKey, body: { enabled: false } }))
        .status,
    ).toBe(200);
    const other = await createKey(bystander);
    const hashes = await Promise.all([tenant.adminKey, ...keys.map((k) => k.key)].map(hashKey));
    const [disabledHash, otherHash] = await Promise.all([hashKey(disabled.key), hashKey(other.key)]);

    const isolate = otherIsolate();
    const t0 = Date.now();
    for (const hash of [...hashes, otherHash]) {
      expect(await isolate.tiers.lookup(env.DB, hash, t0)).toMatchObject({ enabled: true });
    }
    await isolate.settle();
    const seq = await latestChange();

    await requestErasure(env, tenant.id, "req-feed-erasure", Date.now());

    for (const hash of hashes) {
      expect(await changesSince(seq, hash)).toBe(1);
    }
    expect(await changesSince(seq, disabledHash)).toBe(0);
    expect(await changesSince(seq, otherHash)).toBe(0);

    await isolate.tiers.lookup(env.DB, otherHash, t0 + POLL + 1);
    await isolate.settle();
    for (const hash of hashes) {
      expect(await isolate.tiers.lookup(env.DB, hash, t0 + POLL + 2)).toMatchObject({ enabled: false });
    }
    const bystanderReads = countingD1();
    expect(await isolate.tiers.lookup(bystanderReads.db, otherHash, t0 + POLL + 2)).toMatchObject({
      enabled: true,
    });
    expect(bystanderReads.counts.sessionKeyReads).toBe(0);
  });
});
