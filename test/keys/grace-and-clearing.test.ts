/**
 * The end of a rotation's grace period, judged at instants on either side of it (verifyKey takes the
 * clock as a parameter, so nothing here waits for time to pass), and PATCH with `null` clearing a key's
 * expiry, allowlists, limits and metadata, as GET and verify then see them.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import { clearKeyCache } from "../../src/keys/key-record";
import { verifyKey } from "../../src/keys/verify-key";
import { callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";

const deps = () => ({ db: database(env.DB), limiter: env.KEY_LIMITER });

async function rotate(tenant: TestTenant, id: string, graceSeconds: number) {
  const response = await callJson<{ id: string; key: string; previous: { id: string; expires_at: string } }>(
    "POST",
    `/api/v1/keys/${id}/rotate`,
    { key: tenant.adminKey, body: { grace_seconds: graceSeconds } },
  );
  expect(response.status).toBe(201);
  return response.body;
}

describe("the end of a rotation's grace period", () => {
  it("keeps the old key VALID (pointing at its successor) until grace_seconds have passed, and EXPIRED from then on", async () => {
    const tenant = await createTenant("grace end");
    const old = await createKey(tenant, { name: "rotated", scopes: ["orders:read"] });
    const before = Date.now();
    const rotated = await rotate(tenant, old.id, 3_600);
    const graceEnd = Date.parse(rotated.previous.expires_at);
    expect(rotated.previous.id).toBe(old.id);
    // The grace period is counted from the rotation request.
    expect(graceEnd).toBeGreaterThanOrEqual(before + 3_600_000);
    expect(graceEnd).toBeLessThanOrEqual(Date.now() + 3_600_000);

    // Through the API, now: still valid, and it names the key replacing it.
    expect(await verify(tenant, old.key)).toMatchObject({ valid: true, replaced_by: rotated.id });

    clearKeyCache();
    const at = async (key: string, now: number) => (await verifyKey(deps(), { key, now })).code;
    expect(await at(old.key, graceEnd - 1_000)).toBe("VALID");
    expect(await at(old.key, graceEnd - 1)).toBe("VALID");
    expect(await at(old.key, graceEnd)).toBe("EXPIRED");
    expect(await at(old.key, graceEnd + 1_000)).toBe("EXPIRED");
    expect(await at(rotated.key, graceEnd + 1_000)).toBe("VALID");
  });

  it("answers EXPIRED through the API once the grace period's end is in the past", async () => {
    const tenant = await createTenant("grace over");
    const old = await createKey(tenant, { name: "rotated", scopes: ["orders:read"] });
    const rotated = await rotate(tenant, old.id, 86_400);
    // Move the end of the grace period an hour into the past instead of waiting a day.
    await env.DB.prepare("UPDATE api_keys SET expires_at = ? WHERE id = ?")
      .bind(Date.now() - 3_600_000, old.id)
      .run();
    clearKeyCache();
    expect(await verify(tenant, old.key)).toMatchObject({ valid: false, code: "EXPIRED", key_id: old.id });
    expect(await verify(tenant, rotated.key)).toMatchObject({ valid: true, key_id: rotated.id });
  });

  it("never extends a key that expires before the grace period would end", async () => {
    const tenant = await createTenant("grace shorter");
    const expiresAt = new Date(Date.now() + 600_000).toISOString();
    const old = await createKey(tenant, { name: "soon", scopes: ["orders:read"], expires_at: expiresAt });
    const rotated = await rotate(tenant, old.id, 86_400);
    expect(Date.parse(rotated.previous.expires_at)).toBe(Date.parse(expiresAt));
  });
});

type KeyView = Record<string, unknown> & { id: string };

const RESTRICTED = {
  expires_at: new Date(Date.now() + 30 * 86_400_000).toISOString(),
  ip_allowlist: ["203.0.113.0/24"],
  country_allowlist: ["DE"],
  ratelimit: { limit: 1, window_ms: 86_400_000 },
  usage_limit: { remaining: 1 },
  metadata: { team: "billing" },
};
const CLEARABLE = Object.keys(RESTRICTED) as (keyof typeof RESTRICTED)[];

async function getKey(tenant: TestTenant, id: string): Promise<KeyView> {
  const response = await callJson<KeyView>("GET", `/api/v1/keys/${id}`, { key: tenant.adminKey });
  expect(response.status).toBe(200);
  return response.body;
}

describe("PATCH /api/v1/keys/{id} with null", () => {
  it("clears each of expires_at, ip_allowlist, country_allowlist, ratelimit, usage_limit and metadata alone, leaving the others as they were", async () => {
    const tenant = await createTenant("patch null");
    const created = await createKey(tenant, { name: "restricted", scopes: ["orders:read"], ...RESTRICTED });
    let expected = await getKey(tenant, created.id);
    for (const field of CLEARABLE) expect(expected[field], field).not.toBeNull();

    for (const field of CLEARABLE) {
      const patched = await callJson<KeyView>("PATCH", `/api/v1/keys/${created.id}`, {
        key: tenant.adminKey,
        body: { [field]: null },
      });
      expect(patched.status, field).toBe(200);
      expect(patched.body[field], field).toBeNull();
      const shown = await getKey(tenant, created.id);
      expected = { ...expected, [field]: null, updated_at: shown.updated_at };
      expect(shown, `after clearing ${field}`).toEqual(expected);
    }
  });

  it("makes verify drop the cleared restrictions: any address and country, no rate or usage limit, no expiry, no metadata", async () => {
    const tenant = await createTenant("patch null verify");
    const created = await createKey(tenant, { name: "restricted", scopes: ["orders:read"], ...RESTRICTED });
    const outside = { "cf-connecting-ip": "198.51.100.1" };
    // Restricted: refused from outside the allowlist, and (no country known here) by the country list.
    expect(await verify(tenant, created.key, {}, outside)).toMatchObject({ valid: false, code: "FORBIDDEN" });

    const cleared = await callJson<KeyView>("PATCH", `/api/v1/keys/${created.id}`, {
      key: tenant.adminKey,
      body: Object.fromEntries(CLEARABLE.map((field) => [field, null])),
    });
    expect(cleared.status).toBe(200);
    for (const field of CLEARABLE) expect(cleared.body[field], field).toBeNull();

    // Three verifies: past the old ratelimit (1 per day) and usage limit (1 use); from outside the old lists.
    for (let i = 0; i < 3; i++) {
      const result = await verify(tenant, created.key, {}, outside);
      expect(result).toMatchObject({ valid: true, code: "VALID", expires_at: null, metadata: null });
      expect(result).not.toHaveProperty("remaining");
      expect(result).not.toHaveProperty("ratelimit");
    }
    // No expiry any more: valid a year past the old one.
    clearKeyCache();
    const farFuture = Date.parse(RESTRICTED.expires_at) + 365 * 86_400_000;
    expect((await verifyKey(deps(), { key: created.key, now: farFuture })).code).toBe("VALID");
  });
});
