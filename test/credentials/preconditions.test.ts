import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { assertIfMatch } from "../../src/credentials/preconditions";
import { ApiError } from "../../src/errors";
import { call, callJson, createTenant, type TestTenant } from "../helpers/api";
import { snapshotTenantRows } from "../helpers/db";
import { network } from "../setup/network";
import { stripeKey } from "./samples";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

interface Credential {
  id: string;
  name: string;
  version: number;
  security_level: string;
  status: string;
}

async function store(tenant: TestTenant, body: Record<string, unknown> = {}) {
  const response = await callJson<Credential>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service: "stripe", environment: "development", fields: { secret_key: stripeKey() }, ...body },
  });
  if (response.status !== 201) throw new Error(JSON.stringify(response.body));
  return { id: response.body.id, etag: response.headers.get("etag") as string };
}

async function currentEtag(tenant: TestTenant, id: string) {
  return (await call("GET", `/api/v1/credentials/${id}`, { key: tenant.adminKey })).headers.get("etag");
}

async function auditActions(tenant: TestTenant, id: string) {
  const rows = await env.DB.prepare(
    "SELECT action FROM audit_log WHERE tenant_id = ? AND target_id = ? ORDER BY seq",
  )
    .bind(tenant.id, id)
    .all<{ action: string }>();
  return rows.results.map((r) => r.action);
}

/** The error code assertIfMatch refuses with, or null when the precondition holds. */
function refusal(header: string | undefined, current: string) {
  try {
    assertIfMatch(header, current);
    return null;
  } catch (error) {
    if (error instanceof ApiError) return error.code;
    throw error;
  }
}

/** The three writes that take If-Match, each with a body that would succeed under the right ETag. */
const WRITES = [
  ["PATCH", "", { name: "renamed" }],
  ["POST", "/rollback", { version: 1 }],
  ["DELETE", "", undefined],
] as const;

