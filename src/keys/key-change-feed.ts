/**
 * The isolate's view of the key change feed (migration 0011's `key_changes`, written by triggers on api_keys).
 * A cached verify answer carries the feed head it was read at; it may be served only while this view vouches
 * that no change to its key came after it, so a change reaches every isolate within one poll, however long an
 * entry lives. docs/keys.md "Caching and the propagation bound" states the bound; this file enforces it.
 */

/** How often a serving isolate asks the feed for changes (in the background, off the response path). */
export const KEY_FEED_POLL_INTERVAL_MS = 5_000;
/**
 * The revocation propagation bound: no cached answer is served on a view of the feed older than this, so a
 * change committed at t is refused everywhere from t + this on, even when polls fail (a lookup then reads D1).
 * An isolate that serves traffic polls every KEY_FEED_POLL_INTERVAL_MS, so it usually sees a change within
 * that plus one D1 read.
 */
export const KEY_PROPAGATION_BOUND_MS = 30_000;
/** An answer read from D1 is served from a cache for at most this long. */
export const KEY_ENTRY_MAX_AGE_MS = 86_400_000;
/**
 * Rows the cron keeps: twice the entry age, so every change that postdates a servable entry is still in the
 * table when a fresh isolate loads its window (with a day's margin for the Worker's and D1's clocks).
 */
export const KEY_CHANGE_RETENTION_MS = 2 * KEY_ENTRY_MAX_AGE_MS;
/** Changes one isolate holds (the window loaded at start, and the most recent ones after). */
export const KEY_FEED_WINDOW = 20_000;
/** Characters of the key's hex SHA-256 that name it in the feed (the triggers' substr(hash, 1, 16)). */
export const HASH_PREFIX_LENGTH = 16;
/**
 * How far a snapshot's poll time may disagree with this isolate's clock: a snapshot stamped further ahead is
 * refused, and an adopted view counts as polled this much before the snapshot says (the clocks of one location
 * are NTP-synchronized, far closer than this), so another machine's clock running ahead cannot make a view
 * look fresher than it is.
 */
export const FEED_VIEW_CLOCK_TOLERANCE_MS = 1_000;
/** Pages of changes one poll may read before it gives up being current (a bulk import, say). */
const MAX_POLL_PAGES = 5;

export function hashPrefix(hash: string): string {
  return hash.slice(0, HASH_PREFIX_LENGTH);
}

/** What a cache holds for a key hash: the record (or null for unknown) as of feed head `seq`. */
export interface FeedStamped {
  /** The feed's `max(seq)` read in the same SQL statement as the key row: a consistent snapshot. */
  seq: number;
  /** When the read that produced it started, on the Worker's clock. */
  readAt: number;
  /** hashPrefix of the key's hash, kept so a cache hit allocates nothing. */
  prefix: string;
}

export interface KeyChangeFeedOptions {
  window: number;
  pollIntervalMs: number;
  hardBoundMs: number;
  maxEntryAgeMs: number;
}

const DEFAULTS: KeyChangeFeedOptions = {
  window: KEY_FEED_WINDOW,
  pollIntervalMs: KEY_FEED_POLL_INTERVAL_MS,
  hardBoundMs: KEY_PROPAGATION_BOUND_MS,
  maxEntryAgeMs: KEY_ENTRY_MAX_AGE_MS,
};

type ChangeRow = [seq: number, prefix: string];

/** Keeps the promise alive past the response (ctx.waitUntil); the caller supplies the request's. */
export type KeepAlive = (promise: Promise<unknown>) => void;

/** A view of the feed as one isolate's poll left it: every change committed before `polledAt` is in it. */
export interface FeedSnapshot {
  /** Start of the poll that made the view current, on the writer's clock. */
  polledAt: number;
  floor: number;
  head: number;
  /** The latest change per hash prefix, oldest first (the feed's rows, as `latest` holds them). */
  changes: ChangeRow[];
}

/**
 * Where views are shared with the location's other isolates (src/keys/feed-view-snapshot.ts, through the
 * tiers' Cache API and entry key). `read` resolves to null when there is none it can vouch for.
 */
export interface FeedSnapshotStore {
  read(d1: D1Database, now: number): Promise<FeedSnapshot | null>;
  write(snapshot: FeedSnapshot): Promise<void>;
}

