import { env } from "cloudflare:workers";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { KEY_STATES } from "../../src/keys/key-state";
import { call, callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { snapshotTenantRows } from "../helpers/db";
import { FRAGMENTS, sqlishArb } from "../properties/sql-arbitraries";
import { runs } from "../setup/fast-check";

interface KeyItem {
  id: string;
  name: string;
  start: string;
  environment: string;
  service_id: string | null;
  state: string;
}
interface KeyPage {
  items: KeyItem[];
  next_cursor: string | null;
}

const DAY = 86_400_000;

/** Every page of the filtered list, in order; each page is checked against `limit`. */
async function listAll(tenant: TestTenant, filters: Record<string, string> = {}, limit = 100) {
  const items: KeyItem[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const query = new URLSearchParams({ ...filters, limit: String(limit), ...(cursor ? { cursor } : {}) });
    const response = await callJson<KeyPage>("GET", `/api/v1/keys?${query}`, { key: tenant.adminKey });
    expect(response.status).toBe(200);
    expect(response.body.items.length).toBeLessThanOrEqual(limit);
    items.push(...response.body.items);
    cursor = response.body.next_cursor;
    pages += 1;
  } while (cursor && pages < 50);
  return { items, pages };
}

const idsOf = async (tenant: TestTenant, filters: Record<string, string>) =>
  (await listAll(tenant, filters)).items.map((k) => k.id).sort();
const namesOf = async (tenant: TestTenant, filters: Record<string, string>) =>
  (await listAll(tenant, filters)).items.map((k) => k.name).sort();

/** Past expiries are written in D1: the API accepts only future ones. A day ago is far from any edge. */
const expireInD1 = (id: string) =>
  env.DB.prepare("UPDATE api_keys SET expires_at = ? WHERE id = ?")
    .bind(Date.now() - DAY, id)
    .run();
const disable = (tenant: TestTenant, id: string) =>
  callJson("PATCH", `/api/v1/keys/${id}`, { key: tenant.adminKey, body: { enabled: false } });
const revoke = (tenant: TestTenant, id: string) =>
  call("POST", `/api/v1/keys/${id}/revoke`, { key: tenant.adminKey });

describe("GET /api/v1/keys filters: environment, service_id, state and q", () => {
  let tenant: TestTenant;
  let other: TestTenant;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    tenant = await createTenant("list filters");
    other = await createTenant("list filters bystander");
    const make = async (label: string, body: Record<string, unknown>) => {
      ids[label] = (await createKey(tenant, { scopes: ["orders:read"], ...body })).id;
    };
    await make("liveStripe", { name: "Alpha billing", service_id: "stripe" });
    await make("testStripe", { name: "alpha reports", environment: "test", service_id: "stripe" });
    await make("revoked", { name: "Beta deploys", service_id: "github" });
    await make("expired", { name: "Gamma nightly", environment: "test", service_id: "github" });
    await make("rotatedFrom", { name: "Delta webhook", service_id: "stripe" });
    await make("revokedExpired", { name: "Epsilon old" });
    await make("disabledExpired", { name: "Zeta paused", environment: "test" });
    await make("acme", { name: "Acme gateway", prefix: "acme" });

    expect((await disable(tenant, ids.testStripe as string)).status).toBe(200);
    expect((await revoke(tenant, ids.revoked as string)).status).toBe(200);
    await expireInD1(ids.expired as string);
    const rotated = await callJson<{ id: string }>("POST", `/api/v1/keys/${ids.rotatedFrom}/rotate`, {
      key: tenant.adminKey,
      body: { grace_seconds: 3600 },
    });
    expect(rotated.status).toBe(201);
    ids.rotatedTo = rotated.body.id;
    expect((await revoke(tenant, ids.revokedExpired as string)).status).toBe(200);
    await expireInD1(ids.revokedExpired as string);
    expect((await disable(tenant, ids.disabledExpired as string)).status).toBe(200);
    await expireInD1(ids.disabledExpired as string);

    // Another tenant's keys share names, services and states with this tenant's.
    const lookalike = await createKey(other, { name: "Alpha billing", service_id: "stripe" });
    await createKey(other, { name: "alpha reports", environment: "test", service_id: "stripe" });
    ids.otherTenant = lookalike.id;
  });

  it("environment alone lists only that environment's keys", async () => {
    const { items } = await listAll(tenant, { environment: "test" });
    expect(items.map((k) => k.id).sort()).toEqual(
      [ids.testStripe, ids.expired, ids.disabledExpired].map(String).sort(),
    );
  });

  it("service_id alone lists only the keys bound to that service", async () => {
    expect(await idsOf(tenant, { service_id: "stripe" })).toEqual(
      [ids.liveStripe, ids.testStripe, ids.rotatedFrom, ids.rotatedTo].map(String).sort(),
    );
    expect(await idsOf(tenant, { service_id: "no-such-service" })).toEqual([]);
  });

  it("state names each key as the view does, first of revoked, expired, disabled, rotated (in overlap), active", async () => {
    const expected: Record<string, string> = {
      liveStripe: "active",
      testStripe: "disabled",
      revoked: "revoked",
      expired: "expired",
      rotatedFrom: "rotated",
      rotatedTo: "active",
      revokedExpired: "revoked",
      disabledExpired: "expired",
      acme: "active",
    };
    const { items } = await listAll(tenant);
    const stateOf = new Map(items.map((k) => [k.id, k.state]));
    for (const [label, state] of Object.entries(expected))
      expect([label, stateOf.get(ids[label] as string)]).toEqual([label, state]);
  });

  it("each state filter lists exactly the keys whose view shows that state, every key under exactly one", async () => {
    const all = (await listAll(tenant)).items;
    const seen: string[] = [];
    for (const state of KEY_STATES) {
      const { items } = await listAll(tenant, { state });
      expect(items.every((k) => k.state === state)).toBe(true);
      expect(items.map((k) => k.id).sort()).toEqual(
        all
          .filter((k) => k.state === state)
          .map((k) => k.id)
          .sort(),
      );
      seen.push(...items.map((k) => k.id));
    }
    expect(seen.sort()).toEqual(all.map((k) => k.id).sort());
  });

  it("filters combine with AND", async () => {
    expect(await idsOf(tenant, { environment: "live", service_id: "stripe", state: "active" })).toEqual(
      [ids.liveStripe, ids.rotatedTo].map(String).sort(),
    );
    expect(
      await idsOf(tenant, { environment: "live", service_id: "stripe", state: "active", q: "alpha" }),
    ).toEqual([ids.liveStripe]);
    expect(await idsOf(tenant, { service_id: "stripe", state: "rotated", q: "delta" })).toEqual([
      ids.rotatedFrom,
    ]);
    expect(await idsOf(tenant, { environment: "test", state: "active" })).toEqual([]);
  });

  it("q matches a name anywhere, ignoring ASCII case, and is trimmed", async () => {
    expect(await namesOf(tenant, { q: "ALPHA" })).toEqual(["Alpha billing", "alpha reports"]);
    expect(await namesOf(tenant, { q: "  night  " })).toEqual(["Gamma nightly"]);
    expect(await namesOf(tenant, { q: "ta we" })).toEqual(["Delta webhook", "Delta webhook"]);
    // Empty (after trimming) is no search at all.
    expect((await listAll(tenant, { q: "   " })).items).toHaveLength((await listAll(tenant)).items.length);
  });

  it("q matches the key's start from its beginning only", async () => {
    expect(await idsOf(tenant, { q: "acme_li" })).toEqual([ids.acme]);
    expect(await idsOf(tenant, { q: "acme_live_" })).toEqual([ids.acme]);
    expect(await idsOf(tenant, { q: "cme_live" })).toEqual([]);
    const testKeys = [ids.testStripe, ids.expired, ids.disabledExpired].map(String).sort();
    expect(await idsOf(tenant, { q: "kw_test_" })).toEqual(testKeys);
  });

  it("q matches an id only exactly", async () => {
    const id = ids.liveStripe as string;
    expect(await idsOf(tenant, { q: id })).toEqual([id]);
    expect(await idsOf(tenant, { q: id.slice(0, -1) })).toEqual([]);
    expect(await idsOf(tenant, { q: id.slice(1) })).toEqual([]);
  });

  it("never lists another tenant's keys, whatever the filters (threat model case 1)", async () => {
    const everything: Record<string, string>[] = [
      {},
      { q: ids.otherTenant as string },
      { q: "alpha" },
      { service_id: "stripe" },
      ...KEY_STATES.map((state) => ({ state })),
      { environment: "test", q: "alpha reports" },
    ];
    const own = new Set((await listAll(tenant)).items.map((k) => k.id));
    for (const filters of everything) {
      const { items } = await listAll(tenant, filters);
      expect(items.every((k) => own.has(k.id))).toBe(true);
    }
    expect(await idsOf(tenant, { q: ids.otherTenant as string })).toEqual([]);
    // The bystander sees only its own lookalike (and not this tenant's "Alpha billing").
    expect(await idsOf(other, { q: "alpha billing" })).toEqual([ids.otherTenant]);
  });

  it("refuses unknown or malformed parameters with 422 naming the parameter", async () => {
    const bad: [string, string][] = [
      ["state=paused", "state"],
      ["state=ACTIVE", "state"],
      ["environment=prod", "environment"],
      ["service_id=", "service_id"],
      [`service_id=${"s".repeat(65)}`, "service_id"],
      [`q=${"q".repeat(101)}`, "q"],
    ];
    for (const [query, path] of bad) {
      const response = await callJson<{ code: string; errors: { path: string }[] }>(
        "GET",
        `/api/v1/keys?${query}`,
        { key: tenant.adminKey },
      );
      expect([query, response.status, response.body.code]).toEqual([query, 422, "VALIDATION_FAILED"]);
      expect(response.body.errors.map((e) => e.path)).toEqual([path]);
    }
  });
});

