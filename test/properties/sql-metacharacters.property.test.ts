/**
 * threat model case 17: SQL metacharacters in names, metadata, path ids, cursors and query
 * parameters (limit, environment, service_id, state, q, cursor, days, before_seq, and unknown
 * sort/order params) cause no 5xx, are stored and returned byte-for-byte when they are legal
 * data, change nothing beyond the one intended row, and leave every table in place.
 *
 * Also stored-text fidelity: what a client sends as text is what is stored and what every later
 * read returns (or the request is refused): NUL, RTL overrides, emoji, combining marks, astral
 * characters, and the ill-formed case (lone surrogates).
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { runs } from "../setup/fast-check";
import { legalNameArb, sqlishArb } from "./sql-arbitraries";
import {
  counts,
  delta,
  expectNotRateLimited,
  expectProblem,
  expectUnchanged,
  NO_CHANGE,
  send,
  TenantBudget,
  tableNames,
} from "./worker-support";

let bystander: TestTenant;
let bystanderSnapshot: unknown;
let tablesBefore: string[];

async function tenantRows(tenantId: string) {
  const keys = await env.DB.prepare(
    "SELECT id, name, metadata, scopes, revoked_at, enabled, updated_at FROM api_keys WHERE tenant_id = ? ORDER BY id",
  )
    .bind(tenantId)
    .all();
  const row = await env.DB.prepare("SELECT * FROM tenants WHERE id = ?").bind(tenantId).first();
  const audit = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE tenant_id = ?")
    .bind(tenantId)
    .first<{ n: number }>();
  return { keys: keys.results, tenant: row, audit: audit?.n };
}

beforeAll(async () => {
  bystander = await createTenant("SQL bystander");
  await createKey(bystander, { name: "bystander key", metadata: { note: "keep" } });
  bystanderSnapshot = await tenantRows(bystander.id);
  tablesBefore = await tableNames();
  expect(tablesBefore).toEqual(expect.arrayContaining(["api_keys", "audit_log", "data_keys", "tenants"]));
});

async function expectWorldIntact(): Promise<void> {
  expect(await tableNames()).toEqual(tablesBefore);
  expect(await tenantRows(bystander.id)).toEqual(bystanderSnapshot);
}

describe("SQL metacharacters in stored data", () => {
  it("key names and metadata made of SQL fragments are stored and returned exactly, one row per create", async () => {
    const budget = new TenantBudget("SQL create", 150);
    await fc.assert(
      fc.asyncProperty(legalNameArb, sqlishArb, sqlishArb, async (name, metaKey, metaValue) => {
        const owner = await budget.take(3);
        const metadata = { [metaKey.slice(0, 64)]: metaValue.slice(0, 1024), plain: "x" };
        const before = await counts();
        const created = await callJson<{ id: string; name: string; metadata: unknown }>(
          "POST",
          "/api/v1/keys",
          {
            key: owner.adminKey,
            body: { name, metadata },
          },
        );
        expectNotRateLimited(created.status, "POST /api/v1/keys");
        expect(created.status).toBe(201);
        expect(created.body.name).toBe(name.trim());
        expect(created.body.metadata).toEqual(metadata);
        expect(delta(before, await counts())).toEqual({ ...NO_CHANGE, apiKeys: 1, auditLog: 1 });

        const stored = await env.DB.prepare("SELECT name, metadata FROM api_keys WHERE id = ?")
          .bind(created.body.id)
          .first<{ name: string; metadata: string }>();
        expect(stored?.name).toBe(name.trim());
        expect(JSON.parse(stored?.metadata ?? "null")).toEqual(metadata);

        const read = await callJson<{ name: string; metadata: unknown }>(
          "GET",
          `/api/v1/keys/${created.body.id}`,
          {
            key: owner.adminKey,
          },
        );
        expect(read.status).toBe(200);
        expect(read.body.name).toBe(name.trim());
        expect(read.body.metadata).toEqual(metadata);

        // Renaming touches exactly that row. (last_used_at is left out: the usage recorder bumps
        // it for the calling admin key on every request.)
        const othersQuery = `SELECT id, name, metadata, scopes, enabled, revoked_at, expires_at, rotated_to_id,
                                    updated_at, hash FROM api_keys WHERE tenant_id = ? AND id != ? ORDER BY id`;
        const others = await env.DB.prepare(othersQuery).bind(owner.id, created.body.id).all();
        const renamed = await callJson("PATCH", `/api/v1/keys/${created.body.id}`, {
          key: owner.adminKey,
          body: { name: `${name.trim().slice(0, 97)}'--` },
        });
        expect(renamed.status).toBe(200);
        const othersAfter = await env.DB.prepare(othersQuery).bind(owner.id, created.body.id).all();
        expect(othersAfter.results).toEqual(others.results);
      }),
      { numRuns: runs(40) },
    );
    await expectWorldIntact();
  });

  it("tenant names made of SQL fragments are stored exactly and create exactly one tenant", async () => {
    await fc.assert(
      fc.asyncProperty(legalNameArb, async (name) => {
        const before = await counts();
        const created = await callJson<{ tenant: { id: string; name: string } }>("POST", "/api/v1/tenants", {
          key: env.BOOTSTRAP_TOKEN,
          body: { name },
        });
        expect(created.status).toBe(201);
        expect(created.body.tenant.name).toBe(name.trim());
        expect(delta(before, await counts())).toEqual({
          ...NO_CHANGE,
          tenants: 1,
          dataKeys: 1,
          apiKeys: 1,
          auditLog: 2,
        });
        const stored = await env.DB.prepare("SELECT name FROM tenants WHERE id = ?")
          .bind(created.body.tenant.id)
          .first<{ name: string }>();
        expect(stored?.name).toBe(name.trim());
      }),
      { numRuns: runs(25) },
    );
    await expectWorldIntact();
  });
});

describe("SQL metacharacters in ids, cursors and query parameters", () => {
  // Each test gets its own tenant (the per-tenant limiter allows 600 requests a minute) with
  // one victim key that every probe checks is left exactly as it was.
  let tenant: TestTenant;
  let victimId: string;

  beforeEach(async () => {
    tenant = await createTenant("SQL probe tenant");
    victimId = (await createKey(tenant, { name: "victim", metadata: { a: "b" } })).id;
  });

  /** Every call here must be a 2xx or a problem+json 4xx, and must change nothing at all. */
  async function probe(method: string, path: string, body?: unknown) {
    const before = await counts(victimId);
    const response = await send(method, path, {
      bearer: tenant.adminKey,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    expectNotRateLimited(response.status, `${method} ${path}`);
    expect(response.status, `${method} ${path} → ${response.text.slice(0, 200)}`).toBeLessThan(500);
    if (response.status >= 400) expectProblem(response);
    expectUnchanged(before, await counts(victimId), `${method} ${path}`);
    return response;
  }

  const query = (params: Record<string, string>) => `?${new URLSearchParams(params).toString()}`;

  it("list filters (environment, service_id, state, q, limit, cursor, sort/order) never 5xx, never widen the result, change nothing", async () => {
    const ownIds = new Set(
      (
        await env.DB.prepare("SELECT id FROM api_keys WHERE tenant_id = ?")
          .bind(tenant.id)
          .all<{ id: string }>()
      ).results.map((r) => r.id),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          "environment",
          "service_id",
          "state",
          "q",
          "limit",
          "cursor",
          "sort",
          "order",
          "tenant_id",
        ),
        sqlishArb,
        async (param, value) => {
          const response = await probe("GET", `/api/v1/keys${query({ [param]: value })}`);
          if (param === "environment" || param === "state") expect(response.status).toBe(422);
          if (param === "service_id") expect(response.status).toBe(value.length <= 64 ? 200 : 422);
          if (param === "q") {
            expect(response.status).toBe(value.trim().length <= 100 ? 200 : 422);
            if (response.status === 200) await expectSearchResult(value.trim(), response.text);
          }
          if (param === "limit") {
            // z.coerce.number(): Number(value) must be an integer in 1..100, else 422.
            const n = Number(value);
            expect(response.status).toBe(Number.isInteger(n) && n >= 1 && n <= 100 ? 200 : 422);
          }
          // An empty cursor means "first page"; anything else that is not a real cursor is refused.
          if (param === "cursor") expect(value === "" ? [200] : [400, 422]).toContain(response.status);
          if (response.status === 200) {
            const items = (JSON.parse(response.text) as { items: { id: string }[] }).items;
            for (const item of items)
              expect(ownIds.has(item.id), "a filter leaked another tenant's key").toBe(true);
          }
        },
      ),
      { numRuns: runs(120) },
    );
    await expectWorldIntact();
  });

  /**
   * `q` matched literally: exactly the first page of the tenant's keys whose name contains it (ASCII
   * case-insensitive, as SQLite's LIKE folds case), whose start begins with it, or whose id is it.
   */
  async function expectSearchResult(q: string, text: string) {
    const fold = (s: string) => s.replace(/[A-Z]/g, (ch) => ch.toLowerCase());
    const { results } = await env.DB.prepare(
      "SELECT id, name, start FROM api_keys WHERE tenant_id = ? ORDER BY created_at DESC, id DESC",
    )
      .bind(tenant.id)
      .all<{ id: string; name: string; start: string }>();
    const expected = results
      .filter((k) => !q || fold(k.name).includes(fold(q)) || fold(k.start).startsWith(fold(q)) || k.id === q)
      .slice(0, 20)
      .map((k) => k.id);
    const items = (JSON.parse(text) as { items: { id: string }[] }).items;
    expect(items.map((k) => k.id)).toEqual(expected);
  }

  it("base64 cursors carrying SQL are refused with 400 unless they decode to the strict cursor grammar", async () => {
    await fc.assert(
      fc.asyncProperty(sqlishArb, fc.integer({ min: 0, max: 2 ** 40 }), async (sqlish, createdAt) => {
        // A "." after the id is the pinned decodeCursor leniency (sql-metacharacters-vault): left out here.
        fc.pre(!sqlish.includes("."));
        const decoded = `${createdAt}.key_${sqlish}`;
        const bytes = new TextEncoder().encode(decoded);
        let binary = "";
        for (const b of bytes) binary += String.fromCharCode(b);
        const cursor = btoa(binary).replaceAll("=", "");
        fc.pre(cursor.length <= 200);
        const response = await probe("GET", `/api/v1/keys${query({ cursor })}`);
        if (/^\d{1,15}\.[a-z]+_[0-9A-Za-z]{1,40}$/.test(decoded)) {
          // e.g. "0.key_0x00": a grammatical cursor, bound as a parameter; it only pages the caller's keys.
          expect(response.status).toBe(200);
          const items = (JSON.parse(response.text) as { items: { id: string }[] }).items;
          const own = await env.DB.prepare("SELECT count(*) AS n FROM api_keys WHERE tenant_id = ?")
            .bind(tenant.id)
            .first<{ n: number }>();
          expect(items.length).toBeLessThanOrEqual(own?.n ?? 0);
        } else {
          expect(response.status).toBe(400);
          expect(JSON.parse(response.text)).toMatchObject({ code: "BAD_REQUEST" });
        }
      }),
      { numRuns: runs(40) },
    );
  });

  it("key ids in the path made of SQL are plain 404s for read, update, revoke, rotate, delete and usage", async () => {
    await fc.assert(
      fc.asyncProperty(
        // "." and ".." are dot-segments the URL parser resolves away: not ids at all.
        sqlishArb.filter((s) => s.length > 0 && s.length <= 64 && s !== "." && s !== ".."),
        async (id) => {
          const path = `/api/v1/keys/${encodeURIComponent(id)}`;
          for (const [method, suffix, body] of [
            ["GET", "", undefined],
            ["PATCH", "", { name: "x" }],
            ["POST", "/revoke", undefined],
            ["POST", "/rotate", { grace_seconds: 0 }],
            ["DELETE", "", undefined],
            ["GET", "/usage", undefined],
          ] as const) {
            const response = await probe(method, `${path}${suffix}`, body);
            expect(response.status, `${method} ${path}${suffix}`).toBe(404);
          }
        },
      ),
      { numRuns: runs(20) },
    );
    await expectWorldIntact();
  });

  it("usage `days` and audit `limit`/`before_seq` made of SQL never 5xx and change nothing", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("days", "limit", "before_seq"), sqlishArb, async (param, value) => {
        const path =
          param === "days"
            ? `/api/v1/keys/${victimId}/usage${query({ days: value })}`
            : `/api/v1/audit${query({ [param]: value })}`;
        const response = await probe("GET", path);
        expect([200, 422]).toContain(response.status);
      }),
      { numRuns: runs(60) },
    );
    await expectWorldIntact();
  });

  it("verify with SQL as the key is a clean INVALID_FORMAT verdict", async () => {
    await fc.assert(
      fc.asyncProperty(
        sqlishArb.map((s) => s.slice(0, 512)),
        async (key) => {
          const response = await probe("POST", "/api/v1/keys/verify", { key });
          expect(response.status).toBe(200);
          expect(JSON.parse(response.text)).toEqual({ valid: false, code: "INVALID_FORMAT" });
        },
      ),
      { numRuns: runs(40) },
    );
  });

  it("the schema is intact at the end: every table still exists and the bystander tenant is untouched", async () => {
    await expectWorldIntact();
    const integrity = await env.DB.prepare("PRAGMA quick_check").first<Record<string, string>>();
    expect(Object.values(integrity ?? {})).toEqual(["ok"]);
  });
});

