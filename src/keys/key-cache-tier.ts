/**
 * The tiers behind POST /keys/verify's key lookups (and its caller's cached authentication), nearest first:
 * the isolate's bounded LRU, the location's Workers Cache API (entries MACed: the cache is shared by every
 * Worker on the zone), then D1 through the Sessions API (a read replica may answer). Every entry carries the
 * change feed's head it was read at, and is served only while the isolate's view of the feed vouches for it
 * (src/keys/key-change-feed.ts); that view is shared through the location's cache too
 * (src/keys/feed-view-snapshot.ts). Management authentication never comes here: it reads the primary
 * (src/keys/key-record.ts, threat model case 29).
 */
import { getTableColumns } from "drizzle-orm";
import { BoundedCache } from "../cache/bounded-cache";
import { apiKeys } from "../db/schema";
import { matchFeedView, putFeedView } from "./feed-view-snapshot";
import { KEY_CACHE_ORIGIN, keyCacheMacInput, matchMaced, putMaced } from "./key-cache-mac-key";
import {
  type FeedSnapshot,
  type FeedStamped,
  hashPrefix,
  type KeepAlive,
  type KeyChangeFeed,
} from "./key-change-feed";
import type { KeyRecord } from "./key-record";

/** A verify answer as the tiers hold it: the record (null: no such key) and the feed stamp it was read at. */
export interface CachedKey extends FeedStamped {
  record: KeyRecord | null;
}

/** The Cache API entry's body: nothing beyond the KeyRecord (no hash, no tenant policy) and the stamp. */
interface CacheBody {
  v: 1;
  seq: number;
  readAt: number;
  record: KeyRecord | null;
}

/**
 * The largest Cache API entry read: a KeyRecord is a few hundred bytes, and the API's 64 KiB body cap bounds
 * what a key can carry.
 */
const KEY_ENTRY_MAX_BYTES = 64 * 1024;
/** Capacity of the isolate's LRU (entries, hits and misses alike). */
export const KEY_LRU_CAPACITY = 10_000;
/**
 * Entries are MACed under this deployment's entry key over `v1 \n <key hash> \n <body>`
 * (src/keys/key-cache-mac-key.ts), and served only if the MAC verifies: the cache is shared by every Worker on
 * the zone, so whatever it returns may have been written by one of them.
 */
const CACHE_HEADERS = { "cache-control": "max-age=86400", "content-type": "application/json" };

/**
 * The key row and the feed's head in one statement, so both come from one snapshot of whichever database
 * instance answers: a replica behind the primary returns an older head together with the older row.
 */
const READ_KEY_SQL = `SELECT h.feed_head, k.* FROM (SELECT coalesce(max(seq), 0) AS feed_head FROM key_changes) AS h
  LEFT JOIN api_keys AS k ON k.hash = ?1`;

const KEY_COLUMNS = Object.entries(getTableColumns(apiKeys));
type KeyRow = typeof apiKeys.$inferSelect;

/** A raw api_keys row as drizzle would map it (JSON and boolean columns decoded). */
function keyRowFrom(raw: Record<string, unknown>): KeyRow {
  const row: Record<string, unknown> = {};
  for (const [property, column] of KEY_COLUMNS) {
    const value = raw[column.name];
    row[property] = value === null || value === undefined ? null : column.mapFromDriverValue(value);
  }
  return row as KeyRow;
}

export interface KeyCacheTierIo {
  /** The location's cache (caches.default in the Worker); null turns the tier off. */
  cache(): Cache | null;
  /**
   * The HMAC key that authenticates the cache's entries (keyCacheMacKey in the Worker), loaded once per
   * isolate. Until it has loaded, lookups skip the Cache API tier (they read D1 rather than wait for it, unless
   * it is at hand); while it cannot be loaded (a malformed secret, a sealed keyring) nothing is put either.
   */
  entryKey(d1: D1Database): Promise<CryptoKey>;
  /**
   * Whether the entry key loads with no I/O (derived from a master secret: microseconds of CPU). Only then do an
   * isolate's first lookups and its first poll (which asks the location for a snapshot of the feed) wait for it;
   * a stored key (Vault only) takes D1 reads and a Vault call, longer than the D1 reads it would save.
   */
  entryKeyAtHand?(): boolean;
  /**
   * Share the isolate's view of the change feed through the location's cache (src/keys/feed-view-snapshot.ts):
   * write a snapshot after polls, and start from a recent one instead of loading the window from D1.
   */
  shareFeedView?: boolean;
  keepAlive: KeepAlive;
}

interface Read {
  entry: CachedKey;
  fromPrimary: boolean;
}

export class KeyCacheTiers {
  private readonly lru: BoundedCache<CachedKey>;
  /** The entry key once loading has started; null before, and after a failure until the retry is due. */
  private macKey: Promise<CryptoKey | null> | null = null;
  /** The entry key once it has loaded: only then do lookups ask the Cache API. */
  private macKeyLoaded: CryptoKey | null = null;
  private macKeyFailedAt = Number.NEGATIVE_INFINITY;
  /**
   * The miss in flight per key hash (single flight): a popular key's first requests in a fresh isolate share
   * one read instead of each queueing its own D1 round trip. A change this isolate makes drops the hash's
   * entry, so no lookup after the change joins a read that started before it.
   */
  private readonly inFlight = new Map<string, Promise<CachedKey>>();

