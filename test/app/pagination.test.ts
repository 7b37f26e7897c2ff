/**
 * Cursor pagination of the three lists: GET /api/v1/keys and GET /api/v1/credentials (`limit` +
 * `cursor` -> `next_cursor`, newest first on (created_at, id)) and GET /api/v1/audit (`limit` +
 * `before_seq` -> `next_before_seq`, newest first on seq). Every item is listed exactly once across
 * the pages, the last page says so (no empty page after it), and items created between two page
 * fetches never make a pre-existing item repeat or go missing.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { stripeKey } from "../credentials/samples";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";

interface Page {
  ids: string[];
  next: string | null;
}

type Lister = (tenant: TestTenant, limit: number, next: string | null) => Promise<Page>;

const listKeys: Lister = async (tenant, limit, cursor) => {
  const query = `limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
  const { status, body } = await callJson<{ items: { id: string }[]; next_cursor: string | null }>(
    "GET",
    `/api/v1/keys?${query}`,
    { key: tenant.adminKey },
  );
  expect(status).toBe(200);
  return { ids: body.items.map((item) => item.id), next: body.next_cursor };
};

const listCredentials: Lister = async (tenant, limit, cursor) => {
  const query = `limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
  const { status, body } = await callJson<{ items: { id: string }[]; next_cursor: string | null }>(
    "GET",
    `/api/v1/credentials?${query}`,
    { key: tenant.adminKey },
  );
  expect(status).toBe(200);
  return { ids: body.items.map((item) => item.id), next: body.next_cursor };
};

const listAudit: Lister = async (tenant, limit, beforeSeq) => {
  const query = `limit=${limit}${beforeSeq ? `&before_seq=${beforeSeq}` : ""}`;
  const { status, body } = await callJson<{ items: { seq: number }[]; next_before_seq: number | null }>(
    "GET",
    `/api/v1/audit?${query}`,
    { key: tenant.adminKey },
  );
  expect(status).toBe(200);
  return {
    ids: body.items.map((item) => String(item.seq)),
    next: body.next_before_seq === null ? null : String(body.next_before_seq),
  };
};

/**
 * Follows the cursors to the end, calling `between` after each page but the last; returns the pages.
 * Stops with a failure rather than looping if a cursor ever repeats.
 */
async function walk(
  list: Lister,
  tenant: TestTenant,
  limit: number,
  between: () => Promise<void> = async () => {},
): Promise<Page[]> {
  const pages: Page[] = [];
  const cursors = new Set<string>();
  let next: string | null = null;
  do {
    const page = await list(tenant, limit, next);
    pages.push(page);
    next = page.next;
    if (next !== null) {
      expect(cursors.has(next), "a cursor repeated").toBe(false);
      cursors.add(next);
      await between();
    }
  } while (next !== null);
  return pages;
}

function expectEachOnce(pages: Page[], expected: string[], limit: number): void {
  const seen = pages.flatMap((page) => page.ids);
  expect(seen).toHaveLength(new Set(seen).size);
  expect([...seen].sort()).toEqual([...expected].sort());
  // Full pages, then one short or full last page: never an empty page behind a cursor.
  for (const page of pages.slice(0, -1)) expect(page.ids).toHaveLength(limit);
  expect(pages.at(-1)?.ids.length).toBeGreaterThan(0);
}

async function keyIdsOf(tenantId: string): Promise<string[]> {
  const { results } = await env.DB.prepare("SELECT id FROM api_keys WHERE tenant_id = ?")
    .bind(tenantId)
    .all<{ id: string }>();
  return results.map((row) => row.id);
}

async function credentialIdsOf(tenantId: string): Promise<string[]> {
  const { results } = await env.DB.prepare(
    "SELECT id FROM credentials WHERE tenant_id = ? AND status = 'active'",
  )
    .bind(tenantId)
    .all<{ id: string }>();
  return results.map((row) => row.id);
}

async function auditSeqsOf(tenantId: string): Promise<string[]> {
  const { results } = await env.DB.prepare("SELECT seq FROM audit_log WHERE tenant_id = ?")
    .bind(tenantId)
    .all<{ seq: number }>();
  return results.map((row) => String(row.seq));
}

async function createCredential(tenant: TestTenant, name: string): Promise<string> {
  const { status, body } = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service: "stripe", environment: "development", name, fields: { secret_key: stripeKey() } },
  });
  expect(status).toBe(201);
  return body.id;
}

/**
 * Gives `ids` one shared created_at, so the order among them rests on the id tie-breaker alone (rows
 * created in the same millisecond are the case a created_at-only cursor gets wrong).
 */
async function sameCreatedAt(table: "api_keys" | "credentials", ids: string[]): Promise<void> {
  await env.DB.prepare(
    `UPDATE ${table} SET created_at = 1700000000000 WHERE id IN (${ids.map(() => "?").join(", ")})`,
  )
    .bind(...ids)
    .run();
}

