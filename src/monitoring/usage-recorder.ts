import type { Context } from "hono";
import { clientCountry, clientIp } from "../auth/client-address";
import type { AppEnv, Bindings } from "../env";
import { isV4Mapped, parseIp } from "../keys/ip-allowlist";
import type { VerifyCode } from "../keys/verify-key";
import type { OriginKind } from "./alert-kinds";
import { bucketStart, codeCounter, USAGE_COUNTERS, type UsageCounter } from "./usage-counts";

/** Where a key was presented from: the country and the network (`AS<n>`, or the client's /24 or /48). */
export interface UsageOrigin {
  country?: string;
  network?: string;
}

export interface UsageEntry {
  tenantId: string;
  /** null: a malformed or unknown key, counted on the tenant's row with key_id '' (it names no key). */
  keyId: string | null;
  /** The verify outcome; null for a refused authentication that was no verification (a wrong TOTP code). */
  code: VerifyCode | null;
  /** Authentication to Keywarden itself was refused with this (known) key. */
  authFailed?: boolean;
  at: number;
  origin?: UsageOrigin;
}

interface HourTally {
  tenantId: string;
  keyId: string;
  hour: number;
  counts: Map<UsageCounter, number>;
  lastUsedAt: number;
}

interface OriginSighting {
  tenantId: string;
  keyId: string;
  kind: OriginKind;
  value: string;
  firstSeenAt: number;
  lastSeenAt: number;
}

/**
 * Counters are buffered per isolate and written in one D1 batch off the response path (ctx.waitUntil), at
 * most once per USAGE_FLUSH_MS. Trade-off, stated in docs/usage-analytics.md: an isolate evicted inside the
 * flush window loses at most that window's counts; limits are never affected (the limiter Durable Object is
 * exact). Only hours are tallied here; the flush adds each hour to its day as well.
 */
const tallies = new Map<string, HourTally>();
const sightings = new Map<string, OriginSighting>();
let flushScheduled = false;

/** `USAGE_ANALYTICS = "off"` turns the recorder off entirely (the bench measures verify without it). */
export function usageAnalyticsEnabled(env: Pick<Bindings, "USAGE_ANALYTICS">): boolean {
  return env.USAGE_ANALYTICS !== "off";
}

/** Adds one outcome to this isolate's tallies. */
export function tallyUsage(entry: UsageEntry): void {
  const keyId = entry.keyId ?? "";
  const hour = bucketStart("hour", entry.at);
  const slot = `${entry.tenantId}\n${keyId}\n${hour}`;
  let tally = tallies.get(slot);
  if (!tally) {
    tally = { tenantId: entry.tenantId, keyId, hour, counts: new Map(), lastUsedAt: 0 };
    tallies.set(slot, tally);
  }
  const bump = (counter: UsageCounter) => tally.counts.set(counter, (tally.counts.get(counter) ?? 0) + 1);
  if (entry.code !== null) {
    bump(codeCounter(entry.code));
    if (entry.code !== "VALID") bump("invalid");
  }
  if (entry.authFailed) bump("auth_failed");
  tally.lastUsedAt = Math.max(tally.lastUsedAt, entry.at);
  if (entry.keyId === null || !entry.origin) return;
  for (const kind of ["country", "network"] as const) {
    const value = entry.origin[kind];
    if (!value) continue;
    const key = `${entry.keyId}\n${kind}\n${value}`;
    const seen = sightings.get(key);
    if (seen) {
      seen.firstSeenAt = Math.min(seen.firstSeenAt, entry.at);
      seen.lastSeenAt = Math.max(seen.lastSeenAt, entry.at);
    } else {
      sightings.set(key, {
        tenantId: entry.tenantId,
        keyId: entry.keyId,
        kind,
        value,
        firstSeenAt: entry.at,
        lastSeenAt: entry.at,
      });
    }
  }
}

/**
 * The network a request came from: Cloudflare's AS number when the edge supplied one, else the client's
 * IPv4 /24 or IPv6 /48 (the usual allocation to one site, RFC 6177), so one host's changing addresses
 * inside its own network are not each "new".
 */
export function networkOf(asn: unknown, ip: string | undefined): string | undefined {
  if (typeof asn === "number" && Number.isInteger(asn) && asn > 0) return `AS${asn}`;
  const address = ip === undefined ? null : parseIp(ip);
  if (address === null) return undefined;
  if (isV4Mapped(address)) {
    const v4 = Number(address & 0xffffffffn);
    return `${v4 >>> 24}.${(v4 >>> 16) & 255}.${(v4 >>> 8) & 255}.0/24`;
  }
  const site = address >> 80n;
  const hextets = [site >> 32n, (site >> 16n) & 0xffffn, site & 0xffffn].map((h) => h.toString(16));
  return `${hextets.join(":")}::/48`;
}

/** Per request, once: a verify records both its caller's key and the verified key from the same origin. */
const origins = new WeakMap<Request, UsageOrigin>();

function requestUsageOrigin(c: Context<AppEnv>): UsageOrigin {
  let origin = origins.get(c.req.raw);
  if (!origin) {
    origin = { country: clientCountry(c), network: networkOf(c.req.raw.cf?.asn, clientIp(c)) };
    origins.set(c.req.raw, origin);
  }
  return origin;
}

