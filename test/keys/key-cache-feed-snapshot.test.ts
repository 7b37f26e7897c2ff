/**
 * The location's snapshot of the change feed's view (src/keys/feed-view-snapshot.ts): an isolate writes its view
 * to the Cache API after a poll, and a fresh isolate starts from a recent, authentic one instead of waiting for
 * the window load from D1. Writers and readers are "other isolates" (test/keys/key-cache-support.ts) over a
 * location cache of the test's own, with the clock set per lookup.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { toBase64 } from "../../src/crypto/encoding";
import { HMAC_SHA_256 } from "../../src/crypto/envelope";
import { hashKey } from "../../src/crypto/keys";
import { FEED_VIEW_URL } from "../../src/keys/feed-view-snapshot";
import { feedViewMacInput, KEY_CACHE_MAC_HEADER, keyCacheMacInput } from "../../src/keys/key-cache-mac-key";
import { cacheUrl } from "../../src/keys/key-cache-tier";
import {
  FEED_VIEW_CLOCK_TOLERANCE_MS,
  hashPrefix,
  KEY_FEED_POLL_INTERVAL_MS,
} from "../../src/keys/key-change-feed";
import { call, createKey, createTenant, type TestTenant } from "../helpers/api";
import {
  deploymentEntryKey,
  freshCache,
  latestChange,
  locationHolding,
  otherIsolate,
  runningIsolate,
} from "./key-cache-support";

const POLL = KEY_FEED_POLL_INTERVAL_MS;
/** A key hash nothing was issued under: a lookup that only makes an isolate poll. */
const NO_KEY = "0".repeat(64);

function deferred(): { promise: Promise<void>; release: () => void } {
  let release = () => {};
  const promise = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { promise, release };
}

interface Reads {
  /** The fresh isolate's window load (the newest changes). */
  window: number;
  /** Polls of the changes since a head. */
  since: number;
  /** Key reads, on the primary or through a session. */
  keys: number;
}

/**
 * The real D1, counting what reaches it. With `windowDown` the window load fails (a lookup that needed it would
 * read the primary instead); with `since` every poll's read waits for that promise.
 */
function observedD1(options: { windowDown?: boolean; since?: Promise<void> } = {}) {
  const reads: Reads = { window: 0, since: 0, keys: 0 };
  const db = {
    prepare(sql: string) {
      if (sql.includes("api_keys")) {
        reads.keys += 1;
        return env.DB.prepare(sql);
      }
      if (sql.includes("ORDER BY seq DESC")) {
        reads.window += 1;
        if (options.windowDown) throw new Error("the window load is down (test)");
        return env.DB.prepare(sql);
      }
      reads.since += 1;
      const held = options.since;
      if (!held) return env.DB.prepare(sql);
      return {
        bind: (...values: unknown[]) => ({
          raw: async () => {
            await held;
            return env.DB.prepare(sql)
              .bind(...values)
              .raw();
          },
        }),
      };
    },
    withSession(constraint?: D1SessionConstraint) {
      const session = env.DB.withSession(constraint);
      return {
        prepare(sql: string) {
          reads.keys += 1;
          return session.prepare(sql);
        },
        getBookmark: () => session.getBookmark(),
      };
    },
  };
  return { db: db as unknown as D1Database, reads };
}

interface Snapshot {
  text: string;
  mac: string | null;
  body: { v: number; polledAt: number; floor: number; head: number; changes: [number, string][] };
}

async function snapshotIn(location: Cache): Promise<Snapshot | null> {
  const response = await location.match(FEED_VIEW_URL);
  if (!response) return null;
  const text = await response.text();
  return { text, mac: response.headers.get(KEY_CACHE_MAC_HEADER), body: JSON.parse(text) };
}