  constructor(
    readonly feed: KeyChangeFeed,
    private readonly io: KeyCacheTierIo,
    private readonly toRecord: (row: KeyRow) => KeyRecord,
  ) {
    this.lru = new BoundedCache<CachedKey>(KEY_LRU_CAPACITY, feed.options.maxEntryAgeMs);
    if (io.shareFeedView) {
      feed.shareViewsThrough({
        read: (d1, now) => this.readFeedView(d1, now),
        write: (snapshot) => this.writeFeedView(snapshot),
      });
    }
  }

  /**
   * The record for a key hash, or null. A hit in the isolate is the LRU's Map lookup and the feed's check (no
   * I/O, no allocation) and, once per poll interval, the start of a background poll.
   */
  async lookup(d1: D1Database, hash: string, now = Date.now()): Promise<KeyRecord | null> {
    this.feed.tick(d1, now, this.io.keepAlive);
    const hit = this.lru.get(hash, now);
    if (hit !== undefined && this.feed.vouches(hit, now)) return hit.record;
    const pending = this.inFlight.get(hash);
    if (pending !== undefined) {
      // The shared read may have started before a change and answered after the bound (a slow D1, a slow
      // poll): a lookup that joined it is served its answer only as a hit at its own arrival would be.
      const shared = await pending;
      if (this.feed.vouches(shared, now)) return shared.record;
    }
    const read = this.miss(d1, hash, now).finally(() => {
      if (this.inFlight.get(hash) === read) this.inFlight.delete(hash);
    });
    this.inFlight.set(hash, read);
    // Other requests may await this read: it must finish even if the request that started it is cancelled,
    // since workerd ends a request's I/O with it.
    this.io.keepAlive(read.catch(() => undefined));
    return (await read).record;
  }

  /** This isolate changed the key: drop its entries here and in the location's cache. */
  forget(hash: string, now = Date.now()): void {
    this.lru.delete(hash);
    this.inFlight.delete(hash);
    this.feed.noteLocalChange(hashPrefix(hash), now);
    const cache = this.io.cache();
    if (cache) this.io.keepAlive(cache.delete(cacheUrl(hash)).catch(() => false));
  }

  /** A change to keys this isolate cannot name (a tenant's erasure): nothing cached is served before a poll. */
  clear(now = Date.now()): void {
    this.lru.clear();
    this.inFlight.clear();
    this.feed.invalidate(now);
  }

  private async miss(d1: D1Database, hash: string, now: number): Promise<CachedKey> {
    const prefix = hashPrefix(hash);
    if (this.feed.changedHere(prefix))
      return this.remember(d1, hash, (await this.read(d1, hash, prefix, now)).entry);
    const current = this.feed.current(d1, now, this.io.keepAlive);
    const cache = this.io.cache();
    // A lookup waits for the entry key only when it is at hand (derived: microseconds). A stored key (Vault
    // only) is not waited for: until it has loaded (an isolate's first lookups, alongside the feed's window)
    // the miss reads D1 as if the cache were off, and the put below waits for it off the response path.
    const key = cache ? await this.usableEntryKey(d1, now) : null;
    const cached = cache && key ? await matchEntry(cache, key, hash, prefix) : null;
    if (cached && (await current) && this.feed.vouches(cached, now)) {
      this.lru.set(hash, cached, cached.readAt);
      return cached;
    }
    // A superseded Cache API entry is overwritten by the put below. The replica read runs alongside a
    // view that is still loading (an isolate's first lookup).
    const [viewCurrent, read] = await Promise.all([
      current,
      this.read(d1.withSession("first-unconstrained"), hash, prefix, now),
    ]);
    let { entry } = read;
    if (!read.fromPrimary && (entry.record === null || !viewCurrent || !this.feed.vouches(entry, now))) {
      // A replica's NOT_FOUND may predate the key's creation, so a new key verifies at once only if the
      // primary confirms it; a replica's record is used only when the view vouches it is not superseded.
      entry = (await this.read(d1, hash, prefix, now)).entry;
    }
    return this.remember(d1, hash, entry, cache);
  }

  /**
   * The entry key, loading it on first use. A failed load resolves to null (the tier fails closed to D1) and
   * is retried after a poll interval, so a sealed keyring (Vault only) does not add a keyring read to every miss.
   */
  private entryKey(d1: D1Database, now: number): Promise<CryptoKey | null> | null {
    if (this.macKey === null) {
      if (now - this.macKeyFailedAt < this.feed.options.pollIntervalMs) return null;
      this.macKey = this.io.entryKey(d1).then(
        (key) => {
          this.macKeyLoaded = key;
          return key;
        },
        () => {
          this.macKey = null;
          this.macKeyFailedAt = now;
          return null;
        },
      );
      // Loaded once for every later request of the isolate: it must not die with the request that started it
      // (no lookup awaits it, only the background puts).
      this.io.keepAlive(this.macKey);
    }
    return this.macKey;
  }