describe("GET /api/v1/keys: SQL and LIKE metacharacters, NUL and long text in q match literally (threat model case 17)", () => {
  let tenant: TestTenant;
  let lookalikeId: string;
  let before: string;
  // 100 characters: a LIKE pattern of it would exceed D1's 50-byte limit on LIKE patterns.
  const long = `long name ${"x".repeat(90)}`;
  const names = [
    "disk 100% full",
    "disk 1000 full",
    "snake_case",
    "snakeXcase",
    "back\\slash",
    "backslash",
    "nul\u0000byte",
    long,
  ];

  beforeAll(async () => {
    tenant = await createTenant("list filters metacharacters");
    for (const name of names) await createKey(tenant, { name, scopes: ["orders:read"] });
    // Start "kwxlive_live_": the pattern kw_live% would match it if `_` were a wildcard.
    lookalikeId = (await createKey(tenant, { name: "prefixed", prefix: "kwxlive", scopes: ["orders:read"] }))
      .id;
    before = await snapshotTenantRows(tenant.id);
  });

  const cases: [q: string, expected: string[]][] = [
    ["100%", ["disk 100% full"]],
    ["%", ["disk 100% full"]],
    ["0%", ["disk 100% full"]],
    ["e_c", ["snake_case"]],
    ["_", ["snake_case"]],
    ["k\\s", ["back\\slash"]],
    ["\\", ["back\\slash"]],
    ["\\%", []],
    // A NUL is a character like any other (LIKE would stop reading its pattern there).
    ["\u0000", ["nul\u0000byte"]],
    ["l\u0000b", ["nul\u0000byte"]],
    ["l\u0000x", []],
    ["' OR 1=1 --", []],
    ['"; DROP TABLE api_keys; --', []],
  ];
  for (const [q, expected] of cases) {
    it(`q=${JSON.stringify(q)} lists ${expected.length ? expected.map((name) => JSON.stringify(name)).join(", ") : "nothing"}`, async () => {
      expect(await namesOf(tenant, { q })).toEqual(expected);
    });
  }

  it("a 100-character q finds the key whose whole name it is", async () => {
    expect(await namesOf(tenant, { q: long.toUpperCase() })).toEqual([long]);
    expect(await namesOf(tenant, { q: `${long.slice(40)}!` })).toEqual([]);
  });

  it("an underscore in q is not a one-character wildcard against the key's start either", async () => {
    const all = (await listAll(tenant)).items;
    expect(await idsOf(tenant, { q: "kw_live" })).toEqual(
      all
        .filter((k) => k.id !== lookalikeId)
        .map((k) => k.id)
        .sort(),
    );
    expect(await idsOf(tenant, { q: "kwxlive" })).toEqual([lookalikeId]);
  });

  it("changes nothing: the tenant's rows after every search are the rows before", async () => {
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });
});