/** Writes a body under `url`, as any Worker on the zone can; `mac` null leaves the header out. */
async function plant(location: Cache, url: string, text: string, mac: string | null): Promise<void> {
  const headers: Record<string, string> = {
    "cache-control": "max-age=60",
    "content-type": "application/json",
  };
  if (mac !== null) headers[KEY_CACHE_MAC_HEADER] = mac;
  await location.put(url, new Response(text, { headers }));
}

async function macOf(key: CryptoKey, input: Uint8Array<ArrayBuffer>): Promise<string> {
  return toBase64(new Uint8Array(await crypto.subtle.sign("HMAC", key, input)));
}

/** A running isolate that shares its view polls the feed at `at`, and its snapshot is in the location. */
async function shareView(location: Cache, at: number): Promise<Snapshot> {
  const writer = await runningIsolate({ cache: location, shareFeedView: true });
  await writer.tiers.lookup(env.DB, NO_KEY, at);
  await writer.settle();
  const snapshot = await snapshotIn(location);
  expect(snapshot?.body.polledAt).toBe(at);
  return snapshot as Snapshot;
}

/** A fresh isolate of the location (its entry key derived, not loaded yet) that shares views, as the Worker's. */
const freshIsolate = (location: Cache) => otherIsolate({ cache: location, shareFeedView: true });

