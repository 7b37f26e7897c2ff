import { beforeAll, describe, expect, it } from "vitest";
import { randomBase62 } from "../../src/crypto/random";
import { call, callJson, createTenant, type TestTenant } from "../helpers/api";
import { snapshotTenantRows } from "../helpers/db";
import { stripeKey } from "./samples";

interface CredentialItem {
  id: string;
  name: string;
  service: string;
  environment: string;
  status: string;
}
interface CredentialPage {
  items: CredentialItem[];
  next_cursor: string | null;
}
type Environment = "development" | "staging" | "production";

const sendgridKey = () => `SG.${randomBase62(22)}.${randomBase62(43)}`;

async function store(
  tenant: TestTenant,
  service: "stripe" | "sendgrid",
  environment: Environment,
  name: string,
) {
  const fields =
    service === "stripe"
      ? { secret_key: stripeKey(environment === "production" ? "live" : "test") }
      : { api_key: sendgridKey() };
  const response = await callJson<CredentialItem>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service, environment, name, fields },
  });
  if (response.status !== 201) throw new Error(JSON.stringify(response.body));
  return { id: response.body.id, etag: response.headers.get("etag") as string };
}

/** Every page of the filtered list, in order; each page is checked against `limit`. */
async function listAll(tenant: TestTenant, filters: Record<string, string> = {}, limit = 100) {
  const items: CredentialItem[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const query = new URLSearchParams({ ...filters, limit: String(limit), ...(cursor ? { cursor } : {}) });
    const response = await callJson<CredentialPage>("GET", `/api/v1/credentials?${query}`, {
      key: tenant.adminKey,
    });
    expect(response.status).toBe(200);
    expect(response.body.items.length).toBeLessThanOrEqual(limit);
    items.push(...response.body.items);
    cursor = response.body.next_cursor;
    pages += 1;
  } while (cursor && pages < 50);
  return { items, pages };
}

const namesOf = async (tenant: TestTenant, filters: Record<string, string>) =>
  (await listAll(tenant, filters)).items.map((c) => c.name).sort();

describe("GET /api/v1/credentials filters: environment and q, with service and status", () => {
  let tenant: TestTenant;
  let other: TestTenant;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    tenant = await createTenant("credential filters");
    other = await createTenant("credential filters bystander");
    ids.devStripe = (await store(tenant, "stripe", "development", "Payments dev")).id;
    ids.stagingStripe = (await store(tenant, "stripe", "staging", "payments staging")).id;
    ids.prodStripe = (await store(tenant, "stripe", "production", "Payments prod")).id;
    ids.stagingMail = (await store(tenant, "sendgrid", "staging", "Mail staging")).id;
    ids.prodMail = (await store(tenant, "sendgrid", "production", "Mail prod")).id;
    const gone = await store(tenant, "stripe", "staging", "Payments retired");
    ids.deleted = gone.id;
    const deletion = await call("DELETE", `/api/v1/credentials/${gone.id}`, {
      key: tenant.adminKey,
      headers: { "if-match": gone.etag },
    });
    expect(deletion.status).toBe(204);
    ids.otherTenant = (await store(other, "stripe", "staging", "payments staging")).id;
  });

  it("environment alone lists only that environment's active credentials", async () => {
    expect(await namesOf(tenant, { environment: "staging" })).toEqual(["Mail staging", "payments staging"]);
    expect(await namesOf(tenant, { environment: "production" })).toEqual(["Mail prod", "Payments prod"]);
  });

  it("q matches a name anywhere ignoring ASCII case, or an id exactly, and is trimmed", async () => {
    expect(await namesOf(tenant, { q: "PAYMENTS" })).toEqual([
      "Payments dev",
      "Payments prod",
      "payments staging",
    ]);
    expect(await namesOf(tenant, { q: " prod " })).toEqual(["Mail prod", "Payments prod"]);
    expect(await namesOf(tenant, { q: ids.stagingMail as string })).toEqual(["Mail staging"]);
    expect(await namesOf(tenant, { q: (ids.stagingMail as string).slice(0, -1) })).toEqual([]);
    expect((await listAll(tenant, { q: "" })).items).toHaveLength(5);
  });

  it("filters combine with AND, with service and with status", async () => {
    expect(await namesOf(tenant, { environment: "staging", service: "stripe" })).toEqual([
      "payments staging",
    ]);
    expect(await namesOf(tenant, { environment: "staging", q: "mail" })).toEqual(["Mail staging"]);
    expect(await namesOf(tenant, { environment: "development", q: "mail" })).toEqual([]);
    expect(await namesOf(tenant, { status: "deleted", environment: "staging", q: "payments" })).toEqual([
      "Payments retired",
    ]);
    expect(await namesOf(tenant, { status: "deleted", environment: "production" })).toEqual([]);
  });

  it("never lists another tenant's credentials, whatever the filters (threat model case 1)", async () => {
    const everything: Record<string, string>[] = [
      {},
      { q: ids.otherTenant as string },
      { q: "payments staging" },
      { environment: "staging" },
      { status: "deleted" },
    ];
    for (const filters of everything) {
      const { items } = await listAll(tenant, filters);
      expect(items.map((c) => c.id)).not.toContain(ids.otherTenant);
    }
    expect(await namesOf(tenant, { q: ids.otherTenant as string })).toEqual([]);
    expect((await listAll(other, { q: "payments" })).items.map((c) => c.id)).toEqual([ids.otherTenant]);
  });

  it("refuses a bad environment or an over-long q with 422 naming the parameter", async () => {
    for (const [query, path] of [
      ["environment=prod", "environment"],
      ["environment=Production", "environment"],
      [`q=${"q".repeat(101)}`, "q"],
    ] as const) {
      const response = await callJson<{ code: string; errors: { path: string }[] }>(
        "GET",
        `/api/v1/credentials?${query}`,
        { key: tenant.adminKey },
      );
      expect([query, response.status, response.body.code]).toEqual([query, 422, "VALIDATION_FAILED"]);
      expect(response.body.errors.map((e) => e.path)).toEqual([path]);
    }
  });
});

