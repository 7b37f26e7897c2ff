/**
 * GET /api/v1/audit filters (the console's audit page): by action or action family, by actor, by time range,
 * each combined with `before_seq` paging so a filtered walk still lists every matching entry exactly once.
 */
import { describe, expect, it } from "vitest";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";

type Entry = { seq: number; action: string; actor_id: string; at: string };
type AuditPage = { items: Entry[]; next_before_seq: number | null };

async function audit(tenant: TestTenant, query: string) {
  return callJson<AuditPage & { code?: string }>("GET", `/api/v1/audit?${query}`, { key: tenant.adminKey });
}

/** Every page of a filtered listing, `limit` at a time. */
async function walk(tenant: TestTenant, filter: string, limit: number): Promise<Entry[]> {
  const entries: Entry[] = [];
  let before: number | null = null;
  for (let page = 0; page < 50; page++) {
    const { status, body } = await audit(
      tenant,
      `${filter}&limit=${limit}${before ? `&before_seq=${before}` : ""}`,
    );
    expect(status).toBe(200);
    entries.push(...body.items);
    before = body.next_before_seq;
    if (before === null) return entries;
  }
  throw new Error("the cursor never ended");
}

async function tenantWithHistory() {
  const tenant = await createTenant("audit filters");
  const other = await createKey(tenant, { name: "second admin", role: "admin" });
  await createKey(tenant, { name: "svc one" });
  await createKey(tenant, { name: "svc two" });
  const rule = await callJson("POST", "/api/v1/monitoring/rules", {
    key: other.key,
    body: { kind: "retest_failing", name: "failing re-tests" },
  });
  expect(rule.status).toBe(201);
  return { tenant, other };
}

describe("audit log filters", () => {
  it("lists one action family, or one action, across pages, each entry once", async () => {
    const { tenant } = await tenantWithHistory();
    const keys = await walk(tenant, "action=key", 1);
    // The tenant's own admin key, the second admin and the two service keys.
    expect(keys.map((e) => e.action)).toEqual(Array(4).fill("key.create"));
    expect(new Set(keys.map((e) => e.seq)).size).toBe(4);
    expect((await walk(tenant, "action=rule.create", 2)).map((e) => e.action)).toEqual(["rule.create"]);
    expect(await walk(tenant, "action=rule.delete", 2)).toEqual([]);
    // A family is a whole segment: `ke` is not `key`.
    expect(await walk(tenant, "action=ke", 5)).toEqual([]);
  });

  it("filters by actor and by time range", async () => {
    const { tenant, other } = await tenantWithHistory();
    const byOther = await walk(tenant, `actor_id=${other.id}`, 10);
    expect(byOther.map((e) => e.action)).toEqual(["rule.create"]);

    const all = await walk(tenant, "", 100);
    const newest = Date.parse(all[0]?.at ?? "");
    const future = new Date(newest + 86_400_000).toISOString();
    const past = new Date(Date.parse(all.at(-1)?.at ?? "") - 86_400_000).toISOString();
    expect(await walk(tenant, `since=${encodeURIComponent(future)}`, 10)).toEqual([]);
    expect(await walk(tenant, `until=${encodeURIComponent(past)}`, 10)).toEqual([]);
    const window = await walk(
      tenant,
      `since=${encodeURIComponent(past)}&until=${encodeURIComponent(future)}`,
      2,
    );
    expect(window.map((e) => e.seq)).toEqual(all.map((e) => e.seq));
    // Unix seconds too; `until` is exclusive.
    expect(await walk(tenant, `until=${Math.floor(Date.parse(past) / 1000)}`, 10)).toEqual([]);
  });

  it("refuses a malformed filter with a problem naming it", async () => {
    const tenant = await createTenant("audit filter refused");
    const refused = await audit(tenant, "action=key%25");
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe("VALIDATION_FAILED");
    expect((await audit(tenant, "since=yesterday")).status).toBe(422);
  });
});