describe("GET /api/v1/keys: generated q is matched literally (threat model case 17)", () => {
  let tenant: TestTenant;
  let keys: KeyItem[];
  // Names made of the SQL fragments themselves: wildcards, quotes, escapes, comments, NUL.
  const names = [...new Set(FRAGMENTS.map((f) => f.trim()).filter(Boolean))];

  beforeAll(async () => {
    tenant = await createTenant("list filters generated q");
    for (const name of names) await createKey(tenant, { name, scopes: ["orders:read"] });
    keys = (await listAll(tenant)).items;
    expect(keys).toHaveLength(names.length + 1);
  });

  /** What q must find: the name contains it (ASCII case folded, as LIKE does), the start begins with it, or the id is it. */
  const fold = (text: string) => text.replace(/[A-Z]/g, (ch) => ch.toLowerCase());
  const literalMatches = (q: string) =>
    keys
      .filter((k) => fold(k.name).includes(fold(q)) || fold(k.start).startsWith(fold(q)) || k.id === q)
      .map((k) => k.id)
      .sort();

  const pieceOfAName = fc
    .constantFrom(...names)
    .chain((name) =>
      fc
        .tuple(fc.nat(name.length), fc.nat(name.length))
        .map(([a, b]) => name.slice(Math.min(a, b), Math.max(a, b))),
    );
  const searchText = fc
    .oneof(sqlishArb, pieceOfAName, fc.constantFrom("%", "_", "\\", "%%", "_%", "\\%", "kw_", "kw%"))
    .map((q) => q.trim())
    .filter((q) => q.length > 0 && q.length <= 100);

  it("lists exactly the keys that contain the text as typed, for generated text", async () => {
    await fc.assert(
      fc.asyncProperty(searchText, async (q) => {
        const response = await callJson<KeyPage>(
          "GET",
          `/api/v1/keys?${new URLSearchParams({ q, limit: "100" })}`,
          {
            key: tenant.adminKey,
          },
        );
        expect(response.status).toBe(200);
        expect(response.body.items.map((k) => k.id).sort()).toEqual(literalMatches(q));
      }),
      { numRuns: runs(100) },
    );
  });
});