describe("GET /api/v1/credentials: SQL and LIKE metacharacters and NUL in q match literally (threat model case 17)", () => {
  let tenant: TestTenant;
  let before: string;
  // 100 characters: a LIKE pattern of it would exceed D1's 50-byte limit on LIKE patterns.
  const long = `long name ${"y".repeat(90)}`;
  const names = [
    "quota 100% used",
    "quota 1000 used",
    "api_key main",
    "apiXkey main",
    "ci\\deploy",
    "cideploy",
    "nul\u0000name",
    long,
  ];

  beforeAll(async () => {
    tenant = await createTenant("credential filters metacharacters");
    for (const name of names) await store(tenant, "sendgrid", "development", name);
    before = await snapshotTenantRows(tenant.id);
  });

  const cases: [q: string, expected: string[]][] = [
    ["100%", ["quota 100% used"]],
    ["%", ["quota 100% used"]],
    ["i_k", ["api_key main"]],
    ["_", ["api_key main"]],
    ["i\\d", ["ci\\deploy"]],
    ["\\", ["ci\\deploy"]],
    ["\u0000", ["nul\u0000name"]],
    ["l\u0000x", []],
    ["' OR '1'='1", []],
  ];
  for (const [q, expected] of cases) {
    it(`q=${JSON.stringify(q)} lists ${expected.length ? expected.map((name) => JSON.stringify(name)).join(", ") : "nothing"}`, async () => {
      expect(await namesOf(tenant, { q })).toEqual(expected);
    });
  }

  it("a 100-character q finds the credential whose whole name it is", async () => {
    expect(await namesOf(tenant, { q: long.toUpperCase() })).toEqual([long]);
  });

  it("changes nothing: the tenant's rows after every search are the rows before", async () => {
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });
});

describe("GET /api/v1/credentials: a filtered list pages within the filter", () => {
  let tenant: TestTenant;
  const environments: Environment[] = ["development", "staging", "production"];

  beforeAll(async () => {
    tenant = await createTenant("credential filters paging");
    // Matching and non-matching credentials interleaved across environments.
    for (let i = 0; i < 18; i += 1)
      await store(
        tenant,
        "sendgrid",
        environments[i % 3] as Environment,
        i % 2 === 0 ? `match ${i}` : `other ${i}`,
      );
  });

  const filterCases: [string, Record<string, string>, (c: CredentialItem) => boolean][] = [
    ["q", { q: "match" }, (c) => c.name.startsWith("match")],
    ["environment", { environment: "staging" }, (c) => c.environment === "staging"],
    [
      "q and environment together",
      { q: "match", environment: "development" },
      (c) => c.name.startsWith("match") && c.environment === "development",
    ],
  ];
  for (const [label, filters, keeps] of filterCases) {
    it(`with ${label} and limit=2: every matching credential exactly once, newest first, no other`, async () => {
      const expected = (await listAll(tenant)).items.filter(keeps).map((c) => c.id);
      expect(expected.length).toBeGreaterThanOrEqual(3);
      const { items, pages } = await listAll(tenant, filters, 2);
      expect(items.map((c) => c.id)).toEqual(expected);
      expect(new Set(items.map((c) => c.id)).size).toBe(items.length);
      expect(pages).toBe(Math.ceil(expected.length / 2));
    });
  }
});

describe("GET /api/v1/credentials: a full page of 100 credentials", () => {
  it("is served whole, filtered or not (its rotation lookups bind the ids as one parameter: D1 allows 100)", async () => {
    const tenant = await createTenant("credential filters full page");
    for (let i = 0; i < 101; i += 1) await store(tenant, "sendgrid", "staging", `bulk ${i}`);
    const first = await callJson<CredentialPage>("GET", "/api/v1/credentials?limit=100", {
      key: tenant.adminKey,
    });
    expect(first.status).toBe(200);
    expect(first.body.items).toHaveLength(100);
    expect(first.body.next_cursor).not.toBeNull();
    const filtered = await callJson<CredentialPage>(
      "GET",
      "/api/v1/credentials?limit=100&environment=staging&q=bulk",
      { key: tenant.adminKey },
    );
    expect(filtered.status).toBe(200);
    expect(filtered.body.items).toHaveLength(100);
    expect(filtered.body.next_cursor).not.toBeNull();
  });
});