describe("If-Match on credential writes (RFC 9110 §13.1.1, §13.2.2)", () => {
  let tenant: TestTenant;
  beforeAll(async () => {
    tenant = await createTenant("preconditions");
  });

  it("a blank If-Match is a failed precondition (412), not a missing one", () => {
    const current = '"cred_0000000000000000000000.r1"';
    // `" "` is the property test's counterexample; fetch's Headers trims it to "", a present empty list.
    for (const blank of [" ", ""]) {
      expect(refusal(blank, current), JSON.stringify(blank)).toBe("PRECONDITION_FAILED");
    }
    // An empty list element is allowed and ignored (RFC 9110 §5.6.1.2): a list of only those is blank too.
    expect(refusal(",", current)).toBe("PRECONDITION_FAILED");
    expect(refusal(" , ", current)).toBe("PRECONDITION_FAILED");
    expect(refusal(undefined, current)).toBe("PRECONDITION_REQUIRED");
    expect(refusal(current, current)).toBeNull();
  });

  it("gets no blank If-Match from workerd, which delivers it as no header: 428 over HTTP, nothing written", async () => {
    // workerd keeps If-Match among its indexed common headers, where an empty value is no value; an
    // uncommon header with an empty value does arrive. If this ever changes, blank becomes 412 here too.
    const { id, etag } = await store(tenant);
    const before = await snapshotTenantRows(tenant.id);
    for (const ifMatch of [" ", "", ","]) {
      for (const [method, path, body] of WRITES) {
        const response = await callJson<{ code: string }>(method, `/api/v1/credentials/${id}${path}`, {
          key: tenant.adminKey,
          body,
          headers: { "if-match": ifMatch },
        });
        const expected = ifMatch.trim() === "" ? 428 : 412;
        expect(response.status, `${method} ${path} If-Match: "${ifMatch}"`).toBe(expected);
      }
    }
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
    expect(await currentEtag(tenant, id)).toBe(etag);
  });

  it("answers 428 only when If-Match is absent, and 412 for malformed, weak, `*` and stale values", async () => {
    const { id, etag } = await store(tenant);
    const before = await snapshotTenantRows(tenant.id);
    const refused = [
      etag.slice(1, -1), // unquoted
      `${etag}x`,
      `W/${etag}`, // weak tags never match under the strong comparison If-Match uses
      "*", // would match any representation; this API wants the ETag the client read
      `*, ${etag}`,
      `"${id}.r0"`,
      `"${id}.r2"`,
      `"${id}.v1"`, // the ETag format before revisions
    ];
    for (const [method, path, body] of WRITES) {
      const missing = await callJson<{ code: string }>(method, `/api/v1/credentials/${id}${path}`, {
        key: tenant.adminKey,
        body,
      });
      expect(missing.status, `${method} ${path} without If-Match`).toBe(428);
      expect(missing.body.code).toBe("PRECONDITION_REQUIRED");
      for (const ifMatch of refused) {
        const response = await callJson<{ code: string }>(method, `/api/v1/credentials/${id}${path}`, {
          key: tenant.adminKey,
          body,
          headers: { "if-match": ifMatch },
        });
        expect(response.status, `${method} ${path} If-Match: ${ifMatch}`).toBe(412);
        expect(response.body.code).toBe("PRECONDITION_FAILED");
      }
    }
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
  });

  it("holds when any entity tag of an If-Match list is the current ETag", async () => {
    const { id, etag } = await store(tenant);
    const response = await callJson<Credential>("PATCH", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      body: { name: "listed" },
      headers: { "if-match": `"${id}.r7", , ${etag}` },
    });
    expect(response.status).toBe(200);
    expect(response.body.name).toBe("listed");
  });

  it("a rename changes the ETag", async () => {
    const { id, etag } = await store(tenant);
    expect(etag).toBe(`"${id}.r1"`);
    const renamed = await callJson<Credential>("PATCH", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      body: { name: "first name" },
      headers: { "if-match": etag },
    });
    expect(renamed.status).toBe(200);
    // Same version of the values, but a different representation: a new ETag.
    expect(renamed.body.version).toBe(1);
    expect(renamed.headers.get("etag")).toBe(`"${id}.r2"`);
    expect(await currentEtag(tenant, id)).toBe(`"${id}.r2"`);
    const stale = await callJson<{ code: string }>("PATCH", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      body: { name: "second name" },
      headers: { "if-match": etag },
    });
    expect(stale.status).toBe(412);
    const detail = await callJson<Credential>("GET", `/api/v1/credentials/${id}`, { key: tenant.adminKey });
    expect(detail.body.name).toBe("first name");
  });

  it("leaves the ETag alone when a live test stores its result", async () => {
    const { id, etag } = await store(tenant);
    network.use(
      http.get("https://api.stripe.com/v1/balance", () =>
        HttpResponse.json({ object: "balance", available: [], pending: [], livemode: false }),
      ),
    );
    const tested = await callJson<{ status: string }>("POST", `/api/v1/credentials/${id}/test`, {
      key: tenant.adminKey,
    });
    expect(tested.body.status).toBe("valid");
    expect(await currentEtag(tenant, id)).toBe(etag);
  });

  it("two PATCHes with the same ETag: exactly one wins, the other 412, one audit row", async () => {
    for (const bodies of [
      [{ name: "left" }, { name: "right" }],
      [{ fields: { secret_key: stripeKey() } }, { fields: { secret_key: stripeKey() } }],
    ]) {
      const { id, etag } = await store(tenant);
      const responses = await Promise.all(
        bodies.map((body) =>
          callJson<Credential>("PATCH", `/api/v1/credentials/${id}`, {
            key: tenant.adminKey,
            body,
            headers: { "if-match": etag },
          }),
        ),
      );
      const statuses = responses.map((r) => r.status);
      expect([...statuses].sort()).toEqual([200, 412]);
      const winner = responses.find((r) => r.status === 200);
      expect(await currentEtag(tenant, id)).toBe(`"${id}.r2"`);
      expect(winner?.headers.get("etag")).toBe(`"${id}.r2"`);
      const detail = await callJson<Credential>("GET", `/api/v1/credentials/${id}`, {
        key: tenant.adminKey,
      });
      expect(detail.body).toMatchObject({ name: winner?.body.name, version: winner?.body.version });
      expect(await auditActions(tenant, id)).toEqual(["credential.create", "credential.update"]);
    }
  });

  it("a DELETE and a PATCH with the same ETag: exactly one wins", async () => {
    const { id, etag } = await store(tenant);
    const [deletion, rename] = await Promise.all([
      call("DELETE", `/api/v1/credentials/${id}`, { key: tenant.adminKey, headers: { "if-match": etag } }),
      call("PATCH", `/api/v1/credentials/${id}`, {
        key: tenant.adminKey,
        body: { name: "renamed while deleted" },
        headers: { "if-match": etag },
      }),
    ]);
    expect([deletion.status, rename.status].filter((s) => s < 300)).toHaveLength(1);
    expect((await auditActions(tenant, id)).length).toBe(2);
  });

  it("DELETE without If-Match is 428 and with a stale one 412, nothing deleted", async () => {
    const { id, etag } = await store(tenant);
    await callJson("PATCH", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      body: { name: "moved on" },
      headers: { "if-match": etag },
    });
    const before = await snapshotTenantRows(tenant.id);
    const missing = await callJson<{ code: string }>("DELETE", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
    });
    expect(missing.status).toBe(428);
    expect(missing.body.code).toBe("PRECONDITION_REQUIRED");
    const stale = await callJson<{ code: string }>("DELETE", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      headers: { "if-match": etag },
    });
    expect(stale.status).toBe(412);
    expect(stale.body.code).toBe("PRECONDITION_FAILED");
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
    const current = await currentEtag(tenant, id);
    expect(current).toBe(`"${id}.r2"`);
    const deletion = await call("DELETE", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      headers: { "if-match": current as string },
    });
    expect(deletion.status).toBe(204);
  });
});