export class KeyChangeFeed {
  readonly options: KeyChangeFeedOptions;
  /** Latest change seq per hash prefix; Map order is seq order, so the oldest is first. */
  private readonly latest = new Map<string, number>();
  /** Every change with a seq above `floor` is in `latest` (or was superseded there by a later one). */
  private floor = 0;
  /** The highest seq read, and the hash prefix of that change: a poll checks the feed still holds it. */
  private head = 0;
  private headPrefix: string | null = null;
  private loaded = false;
  /** Start time of the last poll that read up to the feed's head: every change committed before it is known. */
  private polledAt = Number.NEGATIVE_INFINITY;
  private inFlight: Promise<void> | null = null;
  /** Polls that started before this time do not make the view current (see invalidate). */
  private invalidatedAt = Number.NEGATIVE_INFINITY;
  /** Prefixes this isolate changed itself, with when: read from the primary until a later poll has them. */
  private readonly localChanges = new Map<string, number>();
  private snapshots: FeedSnapshotStore | null = null;
  /** polledAt of the last snapshot written: one per poll interval at most. */
  private sharedAt = Number.NEGATIVE_INFINITY;
  /** Cleared once a poll found the view is not of this feed: from then on the window is loaded from D1. */
  private adoptSnapshots = true;

  constructor(options: Partial<KeyChangeFeedOptions> = {}) {
    this.options = { ...DEFAULTS, ...options };
  }

  /**
   * Whether a cached entry may be served at `now`: the view is within the hard bound, it covers the entry's
   * seq, it holds no later change for the entry's key, the entry is younger than the maximum age, and this
   * isolate has not itself just changed the key. Allocates nothing (the verify hit path runs it).
   */
  vouches(entry: FeedStamped, now: number): boolean {
    if (now - this.polledAt > this.options.hardBoundMs) return false;
    if (entry.seq < this.floor || now - entry.readAt >= this.options.maxEntryAgeMs) return false;
    if (this.localChanges.size > 0 && this.localChanges.has(entry.prefix)) return false;
    const changed = this.latest.get(entry.prefix);
    return changed === undefined || changed <= entry.seq;
  }

  /** Whether lookups for this prefix must read the primary (this isolate changed the key, no poll has it yet). */
  changedHere(prefix: string): boolean {
    return this.localChanges.size > 0 && this.localChanges.has(prefix);
  }

  isCurrent(now: number): boolean {
    return now - this.polledAt <= this.options.hardBoundMs;
  }

  /** Shares this view with the location's other isolates, and starts from theirs (see pollFirst). */
  shareViewsThrough(store: FeedSnapshotStore): void {
    this.snapshots = store;
  }

  /** Starts a background poll when one is due. Cheap when none is: the verify hit path calls it. */
  tick(d1: D1Database, now: number, keepAlive: KeepAlive): void {
    if (now - this.polledAt > this.options.pollIntervalMs && this.inFlight === null) {
      keepAlive(this.poll(d1, now, keepAlive));
    }
  }

  /**
   * Makes the view current, waiting for the poll (one per isolate at a time) if it is older than the hard
   * bound. False when the poll failed or took too long: the caller must then read the primary.
   */
  async current(d1: D1Database, now: number, keepAlive: KeepAlive): Promise<boolean> {
    if (this.isCurrent(now)) return true;
    if (this.inFlight === null) keepAlive(this.poll(d1, now, keepAlive));
    await this.inFlight;
    return this.isCurrent(now);
  }

  /**
   * Reads the changes since the view's head; the first call starts from the location's snapshot or loads the
   * recent window instead. A view adopted from a snapshot is brought up to date by a second poll, which starts
   * as this one ends: lookups waiting for this one do not wait for it.
   */
  poll(d1: D1Database, now: number, keepAlive: KeepAlive): Promise<void> {
    if (this.inFlight !== null) return this.inFlight;
    const run = (this.loaded ? this.readSince(d1, now) : this.pollFirst(d1, now)).then(
      (made) => {
        this.inFlight = null;
        if (made === "adopted") keepAlive(this.poll(d1, now, keepAlive));
        else if (made === "current") this.share(now, keepAlive);
      },
      () => {
        // A failed poll leaves the view as it was: once it is older than the hard bound, lookups read D1.
        this.inFlight = null;
      },
    );
    this.inFlight = run;
    return run;
  }

