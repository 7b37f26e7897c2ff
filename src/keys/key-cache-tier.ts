/**
 * The tiers behind POST /keys/verify's key lookups (and its caller's cached authentication), nearest first:
 * the isolate's bounded LRU, the location's Workers Cache API, then D1 through the Sessions API (a read
 * replica may answer). Every entry carries the change feed's head it was read at, and is served only while
 * the isolate's view of the feed vouches for it (src/keys/key-change-feed.ts). Management authentication
 * never comes here: it reads the primary (src/keys/key-record.ts, threat model case 29).
 */
import { getTableColumns } from "drizzle-orm";
import { BoundedCache } from "../cache/bounded-cache";
import { apiKeys } from "../db/schema";
import { type FeedStamped, hashPrefix, type KeepAlive, type KeyChangeFeed } from "./key-change-feed";
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

/** Capacity of the isolate's LRU (entries, hits and misses alike). */
export const KEY_LRU_CAPACITY = 10_000;
/**
 * Cache API entries live under this host, which nothing serves: the URL is only a cache key. Its path is the
 * key's SHA-256, which D1 stores too and which is no credential (threat model case 10).
 */
export const KEY_CACHE_ORIGIN = "https://key-cache.keywarden.invalid";
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
  keepAlive: KeepAlive;
}

interface Read {
  entry: CachedKey;
  fromPrimary: boolean;
}

export class KeyCacheTiers {
  private readonly lru: BoundedCache<CachedKey>;

  constructor(
    readonly feed: KeyChangeFeed,
    private readonly io: KeyCacheTierIo,
    private readonly toRecord: (row: KeyRow) => KeyRecord,
  ) {
    this.lru = new BoundedCache<CachedKey>(KEY_LRU_CAPACITY, feed.options.maxEntryAgeMs);
  }

  /**
   * The record for a key hash, or null. A hit in the isolate is the LRU's Map lookup and the feed's check (no
   * I/O, no allocation) and, once per poll interval, the start of a background poll.
   */
  async lookup(d1: D1Database, hash: string, now = Date.now()): Promise<KeyRecord | null> {
    this.feed.tick(d1, now, this.io.keepAlive);
    const hit = this.lru.get(hash, now);
    if (hit !== undefined && this.feed.vouches(hit, now)) return hit.record;
    return (await this.miss(d1, hash, now)).record;
  }

  /** This isolate changed the key: drop its entries here and in the location's cache. */
  forget(hash: string, now = Date.now()): void {
    this.lru.delete(hash);
    this.feed.noteLocalChange(hashPrefix(hash), now);
    const cache = this.io.cache();
    if (cache) this.io.keepAlive(cache.delete(cacheUrl(hash)).catch(() => false));
  }

  /** A change to keys this isolate cannot name (a tenant's erasure): nothing cached is served before a poll. */
  clear(now = Date.now()): void {
    this.lru.clear();
    this.feed.invalidate(now);
  }

  private async miss(d1: D1Database, hash: string, now: number): Promise<CachedKey> {
    const prefix = hashPrefix(hash);
    if (this.feed.changedHere(prefix))
      return this.remember(hash, (await this.read(d1, hash, prefix, now)).entry);
    const current = this.feed.current(d1, now, this.io.keepAlive);
    const cache = this.io.cache();
    const cached = cache ? await matchEntry(cache, hash, prefix) : null;
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
    return this.remember(hash, entry, cache);
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

  private remember(hash: string, entry: CachedKey, cache = this.io.cache()): CachedKey {
    this.lru.set(hash, entry, entry.readAt);
    if (cache) {
      const body: CacheBody = { v: 1, seq: entry.seq, readAt: entry.readAt, record: entry.record };
      const response = new Response(JSON.stringify(body), { headers: CACHE_HEADERS });
      this.io.keepAlive(cache.put(cacheUrl(hash), response).catch(() => undefined));
    }
    return entry;
  }
}

export function cacheUrl(hash: string): string {
  return `${KEY_CACHE_ORIGIN}/v1/${hash}`;
}

async function matchEntry(cache: Cache, hash: string, prefix: string): Promise<CachedKey | null> {
  const response = await cache.match(cacheUrl(hash));
  if (!response) return null;
  const body: unknown = await response.json().catch(() => null);
  if (!isCacheBody(body)) return null;
  return { record: body.record, seq: body.seq, readAt: body.readAt, prefix };
}

/** The shape check of what the cache returned; anything else is a miss. */
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
