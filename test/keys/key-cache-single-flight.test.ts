/**
 * Single flight (src/keys/key-cache-tier.ts): lookups of one key that arrive while its miss is in flight share
 * that read. A lookup that arrives after a change must still be answered within the propagation bound, however
 * long the shared read took: it is served the shared answer only if the isolate's view vouches for it at its
 * own arrival, as a hit would be.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { hashKey } from "../../src/crypto/keys";
import { KEY_PROPAGATION_BOUND_MS } from "../../src/keys/key-change-feed";
import { call, createKey, createTenant } from "../helpers/api";
import { countingD1, otherIsolate, type ReplicaAnswer } from "./key-cache-support";

function deferred(): { promise: Promise<void>; release: () => void } {
  let release = () => {};
  const promise = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { promise, release };
}

/** The binding with every read of the change feed alone held until `held` settles (a poll D1 is slow to answer). */
function holdingFeed(db: D1Database, held: Promise<void>): D1Database {
  return {
    prepare(sql: string) {
      const statement = db.prepare(sql);
      if (!sql.includes("key_changes") || sql.includes("api_keys")) return statement;
      return {
        bind: (...values: unknown[]) => {
          const bound = statement.bind(...values);
          return {
            raw: async () => {
              await held;
              return bound.raw();
            },
          };
        },
      };
    },
    withSession: (constraint?: D1SessionConstraint) => db.withSession(constraint),
  } as unknown as D1Database;
}

describe("a lookup that joins a miss already in flight (threat model case 11, across isolates)", () => {
  it("is not served a read that started before a revocation once it arrives past the propagation bound", async () => {
    const tenant = await createTenant("single flight bound");
    const key = await createKey(tenant, { scopes: ["orders:read"] });
    const hash = await hashKey(key.key);
    const other = otherIsolate();
    const t0 = Date.now();
    // The isolate's view of the feed is loaded (polled at t0) by a lookup of another key.
    await other.tiers.lookup(env.DB, "0".repeat(64), t0);
    await other.settle();

    // A replica read of the key that takes its snapshot at once but answers only when released.
    const snapshotTaken = deferred();
    const answer = deferred();
    const replica: ReplicaAnswer = async (sql, params) => {
      const row = await env.DB.prepare(sql)
        .bind(...params)
        .first<Record<string, unknown>>();
      snapshotTaken.release();
      await answer.promise;
      return row as Record<string, unknown>;
    };
    const pollAnswered = deferred();
    const d1 = holdingFeed(countingD1(replica).db, pollAnswered.promise);

    const early = other.tiers.lookup(d1, hash, t0 + 1_000);
    await snapshotTaken.promise;
    expect((await call("POST", `/api/v1/keys/${key.id}/revoke`, { key: tenant.adminKey })).status).toBe(200);

    // Past the bound: the view (polled at t0) vouches for nothing, and the poll this lookup starts is slow.
    const late = other.tiers.lookup(d1, hash, t0 + KEY_PROPAGATION_BOUND_MS + 5_000);
    answer.release();
    // The lookup that arrived before the revocation may have the key as it was read.
    expect(await early).toMatchObject({ id: key.id, revoked: false });
    pollAnswered.release();
    expect(await late).toMatchObject({ id: key.id, revoked: true });
    await other.settle();
  });
});
