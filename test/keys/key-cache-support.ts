/**
 * "Another isolate" for the key cache tests: its own LRU and view of the change feed over the real D1 and a
 * real Cache API cache, with its clock given per lookup and its background work (polls, cache puts and
 * deletes) collected, so a test waits for exactly that work instead of sleeping.
 */
import { env } from "cloudflare:workers";
import { keyCacheMacKey } from "../../src/keys/key-cache-mac-key";
import { KeyCacheTiers } from "../../src/keys/key-cache-tier";
import { hashPrefix, KeyChangeFeed, type KeyChangeFeedOptions } from "../../src/keys/key-change-feed";
import { toKeyRecord } from "../../src/keys/key-record";
import { countRows } from "../helpers/db";

export interface OtherIsolate {
  tiers: KeyCacheTiers;
  /** Waits for the background work started so far (and any it starts in turn). */
  settle(): Promise<void>;
}

/** The deployment's entry key, as the Worker loads it (read through the real binding, not a counting one). */
export const deploymentEntryKey = (): Promise<CryptoKey> => keyCacheMacKey(env, env.DB);

export function otherIsolate(
  options: {
    feed?: Partial<KeyChangeFeedOptions>;
    cache?: Cache;
    /** The Cache API entries' MAC key; the deployment's by default. */
    entryKey?: () => Promise<CryptoKey>;
    /**
     * Share the view of the change feed through the location's cache (src/keys/feed-view-snapshot.ts), as the
     * Worker does, with the entry key at hand (derived) unless `entryKeyAtHand` is false. Off by default, so
     * the other tests see one isolate's own view.
     */
    shareFeedView?: boolean;
    entryKeyAtHand?: boolean;
  } = {},
): OtherIsolate {
  const pending: Promise<unknown>[] = [];
  const tiers = new KeyCacheTiers(
    new KeyChangeFeed(options.feed),
    {
      cache: () => options.cache ?? null,
      entryKey: options.entryKey ?? deploymentEntryKey,
      entryKeyAtHand: () => options.entryKeyAtHand ?? true,
      shareFeedView: options.shareFeedView ?? false,
      keepAlive: (promise) => void pending.push(promise),
    },
    toKeyRecord,
  );
  return {
    tiers,
    async settle() {
      while (pending.length > 0) await Promise.all(pending.splice(0));
    },
  };
}

/**
 * Another isolate that has loaded its entry key already, as one that has served requests before: its misses
 * ask the location's cache (a fresh isolate's first misses read D1 while the key loads).
 */
export async function runningIsolate(
  options: Parameters<typeof otherIsolate>[0] = {},
): Promise<OtherIsolate> {
  const isolate = otherIsolate(options);
  if (!(await isolate.tiers.loadEntryKey(env.DB))) throw new Error("the entry key did not load");
  return isolate;
}

/** A location cache of the test's own, so no other test (nor the app's caches.default) shares its entries. */
let cachesOpened = 0;
export function freshCache(): Promise<Cache> {
  cachesOpened += 1;
  return caches.open(`key-cache-test-${Date.now()}-${cachesOpened}`);
}

/**
 * A location cache of the test's own holding the entries of `hashes`, as another isolate's lookups at `now`
 * wrote them (its background cache puts waited for).
 */
export async function locationHolding(hashes: readonly string[], now: number): Promise<Cache> {
  const location = await freshCache();
  const writer = otherIsolate({ cache: location });
  for (const hash of hashes) await writer.tiers.lookup(env.DB, hash, now);
  await writer.settle();
  return location;
}

export interface D1Counts {
  /** Statements reading api_keys, on the primary or through a session. */
  primaryKeyReads: number;
  sessionKeyReads: number;
  /** Statements reading key_changes alone (the window load and the polls). */
  feedReads: number;
}

/**
 * A read replica stand-in for the Sessions API: answers each statement with `answer` and says it is not the
 * primary, as a lagging replica would.
 */
export type ReplicaAnswer = (sql: string, params: unknown[]) => Promise<Record<string, unknown>>;