describe("GET /api/v1/keys: a filtered list pages within the filter", () => {
  let tenant: TestTenant;

  beforeAll(async () => {
    tenant = await createTenant("list filters paging");
    // Matching and non-matching keys interleaved, so most pages of the unfiltered list mix both.
    for (let i = 0; i < 20; i += 1) {
      const key = await createKey(tenant, {
        name: i % 2 === 0 ? `match ${i}` : `other ${i}`,
        service_id: i % 3 === 0 ? "github" : "stripe",
        scopes: ["orders:read"],
      });
      if (i % 4 === 1 || i % 4 === 2) expect((await disable(tenant, key.id)).status).toBe(200);
    }
  });

  const filterCases: [string, Record<string, string>, (k: KeyItem) => boolean][] = [
    ["q", { q: "match" }, (k) => k.name.startsWith("match")],
    ["state", { state: "disabled" }, (k) => k.state === "disabled"],
    ["service_id", { service_id: "stripe" }, (k) => k.service_id === "stripe"],
    [
      "q, state and service_id together",
      { q: "match", state: "active", service_id: "stripe" },
      (k) => k.name.startsWith("match") && k.state === "active" && k.service_id === "stripe",
    ],
  ];
  for (const [label, filters, keeps] of filterCases) {
    it(`with ${label} and limit=2: every matching key exactly once, newest first, no other key`, async () => {
      const expected = (await listAll(tenant)).items.filter(keeps).map((k) => k.id);
      expect(expected.length).toBeGreaterThanOrEqual(3);
      const { items, pages } = await listAll(tenant, filters, 2);
      expect(items.map((k) => k.id)).toEqual(expected);
      expect(new Set(items.map((k) => k.id)).size).toBe(items.length);
      expect(pages).toBe(Math.ceil(expected.length / 2));
    });
  }
});

describe("GET /api/v1/keys: a full page of 100 keys", () => {
  it("is served whole, filtered or not (its rotation lookup binds the ids as one parameter: D1 allows 100)", async () => {
    const tenant = await createTenant("list filters full page");
    for (let i = 0; i < 100; i += 1) await createKey(tenant, { name: `bulk ${i}`, scopes: ["orders:read"] });
    const first = await callJson<KeyPage>("GET", "/api/v1/keys?limit=100", { key: tenant.adminKey });
    expect(first.status).toBe(200);
    expect(first.body.items).toHaveLength(100);
    expect(first.body.next_cursor).not.toBeNull();
    const filtered = await callJson<KeyPage>("GET", "/api/v1/keys?limit=100&q=bulk&state=active", {
      key: tenant.adminKey,
    });
    expect(filtered.status).toBe(200);
    expect(filtered.body.items).toHaveLength(100);
    expect(filtered.body.next_cursor).toBeNull();
  });
});
