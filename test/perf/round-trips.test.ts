// D1 round trips and Durable Object calls per operation (issue 13, part 2), counted at the bindings while the
// app's own fetch serves each request (test/perf/counting-env.ts; the bench prints the same table from the built
// worker: BENCH_ONLY=roundtrips). A D1 batch is one round trip. Only calls that start before the response is
// returned count (the usage recorder flushes later, in ctx.waitUntil).
//
// The goal: a read path makes at most one D1 round trip; a write path at most one read batch plus one write
// batch plus the audit writer. A management call also authenticates fresh from D1, one round trip, by design
// (threat model case 29), so its budget is that one plus its own. Every audited write runs its one batch inside
// the tenant's AuditChain object: on the worker's side a write is its reads plus one AUDIT_CHAIN call.
//
// Each case starts from the state a running isolate is in (beforeAll: the caller's key cached, the keyring
// unsealed, the tenant's DEK unwrapped), so the counts are the operation's own, not a cold isolate's one-offs.
// The verify cases follow the key cache tiers of docs/keys.md: a key this isolate has served is answered from
// the isolate (0 round trips); a key in no tier is one D1 read (the key row and the change feed's head in one
// statement). Each uses a key no earlier request touched, so no other test's order changes its count.
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateKey } from "../../src/crypto/keys";
import { stripeKey } from "../credentials/samples";
import { createKey, createTenant, type TestTenant } from "../helpers/api";
import { network } from "../setup/network";
import { walkToReview } from "../wizard/helpers";
import { countedCall, doCalls, type RoundTrips, settleCountedRequests } from "./counting-env";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(async () => {
  await settleCountedRequests();
  network.disable();
});

/** Every D1 call the worker made itself was a read: the write batch is the audit writer's. */
function readsOnly(trips: RoundTrips): boolean {
  return trips.d1Kinds
    .flatMap((kind) => kind.replace(/^batch: /, "").split(" + "))
    .every((statement) => /^(SELECT|WITH) /.test(statement));
}

function expectAuditedWrite(trips: RoundTrips, maxD1: number) {
  expect(trips.d1, trips.d1Kinds.join(", ")).toBeLessThanOrEqual(maxD1);
  expect(readsOnly(trips), trips.d1Kinds.join(", ")).toBe(true);
  expect(doCalls(trips, "AUDIT_CHAIN")).toBe(1);
}

const storeBody = () => ({
  service: "stripe",
  environment: "development",
  fields: { secret_key: stripeKey() },
});

let tenant: TestTenant;

beforeAll(async () => {
  tenant = await createTenant("round trips");
  // A running isolate: the verify caller's key cached, keyring and chain key open, the tenant's DEK unwrapped.
  const warmup = await createKey(tenant, { name: "warm-up" });
  await countedCall("POST", "/api/v1/keys/verify", { key: tenant.adminKey, body: { key: warmup.key } });
  const stored = await countedCall<{ id: string }>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: storeBody(),
  });
  await countedCall("POST", `/api/v1/credentials/${stored.body.id}/reveal`, {
    key: tenant.adminKey,
    body: {},
  });
});

const verify = (key: string) =>
  countedCall<{ code: string }>("POST", "/api/v1/keys/verify", { key: tenant.adminKey, body: { key } });

describe("round trips of POST /keys/verify (issue 13)", () => {
  it("answers a key this isolate has served with no D1 round trip and no Durable Object call", async () => {
    const { key } = await createKey(tenant, { name: "warm" });
    expect((await verify(key)).body.code).toBe("VALID");
    const warm = await verify(key);
    expect(warm.body.code).toBe("VALID");
    expect(warm.trips.d1).toBe(0);
    expect(warm.trips.durableObjects).toEqual({});
  });

  it("reads a key in no cache tier with one D1 round trip", async () => {
    const { key } = await createKey(tenant, { name: "cold" });
    const cold = await verify(key);
    expect(cold.body.code).toBe("VALID");
    expect(cold.trips.d1, cold.trips.d1Kinds.join(", ")).toBe(1);
    expect(cold.trips.durableObjects).toEqual({});
  });

  it("answers a well-formed unknown key with at most one D1 round trip", async () => {
    // Locally there is no read replica, so the first answer comes from the primary and needs no confirmation.
    const unknown = await verify(generateKey("kw", "live", "basic"));
    expect(unknown.body.code).toBe("NOT_FOUND");
    expect(unknown.trips.d1, unknown.trips.d1Kinds.join(", ")).toBeLessThanOrEqual(1);
    expect(unknown.trips.durableObjects).toEqual({});
  });

  it("refuses a key with a bad checksum without any I/O", async () => {
    const { key } = await createKey(tenant, { name: "checksum" });
    const broken = `${key.slice(0, -1)}${key.endsWith("A") ? "B" : "A"}`;
    const bad = await verify(broken);
    expect(bad.body.code).toBe("INVALID_FORMAT");
    expect(bad.trips.d1).toBe(0);
    expect(bad.trips.durableObjects).toEqual({});
  });
});