/** A replica frozen at the state each key had when the replica first answered for it. */
export function frozenReplica(): ReplicaAnswer {
  const seen = new Map<string, Record<string, unknown>>();
  return async (sql, params) => {
    const id = `${sql}\n${JSON.stringify(params)}`;
    let row = seen.get(id);
    if (!row) {
      row = (await env.DB.prepare(sql)
        .bind(...params)
        .first<Record<string, unknown>>()) as Record<string, unknown>;
      seen.set(id, row);
    }
    return row;
  };
}

/** A replica from before the key existed: no row for it, and an older feed head. */
export const replicaWithoutTheKey: ReplicaAnswer = async () => ({ feed_head: 0, id: null });

function replicaStatement(answer: ReplicaAnswer, sql: string, params: unknown[] = []): D1PreparedStatement {
  const statement = {
    bind: (...values: unknown[]) => replicaStatement(answer, sql, values),
    all: async () => ({
      success: true,
      results: [await answer(sql, params)],
      meta: { served_by_primary: false },
    }),
  };
  return statement as unknown as D1PreparedStatement;
}

/**
 * The real D1 binding, counting the statements that reach it; sessions answer from `replica` when given, and
 * with `feedDown` every read of the change feed fails.
 */
export function countingD1(
  replica?: ReplicaAnswer,
  options: { feedDown?: boolean } = {},
): { db: D1Database; counts: D1Counts } {
  const counts: D1Counts = { primaryKeyReads: 0, sessionKeyReads: 0, feedReads: 0 };
  const count = (sql: string, viaSession: boolean) => {
    if (sql.includes("api_keys")) {
      if (viaSession) counts.sessionKeyReads += 1;
      else counts.primaryKeyReads += 1;
    } else if (sql.includes("key_changes")) counts.feedReads += 1;
  };
  const db = {
    prepare(sql: string) {
      count(sql, false);
      if (options.feedDown && !sql.includes("api_keys")) throw new Error("D1 is unreachable (test)");
      return env.DB.prepare(sql);
    },
    withSession(constraint?: D1SessionConstraint) {
      const session = env.DB.withSession(constraint);
      return {
        prepare(sql: string) {
          count(sql, true);
          return replica ? replicaStatement(replica, sql) : session.prepare(sql);
        },
        getBookmark: () => session.getBookmark(),
      };
    },
  };
  return { db: db as unknown as D1Database, counts };
}

export interface CacheCounts {
  match: number;
  put: number;
  delete: number;
}

/** A Cache API cache, counting the calls made on it. */
export function countingCache(inner: Cache): { cache: Cache; counts: CacheCounts } {
  const counts: CacheCounts = { match: 0, put: 0, delete: 0 };
  const cache = {
    match(request: RequestInfo | URL) {
      counts.match += 1;
      return inner.match(request);
    },
    put(request: RequestInfo | URL, response: Response) {
      counts.put += 1;
      return inner.put(request, response);
    },
    delete(request: RequestInfo | URL) {
      counts.delete += 1;
      return inner.delete(request);
    },
  };
  return { cache: cache as unknown as Cache, counts };
}

/** The feed's latest change (to `hash` when given), or 0. */
export async function latestChange(hash?: string): Promise<number> {
  const statement = env.DB.prepare(
    `SELECT coalesce(max(seq), 0) AS seq FROM key_changes${hash ? " WHERE hash_prefix = ?" : ""}`,
  );
  const row = await (hash ? statement.bind(hashPrefix(hash)) : statement).first<{ seq: number }>();
  return row?.seq ?? 0;
}

/** Changes logged after `after` under any of `hashes`. */
export function changesSince(after: number, ...hashes: string[]): Promise<number> {
  const prefixes = hashes.map(hashPrefix);
  const placeholders = prefixes.map((_, i) => `?${i + 2}`).join(", ");
  return countRows("key_changes", `seq > ?1 AND hash_prefix IN (${placeholders})`, after, ...prefixes);
}