/**
 * Records one outcome of the request in `c`, with the request's origin, and schedules the flush. Costs a
 * few Map operations and one read of `request.cf` on the request; the database write happens after the
 * response, in ctx.waitUntil.
 */
export function recordUsage(
  c: Context<AppEnv>,
  entry: Omit<UsageEntry, "at" | "origin">,
  at: number = Date.now(),
): void {
  if (!usageAnalyticsEnabled(c.env)) return;
  tallyUsage({ ...entry, at, origin: entry.keyId === null ? undefined : requestUsageOrigin(c) });
  if (flushScheduled) return;
  flushScheduled = true;
  const flushAfterMs = Number(c.env.USAGE_FLUSH_MS ?? 1000);
  const db = c.env.DB;
  c.executionCtx.waitUntil(
    (flushAfterMs > 0 ? new Promise((resolve) => setTimeout(resolve, flushAfterMs)) : Promise.resolve()).then(
      () => flushUsage(db),
    ),
  );
}

const FLUSH_CHUNK = 1000;

const counterList = USAGE_COUNTERS.join(", ");
/** Positions 0-3 of each JSON row are tenant, key, bucket and start; the counters follow in USAGE_COUNTERS order. */
const UPSERT_COUNTS = `INSERT INTO usage_counts (tenant_id, key_id, service_id, bucket, start, ${counterList})
SELECT j.value ->> 0, j.value ->> 1, (SELECT k.service_id FROM api_keys k WHERE k.id = j.value ->> 1),
  j.value ->> 2, j.value ->> 3, ${USAGE_COUNTERS.map((_, i) => `j.value ->> ${i + 4}`).join(", ")}
FROM json_each(?1) AS j WHERE true
ON CONFLICT (tenant_id, key_id, bucket, start) DO UPDATE SET
  ${USAGE_COUNTERS.map((c) => `${c} = usage_counts.${c} + excluded.${c}`).join(", ")}`;

const UPSERT_ORIGINS = `INSERT INTO key_origins (tenant_id, key_id, kind, value, first_seen_at, last_seen_at)
SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5
FROM json_each(?1) AS j WHERE true
ON CONFLICT (key_id, kind, value) DO UPDATE SET
  first_seen_at = min(key_origins.first_seen_at, excluded.first_seen_at),
  last_seen_at = max(key_origins.last_seen_at, excluded.last_seen_at)`;

const TOUCH_KEYS = `UPDATE api_keys SET last_used_at = max(coalesce(api_keys.last_used_at, 0), j.value ->> 1)
FROM json_each(?1) AS j WHERE api_keys.id = j.value ->> 0`;

function chunks<T>(items: T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += FLUSH_CHUNK) out.push(items.slice(i, i + FLUSH_CHUNK));
  return out;
}

/**
 * Writes everything tallied so far in ONE D1 batch: hour and day rows of usage_counts (one upsert statement
 * per chunk of rows, with the key's service_id looked up by the statement), key_origins (insert, or widen
 * first/last seen), and each key's last_used_at. A failed batch is logged and its counts are dropped, never
 * retried into a double count.
 */
export async function flushUsage(d1: D1Database): Promise<void> {
  flushScheduled = false;
  const hours = [...tallies.values()];
  const origins = [...sightings.values()];
  tallies.clear();
  sightings.clear();
  if (hours.length === 0) return;

  const rows = new Map<string, (string | number)[]>();
  const lastUsed = new Map<string, number>();
  for (const tally of hours) {
    for (const bucket of ["hour", "day"] as const) {
      const start = bucketStart(bucket, tally.hour);
      const slot = `${tally.tenantId}\n${tally.keyId}\n${bucket}\n${start}`;
      let row = rows.get(slot);
      if (!row) {
        row = [tally.tenantId, tally.keyId, bucket, start, ...USAGE_COUNTERS.map(() => 0)];
        rows.set(slot, row);
      }
      USAGE_COUNTERS.forEach((counter, i) => {
        (row[i + 4] as number) += tally.counts.get(counter) ?? 0;
      });
    }
    if (tally.keyId !== "") {
      lastUsed.set(tally.keyId, Math.max(lastUsed.get(tally.keyId) ?? 0, tally.lastUsedAt));
    }
  }
  const statement = (sql: string, values: unknown[]) => d1.prepare(sql).bind(JSON.stringify(values));
  const batch = [
    ...chunks([...rows.values()]).map((chunk) => statement(UPSERT_COUNTS, chunk)),
    ...chunks(origins.map((o) => [o.tenantId, o.keyId, o.kind, o.value, o.firstSeenAt, o.lastSeenAt])).map(
      (chunk) => statement(UPSERT_ORIGINS, chunk),
    ),
    ...chunks([...lastUsed]).map((chunk) => statement(TOUCH_KEYS, chunk)),
  ];
  try {
    await d1.batch(batch);
  } catch (error) {
    console.error(JSON.stringify({ event: "usage_flush_failed", rows: rows.size, error: String(error) }));
  }
}