  /**
   * Loads the entry key ahead of the isolate's first miss (which otherwise starts the load and reads D1 while
   * it runs). Resolves to whether it has loaded, that is whether misses now ask the location's cache.
   */
  async loadEntryKey(d1: D1Database, now = Date.now()): Promise<boolean> {
    return this.macKeyLoaded !== null || (await this.entryKey(d1, now)) !== null;
  }

  /**
   * The location's snapshot of the feed, if its MAC verifies under the entry key. Waits for the key only when it
   * is at hand (derived), as a lookup does; otherwise, until it has loaded, there is no snapshot to read.
   */
  private async readFeedView(d1: D1Database, now: number): Promise<FeedSnapshot | null> {
    const cache = this.io.cache();
    if (!cache) return null;
    const key = await this.usableEntryKey(d1, now);
    return key ? matchFeedView(cache, key) : null;
  }

  /** Stores the view's snapshot once the entry key has loaded (never waiting for it). */
  private async writeFeedView(snapshot: FeedSnapshot): Promise<void> {
    const cache = this.io.cache();
    if (cache && this.macKeyLoaded) await putFeedView(cache, this.macKeyLoaded, snapshot);
  }

  /**
   * The entry key if it has loaded, or once its load (started, or retried when due) ends if the key is at hand
   * (derived), so waiting for it costs microseconds; null while a stored key (Vault only) loads in the background.
   */
  private async usableEntryKey(d1: D1Database, now: number): Promise<CryptoKey | null> {
    if (this.macKeyLoaded !== null) return this.macKeyLoaded;
    const loading = this.entryKey(d1, now);
    return this.io.entryKeyAtHand?.() ? await loading : null;
  }

  private async read(
    db: D1Database | D1DatabaseSession,
    hash: string,
    prefix: string,
    now: number,
  ): Promise<Read> {
    const { results, meta } = await db.prepare(READ_KEY_SQL).bind(hash).all<Record<string, unknown>>();
    const raw = results[0];
    if (!raw) throw new Error("the key lookup returned no row");
    const record = raw.id === null || raw.id === undefined ? null : this.toRecord(keyRowFrom(raw));
    return {
      entry: { record, seq: Number(raw.feed_head), readAt: now, prefix },
      // Statements on the binding itself run on the primary; a session's say where they were answered.
      fromPrimary: meta.served_by_primary === true,
    };
  }

  private remember(d1: D1Database, hash: string, entry: CachedKey, cache = this.io.cache()): CachedKey {
    this.lru.set(hash, entry, entry.readAt);
    if (cache) {
      const key = this.entryKey(d1, entry.readAt);
      if (key) this.io.keepAlive(putEntry(cache, key, hash, entry).catch(() => undefined));
    }
    return entry;
  }
}

/** Signs and stores an entry, off the response path; with no entry key nothing is stored. */
async function putEntry(
  cache: Cache,
  key: Promise<CryptoKey | null>,
  hash: string,
  entry: CachedKey,
): Promise<void> {
  const macKey = await key;
  if (!macKey) return;
  const body: CacheBody = { v: 1, seq: entry.seq, readAt: entry.readAt, record: entry.record };
  const text = JSON.stringify(body);
  await putMaced(cache, cacheUrl(hash), macKey, text, keyCacheMacInput(hash, text), CACHE_HEADERS);
}

/**
 * An entry's URL: its path is the key's SHA-256, which D1 stores too and which is no credential (threat model
 * case 10). The entry's MAC binds the hash, so an authentic entry copied under another key's URL is refused
 * (the cache-side twin of AAD binding, threat model case 3).
 */
export function cacheUrl(hash: string): string {
  return `${KEY_CACHE_ORIGIN}/v1/${hash}`;
}

/** The entry under the key's URL if its MAC verifies for this hash; anything else is a miss. */
async function matchEntry(
  cache: Cache,
  macKey: CryptoKey,
  hash: string,
  prefix: string,
): Promise<CachedKey | null> {
  const body = await matchMaced(
    cache,
    cacheUrl(hash),
    macKey,
    (text) => keyCacheMacInput(hash, text),
    KEY_ENTRY_MAX_BYTES,
  );
  if (!isCacheBody(body)) return null;
  return { record: body.record, seq: body.seq, readAt: body.readAt, prefix };
}

/** The shape check of what an authentic entry holds (an older format is a miss). */
function isCacheBody(value: unknown): value is CacheBody {
  if (typeof value !== "object" || value === null) return false;
  const body = value as Partial<CacheBody>;
  if (body.v !== 1 || !Number.isSafeInteger(body.seq) || !Number.isFinite(body.readAt)) return false;
  const record = body.record;
  if (record === null) return true;
  return (
    typeof record === "object" &&
    record !== undefined &&
    typeof record.id === "string" &&
    typeof record.tenantId === "string" &&
    typeof record.enabled === "boolean" &&
    typeof record.revoked === "boolean" &&
    Array.isArray(record.scopes) &&
    !("tenantFence" in record)
  );
}