describe("tenant security policy on credentials created through the API", () => {
  async function withPolicy(securityLevel: "basic" | "enhanced" | "enterprise") {
    const tenant = await createTenant(`policy ${securityLevel}`);
    await env.DB.prepare(
      `INSERT INTO security_policies (tenant_id, security_level, environment, rotation_policy, rotation_days,
         ip_allowlist, country_allowlist, require_2fa, compliance, wizard_id, updated_at)
       VALUES (?, ?, 'production', 'none', NULL, '[]', '[]', 0, '[]', 'wiz_test', ?)`,
    )
      .bind(tenant.id, securityLevel, Date.now())
      .run();
    return tenant;
  }

  it("credential security level is raised to the tenant policy's floor", async () => {
    const enhanced = await withPolicy("enhanced");
    const before = await snapshotTenantRows(enhanced.id);
    // A test-mode key for production: a warning at basic, a refusal at enhanced and above.
    const mismatched = {
      security_level: "basic",
      environment: "production",
      fields: { secret_key: stripeKey() },
    };
    const refused = await callJson<{ code: string }>("POST", "/api/v1/credentials", {
      key: enhanced.adminKey,
      body: { service: "stripe", ...mismatched },
    });
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe("VALIDATION_FAILED");
    expect(await snapshotTenantRows(enhanced.id)).toBe(before);

    const matching = await callJson<Credential>("POST", "/api/v1/credentials", {
      key: enhanced.adminKey,
      body: { service: "stripe", ...mismatched, fields: { secret_key: stripeKey("live") } },
    });
    expect(matching.status).toBe(201);
    expect(matching.body.security_level).toBe("enhanced");

    // Above the floor the body's own level stands; a basic policy lets basic through with a warning.
    const enterprise = await callJson<Credential>("POST", "/api/v1/credentials", {
      key: enhanced.adminKey,
      body: {
        service: "stripe",
        ...mismatched,
        security_level: "enterprise",
        fields: { secret_key: stripeKey("live") },
      },
    });
    expect(enterprise.body.security_level).toBe("enterprise");
    const basic = await withPolicy("basic");
    const warned = await callJson<Credential & { warnings?: string[] }>("POST", "/api/v1/credentials", {
      key: basic.adminKey,
      body: { service: "stripe", ...mismatched },
    });
    expect(warned.status).toBe(201);
    expect(warned.body.security_level).toBe("basic");
    expect(warned.body.warnings?.length).toBeGreaterThan(0);
  });
});
