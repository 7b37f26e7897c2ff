import { exports } from "cloudflare:workers";
import { beforeAll, describe, expect, expectTypeOf, it } from "vitest";
import { stripeKey } from "../../../test/credentials/samples";
import { BASE, createKey, createTenant, freshClientIp, type TestTenant } from "../../../test/helpers/api";
import {
  type components,
  createKeywardenClient,
  type KeywardenClient,
  KeywardenError,
  type Problem,
  type VerifyVerdict,
} from "../src";

/** The running Keywarden worker as the client's fetch; each request is its own client address. */
const worker = (request: Request) => {
  const sent = new Request(request);
  sent.headers.set("cf-connecting-ip", freshClientIp());
  return exports.default.fetch(sent);
};

const clientFor = (key?: string): KeywardenClient =>
  createKeywardenClient({ baseUrl: BASE, ...(key ? { key } : {}), fetch: worker, retry: false });

describe("@keywarden/client against the running worker", () => {
  let tenant: TestTenant;
  let admin: KeywardenClient;
  beforeAll(async () => {
    tenant = await createTenant("client package");
    admin = clientFor(tenant.adminKey);
  });

  it("creates, lists, gets and revokes a key, and verify then says DISABLED", async () => {
    const created = await admin.POST("/api/v1/keys", {
      body: { name: "orders service", scopes: ["orders:read"] },
    });
    expect(created.response.status).toBe(201);
    const { id, key } = created.data ?? { id: "", key: "" };
    expect(key).toMatch(/_/);

    const listed = await admin.GET("/api/v1/keys", { params: { query: { limit: 100 } } });
    expect(listed.data?.items.map((item) => item.id)).toContain(id);

    const one = await admin.GET("/api/v1/keys/{id}", { params: { path: { id } } });
    expect(one.data).toMatchObject({ id, name: "orders service", scopes: ["orders:read"] });

    expect(await admin.verifyKey(key)).toMatchObject({ valid: true, code: "VALID", key_id: id });
    const revoked = await admin.POST("/api/v1/keys/{id}/revoke", { params: { path: { id } } });
    expect(revoked.response.status).toBe(200);
    expect(await admin.verifyKey(key)).toMatchObject({ valid: false, code: "DISABLED" });
  });

  it("verifyKey returns the verdict: the key's scopes, INSUFFICIENT_SCOPES, and NOT_FOUND for another tenant's key", async () => {
    const { key, id } = await createKey(tenant, { scopes: ["orders:read"] });
    const good = await admin.verifyKey(key, { scopes: ["orders:read"] });
    expect(good).toMatchObject({ valid: true, code: "VALID", key_id: id, scopes: ["orders:read"] });
    expect(await admin.verifyKey(key, { scopes: ["orders:write"] })).toMatchObject({
      valid: false,
      code: "INSUFFICIENT_SCOPES",
    });
    const other = await createTenant("client package, other tenant");
    const foreign = await createKey(other);
    expect(await admin.verifyKey(foreign.key)).toEqual({ valid: false, code: "NOT_FOUND" });
  });

  it("stores a credential and reveals its plaintext", async () => {
    const secret = stripeKey();
    const stored = await admin.POST("/api/v1/credentials", {
      body: { service: "stripe", environment: "development", fields: { secret_key: secret } },
    });
    expect(stored.response.status).toBe(201);
    const id = stored.data?.id ?? "";
    expect(stored.data?.fields.secret_key).not.toBe(secret);
    const revealed = await admin.POST("/api/v1/credentials/{id}/reveal", {
      params: { path: { id } },
      body: {},
    });
    expect(revealed.response.headers.get("cache-control")).toBe("no-store");
    expect(revealed.data?.fields).toEqual({ secret_key: secret });
  });

  it("surfaces problem+json errors as the typed error, and verifyKey throws them as KeywardenError", async () => {
    const missing = await admin.GET("/api/v1/keys/{id}", { params: { path: { id: "key_missing" } } });
    expect(missing.data).toBeUndefined();
    expect(missing.response.status).toBe(404);
    expect(missing.error).toMatchObject({ status: 404, code: "NOT_FOUND" });

    const anonymous = await clientFor().GET("/api/v1/keys");
    expect(anonymous.error).toMatchObject({ status: 401, code: "UNAUTHENTICATED" });

    const invalid = await admin.POST("/api/v1/keys", { body: { name: "" } });
    expect(invalid.error?.code).toBe("VALIDATION_FAILED");
    expect(invalid.error?.errors?.[0]?.path).toBe("name");

    const readOnly = await createKey(tenant, { role: "read_only" });
    const refused = await clientFor(readOnly.key)
      .verifyKey(readOnly.key)
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(KeywardenError);
    expect(refused).toMatchObject({ status: 403, problem: { code: "FORBIDDEN" } });
  });

  it("follows no redirect, so a 307 from Keywarden's origin cannot carry its Authorization or the verified key elsewhere", async () => {
    const sent: Request[] = [];
    const redirecting = async (request: Request) => {
      sent.push(request);
      return new Response(null, {
        status: 307,
        headers: { location: "https://attacker.example/api/v1/keys/verify" },
      });
    };
    const client = createKeywardenClient({
      baseUrl: BASE,
      key: tenant.adminKey,
      fetch: redirecting,
      retry: false,
    });
    const refused = await client.verifyKey("kw_test_caller_key").catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(KeywardenError);
    expect(refused).toMatchObject({ status: 307 });
    const listed = await client.GET("/api/v1/keys");
    expect(listed.data).toBeUndefined();
    expect(sent.map((request) => request.redirect)).toEqual(["manual", "manual"]);
  });

  it("types every response from the document: data and error are the schemas, never any", async () => {
    const listed = await admin.GET("/api/v1/keys");
    expectTypeOf(listed.data).not.toBeAny();
    expectTypeOf(listed.data).toEqualTypeOf<components["schemas"]["KeyList"] | undefined>();
    expectTypeOf(listed.error).not.toBeAny();
    expectTypeOf(listed.error).toEqualTypeOf<Problem | undefined>();
    expectTypeOf(admin.verifyKey).returns.resolves.toEqualTypeOf<VerifyVerdict>();
    expectTypeOf<VerifyVerdict["code"]>().toEqualTypeOf<
      | "VALID"
      | "INVALID_FORMAT"
      | "NOT_FOUND"
      | "DISABLED"
      | "EXPIRED"
      | "FORBIDDEN"
      | "INSUFFICIENT_SCOPES"
      | "RATE_LIMITED"
      | "USAGE_EXCEEDED"
    >();
    // Request bodies and paths are checked too: an unknown field or route does not compile.
    // @ts-expect-error `nme` is not a field of CreateKey
    expectTypeOf(admin.POST).toBeCallableWith("/api/v1/keys", { body: { nme: "x" } });
    // @ts-expect-error no such route
    expectTypeOf(admin.GET).toBeCallableWith("/api/v1/no-such-route");
    expect(listed.response.status).toBe(200);
  });
});