  /** This isolate committed a change to the key: its entries are refused until a later poll has the change. */
  noteLocalChange(prefix: string, now: number): void {
    if (this.localChanges.size >= this.options.window) {
      // A bulk change (an import) with no verify here to poll: stop trusting the view instead of growing.
      this.localChanges.clear();
      this.invalidate(now);
    }
    this.localChanges.set(prefix, now);
  }

  /**
   * Drops the view's currency after a change whose keys this isolate does not know (a tenant's erasure): no
   * cached entry is served until a poll that started after `now` has read the feed.
   */
  invalidate(now: number): void {
    this.polledAt = Number.NEGATIVE_INFINITY;
    this.invalidatedAt = now;
  }

  /** The isolate's first poll: the location's snapshot when one is recent and authentic, else the window. */
  private async pollFirst(d1: D1Database, startedAt: number): Promise<PollOutcome> {
    const snapshots = this.adoptSnapshots ? this.snapshots : null;
    const snapshot = snapshots ? await snapshots.read(d1, startedAt).catch(() => null) : null;
    if (snapshot !== null && this.adopt(snapshot, startedAt)) return "adopted";
    return this.load(d1, startedAt);
  }

  /**
   * Starts from another isolate's view if its poll is within one poll interval of `now`: the view is then as
   * fresh as that isolate's own between two of its polls, so the bound holds as it does there (the hard bound
   * counts from the snapshot's poll, not from the adoption). Refused when stamped ahead of this clock beyond the
   * tolerance, and when this isolate invalidated its view after that poll (a change it cannot name). This
   * isolate's own local changes stay until one of its own polls has read them.
   */
  private adopt(snapshot: FeedSnapshot, now: number): boolean {
    const { pollIntervalMs } = this.options;
    if (snapshot.polledAt > now + FEED_VIEW_CLOCK_TOLERANCE_MS || now - snapshot.polledAt > pollIntervalMs)
      return false;
    const polledAt = Math.min(snapshot.polledAt, now) - FEED_VIEW_CLOCK_TOLERANCE_MS;
    if (polledAt <= this.invalidatedAt) return false;
    this.apply(snapshot.changes);
    this.floor = Math.max(this.floor, snapshot.floor);
    if (snapshot.head > this.head) {
      // An honest view's newest change is at its head; without it the follow-up poll cannot check continuity.
      this.head = snapshot.head;
      this.headPrefix = null;
    }
    this.loaded = true;
    this.polledAt = polledAt;
    return true;
  }

  private async load(d1: D1Database, startedAt: number): Promise<PollOutcome> {
    const newestFirst = await d1
      .prepare("SELECT seq, hash_prefix FROM key_changes ORDER BY seq DESC LIMIT ?1")
      .bind(this.options.window + 1)
      .raw<ChangeRow>();
    const capped = newestFirst.length > this.options.window;
    if (capped) newestFirst.length = this.options.window;
    const rows = newestFirst.reverse();
    // A full window: entries read before its oldest change cannot be vouched for (changes older than it were
    // not loaded), so they count as misses. Below the cap every change still in the table was loaded, and the
    // purge only deletes changes 48 h older than the newest one (D1's clock on both sides), while an entry is
    // served for at most 24 h: every change that came after a servable entry's read is in the view, so the
    // floor is 0 (an entry stamped before the oldest row loaded, e.g. at an emptied feed's head, still serves).
    this.floor = capped && rows[0] ? rows[0][0] - 1 : 0;
    this.apply(rows);
    this.loaded = true;
    return this.settle(startedAt);
  }

  /**
   * Reads the changes after the view's head, and the head's own change with them: if the feed no longer holds
   * it as the view does, the view is not of this feed (a D1 Time Travel restore rewound the sequence, or an
   * adopted snapshot came from another deployment's feed), and reading on from its head would skip changes.
   * The view is then dropped and the window loaded again from D1.
   */
  private async readSince(d1: D1Database, startedAt: number): Promise<PollOutcome> {
    const page = this.options.window;
    for (let pages = 0; pages < MAX_POLL_PAGES; pages++) {
      const from = this.head;
      const rows = await d1
        .prepare("SELECT seq, hash_prefix FROM key_changes WHERE seq >= ?1 ORDER BY seq LIMIT ?2")
        .bind(from, page + 1)
        .raw<ChangeRow>();
      if (from > 0) {
        const [seq, prefix] = rows.shift() ?? [];
        if (seq !== from || prefix !== this.headPrefix) return this.discard();
      }
      this.apply(rows);
      if (rows.length < page) return this.settle(startedAt);
    }
    // Still behind the head: the view is not current, so the hard bound keeps counting from the last full poll.
    return "behind";
  }