describe("round trips of management calls (issue 13)", () => {
  it("authenticates a management call with exactly one fresh D1 read, never from a cache (threat model case 29)", async () => {
    // A valid key without the route's scope is refused after authentication and before the handler: every
    // call this request makes is authentication's. Twice, so a cached second answer would show as 0.
    const verifier = await createKey(tenant, { name: "verifier", scopes: ["keys:verify"] });
    for (let attempt = 0; attempt < 2; attempt++) {
      const refused = await countedCall("GET", "/api/v1/keys", { key: verifier.key });
      expect(refused.status).toBe(403);
      expect(refused.trips.d1Kinds).toEqual(["SELECT api_keys"]);
      expect(refused.trips.durableObjects).toEqual({});
    }
  });

  it("creates a key with authentication, one read and the audit writer", async () => {
    const created = await countedCall("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: { name: "new" },
    });
    expect(created.status).toBe(201);
    expectAuditedWrite(created.trips, 2);
  });

  it("rotates a key with authentication, one read batch (the key and its latest run) and the audit writer", async () => {
    const source = await createKey(tenant, { name: "to rotate" });
    const rotated = await countedCall("POST", `/api/v1/keys/${source.id}/rotate`, {
      key: tenant.adminKey,
      body: {},
    });
    expect(rotated.status).toBe(201);
    expectAuditedWrite(rotated.trips, 2);
  });

  it("revokes a key with authentication, one read and the audit writer", async () => {
    const target = await createKey(tenant, { name: "to revoke" });
    const revoked = await countedCall("POST", `/api/v1/keys/${target.id}/revoke`, { key: tenant.adminKey });
    expect(revoked.status).toBe(200);
    expectAuditedWrite(revoked.trips, 2);
  });

  it("stores a credential with authentication, one read batch (policy and active DEK) and the audit writer, answering what a read answers", async () => {
    // The answer is built from what the batch wrote, not read back: it must be what GET answers right after.
    const stored = await countedCall<{ id: string }>("POST", "/api/v1/credentials", {
      key: tenant.adminKey,
      body: { ...storeBody(), name: "answer check" },
    });
    expect(stored.status).toBe(201);
    expectAuditedWrite(stored.trips, 2);
    const read = await countedCall("GET", `/api/v1/credentials/${stored.body.id}`, { key: tenant.adminKey });
    expect(stored.body).toEqual(read.body);
  });

  it("reveals a credential with authentication, one read batch (step-up state, credential, version) and the audit writer", async () => {
    const stored = await countedCall<{ id: string }>("POST", "/api/v1/credentials", {
      key: tenant.adminKey,
      body: storeBody(),
    });
    const revealed = await countedCall("POST", `/api/v1/credentials/${stored.body.id}/reveal`, {
      key: tenant.adminKey,
      body: {},
    });
    expect(revealed.status).toBe(200);
    expectAuditedWrite(revealed.trips, 2);
  });

  it("tests a credential with authentication, one read (credential and current version) and the audit writer", async () => {
    const stored = await countedCall<{ id: string }>("POST", "/api/v1/credentials", {
      key: tenant.adminKey,
      body: storeBody(),
    });
    network.use(
      http.get("https://api.stripe.com/v1/balance", () =>
        HttpResponse.json({ object: "balance", available: [], pending: [], livemode: false }),
      ),
    );
    const tested = await countedCall<{ status: string }>(
      "POST",
      `/api/v1/credentials/${stored.body.id}/test`,
      {
        key: tenant.adminKey,
      },
    );
    expect(tested.body.status).toBe("valid");
    expectAuditedWrite(tested.trips, 2);
  });

  it("commits a wizard with authentication, one read batch, three wizard calls and one audited batch", async () => {
    // The read batch: whether the commit already landed, the step-up state, the tenant's key prefix and DEK,
    // and the channels, rules and policy the reconcile plan compares with. The wizard calls: its state and
    // sealed values before the step-up, the lease with what the commit writes from, and the finish.
    const owner = await createTenant("round trips wizard");
    const { id } = await walkToReview(owner);
    const committed = await countedCall("POST", `/api/v1/wizard/${id}/commit`, {
      key: owner.adminKey,
      body: {},
    });
    expect(committed.status).toBe(200);
    expectAuditedWrite(committed.trips, 2);
    expect(committed.trips.durableObjects.WIZARD_SESSION).toEqual([
      "snapshot",
      "beginCommit",
      "finishCommit",
    ]);
  });
});