describe("GET /api/v1/keys pagination", () => {
  it("lists every key exactly once across pages, rows sharing a created_at included, and ends without an empty page", async () => {
    const tenant = await createTenant("paging keys");
    const created = [];
    for (let i = 0; i < 11; i++) created.push((await createKey(tenant, { name: `key ${i}` })).id);
    await sameCreatedAt("api_keys", created.slice(2, 9));
    const all = await keyIdsOf(tenant.id);
    expect(all).toHaveLength(12); // the admin key and 11 more

    for (const limit of [1, 4, 5, 12, 100]) {
      const pages = await walk(listKeys, tenant, limit);
      expectEachOnce(pages, all, limit);
      expect(pages).toHaveLength(Math.ceil(all.length / limit));
    }
  });

  it("never repeats or skips a pre-existing key while new keys are created between page fetches", async () => {
    const tenant = await createTenant("paging keys live");
    for (let i = 0; i < 9; i++) await createKey(tenant, { name: `old ${i}` });
    const before = await keyIdsOf(tenant.id);
    const added: string[] = [];
    const pages = await walk(listKeys, tenant, 3, async () => {
      added.push((await createKey(tenant, { name: `new ${added.length}` })).id);
    });
    const seen = pages.flatMap((page) => page.ids);
    expect(seen).toHaveLength(new Set(seen).size);
    for (const id of before) expect(seen.filter((s) => s === id)).toHaveLength(1);
    // Anything else listed is one of the keys created meanwhile (newest first: in fact none are).
    expect(seen.filter((id) => !before.includes(id)).every((id) => added.includes(id))).toBe(true);
    expect(added.length).toBeGreaterThan(0);
  });

  it("does not list another tenant's keys on any page", async () => {
    const tenant = await createTenant("paging keys own");
    const other = await createTenant("paging keys other");
    for (let i = 0; i < 3; i++) await createKey(other, { name: `other ${i}` });
    await createKey(tenant, { name: "mine" });
    const pages = await walk(listKeys, tenant, 1);
    expectEachOnce(pages, await keyIdsOf(tenant.id), 1);
  });
});

describe("GET /api/v1/credentials pagination", () => {
  it("lists every credential exactly once across pages, rows sharing a created_at included, and ends without an empty page", async () => {
    const tenant = await createTenant("paging credentials");
    const created = [];
    for (let i = 0; i < 7; i++) created.push(await createCredential(tenant, `credential ${i}`));
    await sameCreatedAt("credentials", created.slice(1, 6));
    const all = await credentialIdsOf(tenant.id);
    expect(all).toHaveLength(7);

    for (const limit of [1, 3, 7, 20]) {
      const pages = await walk(listCredentials, tenant, limit);
      expectEachOnce(pages, all, limit);
      expect(pages).toHaveLength(Math.ceil(all.length / limit));
    }
  });

  it("never repeats or skips a pre-existing credential while new ones are created between page fetches", async () => {
    const tenant = await createTenant("paging credentials live");
    for (let i = 0; i < 6; i++) await createCredential(tenant, `old ${i}`);
    const before = await credentialIdsOf(tenant.id);
    const added: string[] = [];
    const pages = await walk(listCredentials, tenant, 2, async () => {
      added.push(await createCredential(tenant, `new ${added.length}`));
    });
    const seen = pages.flatMap((page) => page.ids);
    expect(seen).toHaveLength(new Set(seen).size);
    for (const id of before) expect(seen.filter((s) => s === id)).toHaveLength(1);
    expect(seen.filter((id) => !before.includes(id)).every((id) => added.includes(id))).toBe(true);
    expect(added.length).toBeGreaterThan(0);
  });
});

describe("GET /api/v1/audit pagination", () => {
  it("lists every audit entry exactly once, newest first, and gives no next_before_seq when exactly `limit` entries remain", async () => {
    const tenant = await createTenant("paging audit");
    for (let i = 0; i < 6; i++) await createKey(tenant, { name: `audited ${i}` });
    const all = await auditSeqsOf(tenant.id);
    expect(all.length).toBeGreaterThanOrEqual(8);

    // Includes limits that divide the total exactly: the last full page must end the walk.
    const divisors = [1, 2, 4].filter((limit) => all.length % limit === 0);
    expect(divisors.length).toBeGreaterThan(0);
    for (const limit of [...divisors, 3, 5, all.length, 100]) {
      const pages = await walk(listAudit, tenant, limit);
      expectEachOnce(pages, all, limit);
      expect(pages).toHaveLength(Math.ceil(all.length / limit));
      const seqs = pages.flatMap((page) => page.ids.map(Number));
      expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
    }
  });

  it("never repeats or skips a pre-existing entry while new entries are written between page fetches", async () => {
    const tenant = await createTenant("paging audit live");
    for (let i = 0; i < 5; i++) await createKey(tenant, { name: `old ${i}` });
    const before = await auditSeqsOf(tenant.id);
    const pages = await walk(listAudit, tenant, 2, async () => {
      await createKey(tenant, { name: "written meanwhile" });
    });
    const seen = pages.flatMap((page) => page.ids);
    expect(seen).toHaveLength(new Set(seen).size);
    // Entries written meanwhile have higher seqs than the cursor: the walk lists exactly the old ones.
    expect([...seen].sort()).toEqual([...before].sort());
    expect((await auditSeqsOf(tenant.id)).length).toBeGreaterThan(before.length);
  });
});