/** A key whose entry, read before its revocation, is still in the location's cache. */
async function revokedWithStaleEntry(tenant: TestTenant, t0: number) {
  const key = await createKey(tenant, { scopes: ["orders:read"] });
  const hash = await hashKey(key.key);
  const location = await locationHolding([hash], t0);
  expect((await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status).toBe(200);
  return { key, hash, location };
}

/** The location as a reader that writes nothing to it sees it: what the test planted stays for the next reader. */
function readOnly(inner: Cache): Cache {
  const cache = {
    match: (request: RequestInfo | URL) => inner.match(request),
    put: async () => {},
    delete: async () => false,
  };
  return cache as unknown as Cache;
}

/** The Cache API put calls made on the snapshot's URL. */
function countingSnapshotPuts(inner: Cache): { cache: Cache; puts: () => number } {
  let puts = 0;
  const cache = {
    match: (request: RequestInfo | URL) => inner.match(request),
    delete: (request: RequestInfo | URL) => inner.delete(request),
    put(request: RequestInfo | URL, response: Response) {
      if (String(request) === FEED_VIEW_URL) puts += 1;
      return inner.put(request, response);
    },
  };
  return { cache: cache as unknown as Cache, puts: () => puts };
}

describe("a fresh isolate and the location's snapshot of the feed", () => {
  it("serves a cached entry without a D1 read when a recent snapshot of the feed is in the location's cache", async () => {
    const tenant = await createTenant("feed view adopted");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const t0 = Date.now();
    const location = await locationHolding([hash], t0);

    // With no snapshot in the location, a fresh isolate's first lookup needs the window from D1 ...
    const without = observedD1();
    const plain = otherIsolate({ cache: location });
    expect(await plain.tiers.lookup(without.db, hash, t0 + 10)).toMatchObject({ id: key.id });
    expect(without.reads.window).toBe(1);
    await plain.settle();

    // ... with one, it answers from the location's cache with the window load down and the poll held.
    await shareView(location, t0 + 10);
    const pollAnswered = deferred();
    const d1 = observedD1({ windowDown: true, since: pollAnswered.promise });
    const fresh = freshIsolate(location);
    expect(await fresh.tiers.lookup(d1.db, hash, t0 + 20)).toMatchObject({ id: key.id, enabled: true });
    // The poll of the changes since the snapshot's head started in the background; nothing waited for it.
    expect(d1.reads).toEqual({ window: 0, since: 1, keys: 0 });

    pollAnswered.release();
    await fresh.settle();
    // Once that poll made its own view current, the fresh isolate shares it in turn.
    expect((await snapshotIn(location))?.body.polledAt).toBe(t0 + 20);
  });

  it("refuses a snapshot older than one poll interval, or stamped ahead of its clock, and loads the window from D1", async () => {
    const t0 = Date.now();
    const location = await freshCache();
    await shareView(location, t0);

    const adoptedAt = async (now: number) => {
      const d1 = observedD1();
      await freshIsolate(readOnly(location)).tiers.lookup(d1.db, NO_KEY, now);
      return d1.reads.window === 0;
    };
    expect(await adoptedAt(t0 + POLL)).toBe(true);
    expect(await adoptedAt(t0 + POLL + 1)).toBe(false);
    // A writer's clock ahead of the reader's: within the tolerance it is adopted, beyond it refused.
    expect(await adoptedAt(t0 - FEED_VIEW_CLOCK_TOLERANCE_MS)).toBe(true);
    expect(await adoptedAt(t0 - FEED_VIEW_CLOCK_TOLERANCE_MS - 1)).toBe(false);
  });

  it("refuses a forged or tampered snapshot that hides a revocation, and loads the window from D1 (threat model case 11)", async () => {
    const tenant = await createTenant("feed view forged");
    const t0 = Date.now();
    const { key, hash, location } = await revokedWithStaleEntry(tenant, t0);
    const authentic = await shareView(location, t0 + 10);
    const prefix = hashPrefix(hash);
    expect(authentic.body.changes.some(([, changed]) => changed === prefix)).toBe(true);

    // What a forger writes: a view with no change at all, reaching far ahead.
    const empty = JSON.stringify({ v: 1, polledAt: t0 + 10, floor: 0, head: 1e12, changes: [] });
    const staging = (await crypto.subtle.generateKey(HMAC_SHA_256, false, ["sign", "verify"])) as CryptoKey;
    // The deployment's own snapshot with the revoked key's change taken out, or made to look fresher; MAC kept.
    const withoutRevocation = JSON.stringify({
      ...authentic.body,
      changes: authentic.body.changes.filter(([, changed]) => changed !== prefix),
    });
    const refreshed = JSON.stringify({ ...authentic.body, polledAt: authentic.body.polledAt + 1 });
    const forgeries: [string, string, string | null][] = [
      ["no MAC", empty, null],
      ["a MAC of zeros", empty, toBase64(new Uint8Array(32))],
      ["a malformed MAC", empty, "not base64!"],
      ["another deployment's MAC", empty, await macOf(staging, feedViewMacInput(empty))],
      ["the revocation taken out", withoutRevocation, authentic.mac],
      ["its poll time moved", refreshed, authentic.mac],
    ];
    for (const [what, text, mac] of forgeries) {
      await plant(location, FEED_VIEW_URL, text, mac);
      const d1 = observedD1();
      const reader = freshIsolate(readOnly(location));
      expect(await reader.tiers.lookup(d1.db, hash, t0 + 20), what).toMatchObject({
        id: key.id,
        revoked: true,
      });
      expect(d1.reads.window, what).toBe(1);
      await reader.settle();
    }
  });

  it("makes the cached entry of a key a miss when the snapshot's view has a later change for it (revocation still propagates)", async () => {
    const tenant = await createTenant("feed view revocation");
    const t0 = Date.now();
    const { key, hash, location } = await revokedWithStaleEntry(tenant, t0);
    // The location's entry still says the key is valid; the view a running isolate shares has the revocation.
    await shareView(location, t0 + 10);

    const d1 = observedD1({ windowDown: true });
    const fresh = freshIsolate(location);
    expect(await fresh.tiers.lookup(d1.db, hash, t0 + 20)).toMatchObject({ id: key.id, revoked: true });
    expect(d1.reads.window).toBe(0);
    expect(d1.reads.keys).toBeGreaterThan(0);
    await fresh.settle();
  });

  it("does not wait for an entry key that is not at hand (Vault only): loads the window from D1", async () => {
    const t0 = Date.now();
    const location = await freshCache();
    await shareView(location, t0);
    // A stored entry key whose unseal never finishes: a lookup waiting for it would never answer.
    const fresh = otherIsolate({
      cache: location,
      shareFeedView: true,
      entryKeyAtHand: false,
      entryKey: () => new Promise<CryptoKey>(() => {}),
    });
    const d1 = observedD1();
    expect(await fresh.tiers.lookup(d1.db, NO_KEY, t0 + 10)).toBeNull();
    expect(d1.reads.window).toBe(1);
  });
});

describe("MAC domains of the location's cache", () => {
  it("a key entry's MAC does not verify as a snapshot, nor a snapshot's as a key entry", async () => {
    const tenant = await createTenant("feed view mac domains");
    const key = await createKey(tenant);
    const hash = await hashKey(key.key);
    const t0 = Date.now();
    const record = await otherIsolate().tiers.lookup(env.DB, hash, t0);
    const head = await latestChange();
    // One body that is both a well-formed key entry and a well-formed snapshot, so only the MAC can tell.
    const text = JSON.stringify({
      v: 1,
      seq: head,
      readAt: t0,
      record,
      polledAt: t0,
      floor: 0,
      head,
      changes: [],
    });
    const entryKey = await deploymentEntryKey();
    const asEntry = await macOf(entryKey, keyCacheMacInput(hash, text));
    const asSnapshot = await macOf(entryKey, feedViewMacInput(text));

    const entryServed = async (mac: string) => {
      const location = await freshCache();
      await plant(location, cacheUrl(hash), text, mac);
      const d1 = observedD1();
      const reader = await runningIsolate({ cache: location });
      expect(await reader.tiers.lookup(d1.db, hash, t0 + 10)).toMatchObject({ id: key.id });
      return d1.reads.keys === 0;
    };
    const snapshotAdopted = async (mac: string) => {
      const location = await freshCache();
      await plant(location, FEED_VIEW_URL, text, mac);
      const d1 = observedD1();
      await freshIsolate(location).tiers.lookup(d1.db, NO_KEY, t0 + 10);
      return d1.reads.window === 0;
    };
    // Each MAC is accepted in its own domain ...
    expect(await entryServed(asEntry)).toBe(true);
    expect(await snapshotAdopted(asSnapshot)).toBe(true);
    // ... and refused in the other.
    expect(await entryServed(asSnapshot)).toBe(false);
    expect(await snapshotAdopted(asEntry)).toBe(false);
  });
});

describe("writing the snapshot", () => {
  it("an invalidated view writes no snapshot, until a poll that started after the invalidation", async () => {
    const t0 = Date.now();
    const { cache, puts } = countingSnapshotPuts(await freshCache());
    const isolate = await runningIsolate({ cache, shareFeedView: true });
    await isolate.tiers.lookup(env.DB, NO_KEY, t0);
    await isolate.settle();
    expect(puts()).toBe(1);

    // A poll due starts (held); before it answers, a change this isolate cannot name invalidates the view.
    const pollAnswered = deferred();
    const d1 = observedD1({ since: pollAnswered.promise });
    expect(await isolate.tiers.lookup(d1.db, NO_KEY, t0 + POLL + 1)).toBeNull();
    expect(d1.reads.since).toBe(1);
    isolate.tiers.clear(t0 + POLL + 2);
    pollAnswered.release();
    await isolate.settle();
    expect(puts()).toBe(1);
    expect((await snapshotIn(cache))?.body.polledAt).toBe(t0);

    // The next lookup waits for a poll of its own; that one makes the view current and shares it.
    await isolate.tiers.lookup(env.DB, NO_KEY, t0 + POLL + 3);
    await isolate.settle();
    expect(puts()).toBe(2);
    expect((await snapshotIn(cache))?.body.polledAt).toBe(t0 + POLL + 3);
  });

  it("writes at most one snapshot per poll interval, and none while the entry key has not loaded", async () => {
    const t0 = Date.now();
    const { cache, puts } = countingSnapshotPuts(await freshCache());
    // The entry key loads only when the test says so: the first poll's view is not shared.
    const keyLoaded = deferred();
    const isolate = otherIsolate({
      cache,
      shareFeedView: true,
      entryKeyAtHand: false,
      entryKey: () => keyLoaded.promise.then(deploymentEntryKey),
    });
    await isolate.tiers.lookup(env.DB, NO_KEY, t0);
    expect(puts()).toBe(0);
    keyLoaded.release();
    await isolate.settle();
    expect(puts()).toBe(0);

    // Polls forced within an interval (invalidations) share once; the first poll past the interval again.
    for (const at of [t0 + POLL + 1, t0 + POLL + 3, t0 + 2 * POLL]) {
      isolate.tiers.clear(at - 1);
      await isolate.tiers.lookup(env.DB, NO_KEY, at);
      await isolate.settle();
    }
    expect(puts()).toBe(1);
    expect((await snapshotIn(cache))?.body.polledAt).toBe(t0 + POLL + 1);
    isolate.tiers.clear(t0 + 2 * POLL + 1);
    await isolate.tiers.lookup(env.DB, NO_KEY, t0 + 2 * POLL + 2);
    await isolate.settle();
    expect(puts()).toBe(2);
  });
});

describe("a snapshot that is not of this feed, or not a snapshot at all", () => {
  it("drops an adopted view that is not of this feed (another deployment's with the same secret, or a restore that rewound it) at its first poll, and reloads the window from D1 (threat model case 11)", async () => {
    const tenant = await createTenant("feed view of another feed");
    const t0 = Date.now();
    const { key, hash, location } = await revokedWithStaleEntry(tenant, t0);
    // Authentic (MACed under this deployment's entry key) but of a feed whose head is far ahead of this one's,
    // with none of this feed's changes: the revocation is below its head, so reading on from there skips it.
    const head = (await latestChange()) + 1_000;
    const text = JSON.stringify({
      v: 1,
      polledAt: t0 + 10,
      floor: 0,
      head,
      changes: [[head, "f".repeat(16)]],
    });
    await plant(
      location,
      FEED_VIEW_URL,
      text,
      await macOf(await deploymentEntryKey(), feedViewMacInput(text)),
    );

    const fresh = freshIsolate(readOnly(location));
    const adopting = observedD1();
    await fresh.tiers.lookup(adopting.db, NO_KEY, t0 + 20);
    expect(adopting.reads.window).toBe(0);
    // Its follow-up poll does not find the view's newest change in this feed: the view is dropped.
    await fresh.settle();
    expect(adopting.reads.since).toBe(1);

    const after = observedD1();
    expect(await fresh.tiers.lookup(after.db, hash, t0 + 30)).toMatchObject({ id: key.id, revoked: true });
    expect(after.reads.window).toBe(1);
    await fresh.settle();
  });

  it("refuses an authentic body larger than any snapshot it writes, and loads the window from D1", async () => {
    const t0 = Date.now();
    const location = await freshCache();
    const head = (await latestChange()) + 70_000;
    // 70,000 changes (the window holds 20,000): over 1 MiB of JSON, well-formed and MACed.
    const changes = Array.from({ length: 70_000 }, (_, i): [number, string] => [
      head - 70_000 + i + 1,
      i.toString(16).padStart(16, "0"),
    ]);
    const text = JSON.stringify({ v: 1, polledAt: t0, floor: 0, head, changes });
    expect(text.length).toBeGreaterThan(1024 * 1024);
    await plant(
      location,
      FEED_VIEW_URL,
      text,
      await macOf(await deploymentEntryKey(), feedViewMacInput(text)),
    );

    const d1 = observedD1();
    await freshIsolate(readOnly(location)).tiers.lookup(d1.db, NO_KEY, t0 + 10);
    expect(d1.reads.window).toBe(1);
  });
});
