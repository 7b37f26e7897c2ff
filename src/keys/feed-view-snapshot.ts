/**
 * A snapshot of an isolate's view of the key change feed, kept in the location's Workers Cache API so that a
 * fresh isolate starts from a recent view instead of waiting for the window load from D1
 * (src/keys/key-change-feed.ts decides when to write and whether to adopt one; docs/keys.md "Caching and the
 * propagation bound"). Like the key entries it is MACed under the entry key, with its own MAC input
 * (src/keys/key-cache-mac-key.ts): a forged snapshot could hide a revocation from every isolate that adopts it.
 */
import { feedViewMacInput, KEY_CACHE_ORIGIN, matchMaced, putMaced } from "./key-cache-mac-key";
import {
  FEED_VIEW_CLOCK_TOLERANCE_MS,
  type FeedSnapshot,
  HASH_PREFIX_LENGTH,
  KEY_FEED_POLL_INTERVAL_MS,
} from "./key-change-feed";

/** One snapshot per location: the latest writer's. Never a key entry's URL (those are `/v1/<sha-256>`). */
export const FEED_VIEW_URL = `${KEY_CACHE_ORIGIN}/feed-view/v1`;

/** The window's 20,000 changes are about 600 KB in JSON: anything larger is not a snapshot this code wrote. */
const FEED_VIEW_MAX_BYTES = 1024 * 1024;

/**
 * A snapshot is adopted only within a poll interval of its poll (and the clock tolerance), so the cache keeps it
 * no longer: the cache's own expiry then bounds a snapshot's true age, even if its writer's clock ran ahead.
 */
const HEADERS = {
  "cache-control": `max-age=${Math.ceil((KEY_FEED_POLL_INTERVAL_MS + FEED_VIEW_CLOCK_TOLERANCE_MS) / 1000)}`,
  "content-type": "application/json",
};

interface FeedViewBody extends FeedSnapshot {
  v: 1;
}

/**
 * Signs and stores the snapshot. Its size is bounded by the window: at most 20,000 changes, about 30 bytes each
 * in JSON (a 16-character prefix and a seq), so about 600 KB and a few milliseconds of CPU (serializing and one
 * HMAC) when the window is full, and far less in a feed with fewer changes. The feed writes one at most once
 * per poll interval per isolate, off the response path (waitUntil).
 */
export async function putFeedView(cache: Cache, key: CryptoKey, snapshot: FeedSnapshot): Promise<void> {
  const body: FeedViewBody = { v: 1, ...snapshot };
  const text = JSON.stringify(body);
  await putMaced(cache, FEED_VIEW_URL, key, text, feedViewMacInput(text), HEADERS);
}

/** The location's snapshot if its MAC verifies and its shape is sound; null for anything else. */
export async function matchFeedView(cache: Cache, key: CryptoKey): Promise<FeedSnapshot | null> {
  const body = await matchMaced(cache, FEED_VIEW_URL, key, feedViewMacInput, FEED_VIEW_MAX_BYTES);
  if (!isFeedViewBody(body)) return null;
  return { polledAt: body.polledAt, floor: body.floor, head: body.head, changes: body.changes };
}

/**
 * The shape an authentic snapshot has: the view's changes in strictly increasing seq order (the feed relies on
 * that order to forget the oldest first), none above the head. Anything else, an older format included, is
 * refused, and the isolate loads the window from D1.
 */
function isFeedViewBody(value: unknown): value is FeedViewBody {
  if (typeof value !== "object" || value === null) return false;
  const body = value as Partial<FeedViewBody>;
  if (body.v !== 1 || !Number.isFinite(body.polledAt)) return false;
  const { floor, head, changes } = body;
  if (!Number.isSafeInteger(floor) || !Number.isSafeInteger(head) || !Array.isArray(changes)) return false;
  if ((floor as number) < 0 || (floor as number) > (head as number)) return false;
  let previous = 0;
  for (const change of changes as unknown[]) {
    if (!Array.isArray(change) || change.length !== 2) return false;
    const [seq, prefix] = change as [unknown, unknown];
    if (!Number.isSafeInteger(seq) || (seq as number) <= previous || (seq as number) > (head as number))
      return false;
    if (typeof prefix !== "string" || prefix.length !== HASH_PREFIX_LENGTH) return false;
    previous = seq as number;
  }
  return true;
}