  private apply(rows: readonly ChangeRow[]): void {
    for (const [seq, prefix] of rows) {
      this.latest.delete(prefix);
      this.latest.set(prefix, seq);
      if (seq > this.head) {
        this.head = seq;
        this.headPrefix = prefix;
      }
    }
    // Forgetting the oldest change raises the floor to it: entries read before it are misses from now on.
    while (this.latest.size > this.options.window) {
      const oldest = this.latest.entries().next().value;
      if (oldest === undefined) break;
      this.latest.delete(oldest[0]);
      if (oldest[1] > this.floor) this.floor = oldest[1];
    }
  }

  /** Forgets a view that is not of this feed; lookups wait for the window load, and no snapshot is adopted again. */
  private discard(): PollOutcome {
    this.latest.clear();
    this.floor = 0;
    this.head = 0;
    this.headPrefix = null;
    this.loaded = false;
    this.polledAt = Number.NEGATIVE_INFINITY;
    this.adoptSnapshots = false;
    return "behind";
  }

  private settle(startedAt: number): PollOutcome {
    // A poll that started after a local change has read it (it reads the primary): the seq rule takes over.
    for (const [prefix, at] of this.localChanges) {
      if (at < startedAt) this.localChanges.delete(prefix);
    }
    if (startedAt <= this.invalidatedAt) return "behind";
    this.polledAt = Math.max(this.polledAt, startedAt);
    return "current";
  }

  /**
   * After a poll of this isolate made the view current (never one adopted, never one invalidated since): a
   * snapshot for the location's fresh isolates, at most once per poll interval. The snapshot is taken now,
   * before anything else can change the view; storing it runs in the background.
   */
  private share(startedAt: number, keepAlive: KeepAlive): void {
    const { snapshots } = this;
    if (snapshots === null || this.polledAt !== startedAt) return;
    if (startedAt - this.sharedAt < this.options.pollIntervalMs) return;
    this.sharedAt = startedAt;
    const snapshot: FeedSnapshot = {
      polledAt: startedAt,
      floor: this.floor,
      head: this.head,
      changes: Array.from(this.latest, ([prefix, seq]): ChangeRow => [seq, prefix]),
    };
    keepAlive(snapshots.write(snapshot).catch(() => undefined));
  }
}

/** What a poll did to the view: made it current, adopted a snapshot (a poll of D1 follows), or neither. */
type PollOutcome = "current" | "adopted" | "behind";

/**
 * Cron: deletes changes older than KEY_CHANGE_RETENTION_MS in bounded chunks (the changed_at index finds them),
 * so a backlog spreads over ticks. The age is measured back from the newest change's changed_at when `now` is
 * later: both stamps then come from D1's clock (the triggers), so a Worker clock far ahead cannot purge a change
 * younger than 48 h, which a fresh isolate's view (floor 0 below the window's cap) relies on. The newest change
 * always stays, so the feed's head never falls back. Returns the rows deleted.
 */
export async function purgeKeyChanges(
  d1: D1Database,
  now: number,
  budget = { chunk: 5000, rounds: 4 },
): Promise<number> {
  let deleted = 0;
  for (let round = 0; round < budget.rounds; round++) {
    const { meta } = await d1
      .prepare(
        `DELETE FROM key_changes WHERE seq IN (SELECT seq FROM key_changes
           WHERE changed_at < min(?1, (SELECT max(changed_at) FROM key_changes) - ?3)
             AND seq < (SELECT max(seq) FROM key_changes) LIMIT ?2)`,
      )
      .bind(now - KEY_CHANGE_RETENTION_MS, budget.chunk, KEY_CHANGE_RETENTION_MS)
      .run();
    deleted += meta.changes;
    if (meta.changes < budget.chunk) break;
  }
  return deleted;
}