const wellFormedNameArb = fc
  .oneof(
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 40 }),
    fc.string({ unit: "binary", minLength: 1, maxLength: 40 }),
    fc.constantFrom("a\u0000b", "\u202eevil\u202c", "🔑🗝️", "e\u0301", "𝔘𝔫𝔦", "\ufeffbom", "tab\there"),
  )
  .filter((s) => s.isWellFormed() && s.trim().length > 0 && s.trim().length <= 100);

async function createAndReadBack(adminKey: string, name: string) {
  const created = await callJson<{ id: string; name: string }>("POST", "/api/v1/keys", {
    key: adminKey,
    body: { name, metadata: { label: name.slice(0, 1024) } },
  });
  if (created.status !== 201) return { created, stored: null, read: null };
  const stored = await env.DB.prepare("SELECT name, metadata FROM api_keys WHERE id = ?")
    .bind(created.body.id)
    .first<{ name: string; metadata: string }>();
  const read = await callJson<{ name: string; metadata: { label: string } }>(
    "GET",
    `/api/v1/keys/${created.body.id}`,
    { key: adminKey },
  );
  return { created, stored, read };
}

describe("stored text fidelity", () => {
  it("well-formed Unicode names (NUL, RTL, emoji, combining, astral) round-trip exactly through D1", async () => {
    const budget = new TenantBudget("text fidelity", 300);
    await fc.assert(
      fc.asyncProperty(wellFormedNameArb, async (name) => {
        const owner = await budget.take(2);
        const { created, stored, read } = await createAndReadBack(owner.adminKey, name);
        expect(created.status).toBe(201);
        expect(created.body.name).toBe(name.trim());
        expect(stored?.name).toBe(name.trim());
        expect(read?.body.name).toBe(name.trim());
        expect(read?.body.metadata.label).toBe(name.slice(0, 1024));
      }),
      { numRuns: runs(60) },
    );
  });

  // Lone surrogates (JSON "\ud800") used to be stored by D1 as U+FFFD bytes while the 201 body
  // echoed the original: the API reported a value it had not stored. Refused since commit ab8c218.
  it("a name with a lone surrogate is either refused with 422 or stored exactly", async () => {
    const owner = await createTenant("lone surrogate");
    for (const name of ["a\ud800b", "\udfff", "x\udc00\ud800y"]) {
      const { created, stored, read } = await createAndReadBack(owner.adminKey, name);
      if (created.status === 422) continue;
      expect(created.status).toBe(201);
      // Compared as JSON (lone surrogates escaped): a raw lone surrogate in an assertion message
      // breaks the test runner's UTF-8 WebSocket to workerd.
      expect(JSON.stringify(stored?.name)).toBe(JSON.stringify(created.body.name));
      expect(JSON.stringify(read?.body.name)).toBe(JSON.stringify(created.body.name));
    }
  });

  it("a tenant name with a lone surrogate is either refused with 422 or stored exactly", async () => {
    const created = await callJson<{ tenant: { id: string; name: string } }>("POST", "/api/v1/tenants", {
      key: env.BOOTSTRAP_TOKEN,
      body: { name: "t\ud800" },
    });
    if (created.status === 422) return;
    expect(created.status).toBe(201);
    const stored = await env.DB.prepare("SELECT name FROM tenants WHERE id = ?")
      .bind(created.body.tenant.id)
      .first<{ name: string }>();
    expect(JSON.stringify(stored?.name)).toBe(JSON.stringify(created.body.tenant.name));
  });

  it("a lone surrogate anywhere in a JSON body (nested values, metadata keys) is refused and creates nothing", async () => {
    const owner = await createTenant("lone surrogate paths");
    for (const body of [
      '{"name":"ok","metadata":{"k":"\\udfff"}}',
      '{"name":"ok","metadata":{"\\ud800":"v"}}',
      '{"name":"ok","scopes":["a","\\udc00"]}',
      '{"name":"ok","ip_allowlist":[["\\ud800"]]}',
    ]) {
      const before = await counts();
      const response = await send("POST", "/api/v1/keys", { body, bearer: owner.adminKey });
      expect(response.status).toBe(422);
      expectProblem(response);
      expect(delta(before, await counts())).toEqual(NO_CHANGE);
    }
  });

  // Regression: the check once ran only for the exact lowercase "application/json".
  it("the lone-surrogate refusal cannot be bypassed with another spelling of the JSON content type", async () => {
    const owner = await createTenant("content-type bypass");
    for (const contentType of [
      "Application/JSON",
      "APPLICATION/JSON; charset=utf-8",
      "application/vnd.api+json",
    ]) {
      const before = await counts();
      const response = await send("POST", "/api/v1/keys", {
        body: '{"name":"x\\ud800y"}',
        bearer: owner.adminKey,
        contentType,
      });
      expect(response.status, contentType).toBe(422);
      expect(delta(before, await counts())).toEqual(NO_CHANGE);
    }
  });
});
