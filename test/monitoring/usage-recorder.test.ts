import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { stepAt, totpAt } from "../../src/auth/totp";
import { generateKey } from "../../src/crypto/keys";
import worker from "../../src/index";
import { VERIFY_CODES } from "../../src/keys/verify-key";
import { USAGE_COUNTERS } from "../../src/monitoring/usage-counts";
import { networkOf } from "../../src/monitoring/usage-recorder";
import { BASE, call, createKey, createTenant, freshClientIp, type TestTenant, verify } from "../helpers/api";
import { envWith } from "../helpers/env";
import { enrollTotp } from "../helpers/totp";

type Row = Record<string, number | string | null>;

async function usageRows(tenantId: string, bucket: "hour" | "day"): Promise<Row[]> {
  const { results } = await env.DB.prepare(
    "SELECT * FROM usage_counts WHERE tenant_id = ? AND bucket = ? ORDER BY key_id, start",
  )
    .bind(tenantId, bucket)
    .all<Row>();
  return results;
}

/** A key's counters summed over its rows of one bucket: a test crossing an hour or a day splits them. */
function sums(rows: Row[], keyId: string): Record<string, number> {
  const total: Record<string, number> = {};
  for (const row of rows.filter((r) => r.key_id === keyId)) {
    for (const counter of USAGE_COUNTERS) total[counter] = (total[counter] ?? 0) + Number(row[counter]);
  }
  return total;
}

const expectCounts = (tenantId: string, keyId: string, expected: Record<string, number>) =>
  vi.waitFor(
    async () => {
      const full = Object.fromEntries(USAGE_COUNTERS.map((c) => [c, expected[c] ?? 0]));
      expect(sums(await usageRows(tenantId, "hour"), keyId)).toEqual(full);
      expect(sums(await usageRows(tenantId, "day"), keyId)).toEqual(full);
    },
    { timeout: 20_000, interval: 100 },
  );

/** A verify through the worker with Cloudflare's request properties set, as the edge would. */
async function verifyFrom(
  tenant: TestTenant,
  key: string,
  cf: { country?: string; asn?: number },
  ip?: string,
) {
  const response = await exports.default.fetch(
    new Request(`${BASE}/api/v1/keys/verify`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${tenant.adminKey}`,
        "content-type": "application/json",
        "cf-connecting-ip": ip ?? freshClientIp(),
      },
      body: JSON.stringify({ key }),
      cf,
    }),
  );
  expect(response.status).toBe(200);
  return (await response.json()) as { code: string };
}

async function origins(keyId: string) {
  const { results } = await env.DB.prepare(
    "SELECT kind, value, first_seen_at, last_seen_at FROM key_origins WHERE key_id = ? ORDER BY kind, value",
  )
    .bind(keyId)
    .all<{ kind: string; value: string; first_seen_at: number; last_seen_at: number }>();
  return results;
}

describe("usage recorder", () => {
  it("keeps one counter column per verify code, and the table has each of them", async () => {
    const { results } = await env.DB.prepare("SELECT name FROM pragma_table_info('usage_counts')").all<{
      name: string;
    }>();
    const columns = results.map((r) => r.name);
    for (const counter of USAGE_COUNTERS) expect(columns).toContain(counter);
    expect(USAGE_COUNTERS).toHaveLength(VERIFY_CODES.length + 2);
  });

  it("counts every verify code on the key's hourly and daily rows, and malformed or unknown keys on the tenant's no-key row", async () => {
    const tenant = await createTenant("usage codes");
    const key = await createKey(tenant, { service_id: "billing", scopes: ["orders:read"] });
    const limited = await createKey(tenant, { ratelimit: { limit: 1, window_ms: 60_000 } });
    const metered = await createKey(tenant, { usage_limit: { remaining: 1 } });
    const fenced = await createKey(tenant, { ip_allowlist: ["192.0.2.0/24"] });
    const disabled = await createKey(tenant);
    const expired = await createKey(tenant);
    const patch = await call("PATCH", `/api/v1/keys/${disabled.id}`, {
      key: tenant.adminKey,
      body: { enabled: false },
    });
    expect(patch.status).toBe(200);
    // Expired in the database before its first verify, so no cached copy says otherwise.
    await env.DB.prepare("UPDATE api_keys SET expires_at = 1 WHERE id = ?").bind(expired.id).run();

    const codes = async (key: string, extra: Record<string, unknown> = {}) =>
      (await verify(tenant, key, extra)).code;
    expect(await codes(key.key)).toBe("VALID");
    expect(await codes(key.key)).toBe("VALID");
    expect(await codes(key.key, { scopes: ["orders:write"] })).toBe("INSUFFICIENT_SCOPES");
    expect([await codes(limited.key), await codes(limited.key)]).toEqual(["VALID", "RATE_LIMITED"]);
    expect([await codes(metered.key), await codes(metered.key)]).toEqual(["VALID", "USAGE_EXCEEDED"]);
    expect(await codes(fenced.key)).toBe("FORBIDDEN");
    expect(await codes(disabled.key)).toBe("DISABLED");
    expect(await codes(expired.key)).toBe("EXPIRED");
    expect(await codes("not a key")).toBe("INVALID_FORMAT");
    expect(await codes(generateKey("kw", "live", "basic"))).toBe("NOT_FOUND");
    expect(await codes("also not a key")).toBe("INVALID_FORMAT");

    await expectCounts(tenant.id, key.id, { valid: 2, insufficient_scopes: 1, invalid: 1 });
    await expectCounts(tenant.id, limited.id, { valid: 1, rate_limited: 1, invalid: 1 });
    await expectCounts(tenant.id, metered.id, { valid: 1, usage_exceeded: 1, invalid: 1 });
    await expectCounts(tenant.id, fenced.id, { forbidden: 1, invalid: 1 });
    await expectCounts(tenant.id, disabled.id, { disabled: 1, invalid: 1 });
    await expectCounts(tenant.id, expired.id, { expired: 1, invalid: 1 });
    await expectCounts(tenant.id, "", { invalid_format: 2, not_found: 1, invalid: 3 });

    const hours = await usageRows(tenant.id, "hour");
    const days = await usageRows(tenant.id, "day");
    for (const row of hours) expect(Number(row.start) % 3_600_000).toBe(0);
    for (const row of days) expect(Number(row.start) % 86_400_000).toBe(0);
    // The service comes from the key record; the no-key row names no service.
    expect(new Set(hours.filter((r) => r.key_id === key.id).map((r) => r.service_id))).toEqual(
      new Set(["billing"]),
    );
    expect(new Set(days.filter((r) => r.key_id === "").map((r) => r.service_id))).toEqual(new Set([null]));
    // An unknown key leaves no trace of itself: only the tenant's anonymous counter moved.
    expect(
      hours.every(
        (r) =>
          r.key_id === "" ||
          [key.id, limited.id, metered.id, fenced.id, disabled.id, expired.id, tenant.adminKeyId].includes(
            String(r.key_id),
          ),
      ),
    ).toBe(true);
  });

  it("counts authentication to Keywarden refused with a known key as auth_failed on that key", async () => {
    const tenant = await createTenant("usage auth");
    const revoked = await createKey(tenant, { role: "read_only" });
    const revoke = await call("POST", `/api/v1/keys/${revoked.id}/revoke`, { key: tenant.adminKey });
    expect(revoke.status).toBe(200);
    for (let i = 0; i < 3; i++) {
      expect((await call("GET", "/api/v1/keys", { key: revoked.key })).status).toBe(401);
    }
    expect((await call("GET", "/api/v1/keys", { key: tenant.adminKey })).status).toBe(200);
    await expectCounts(tenant.id, revoked.id, { disabled: 3, invalid: 3, auth_failed: 3 });
    await vi.waitFor(
      async () => {
        const admin = sums(await usageRows(tenant.id, "day"), tenant.adminKeyId);
        expect(admin.valid).toBeGreaterThan(0);
        expect(admin.auth_failed).toBe(0);
      },
      { timeout: 20_000, interval: 100 },
    );
  });

  it("counts a wrong TOTP code at step-up as auth_failed on the key, with no verify code", async () => {
    const tenant = await createTenant("usage totp");
    const { secret } = await enrollTotp(tenant.adminKey);
    const now = stepAt(Date.now());
    const window = await Promise.all([-2, -1, 0, 1, 2].map((d) => totpAt(secret, now + d)));
    const wrong = ["000000", "111111", "222222"].find((code) => !window.includes(code)) as string;
    const refused = await call("POST", `/api/v1/keys/${tenant.adminKeyId}/rotate`, {
      key: tenant.adminKey,
      body: {},
      headers: { "x-keywarden-totp": wrong },
    });
    expect(refused.status).toBe(401);
    await vi.waitFor(
      async () => {
        const admin = sums(await usageRows(tenant.id, "hour"), tenant.adminKeyId);
        expect(admin.auth_failed).toBe(1);
        expect(admin.invalid).toBe(0);
      },
      { timeout: 20_000, interval: 100 },
    );
  });

  it("records each country and network a key is verified from, and widens last_seen_at on a repeat", async () => {
    const tenant = await createTenant("usage origins");
    const key = await createKey(tenant);
    await verifyFrom(tenant, key.key, { country: "DE", asn: 64500 });
    await vi.waitFor(async () => expect(await origins(key.id)).toHaveLength(2), {
      timeout: 20_000,
      interval: 100,
    });
    const first = await origins(key.id);
    expect(first.map(({ kind, value }) => ({ kind, value }))).toEqual([
      { kind: "country", value: "DE" },
      { kind: "network", value: "AS64500" },
    ]);

    await verifyFrom(tenant, key.key, { country: "DE", asn: 64501 });
    await verifyFrom(tenant, key.key, { country: "FR", asn: 64500 });
    await vi.waitFor(async () => expect(await origins(key.id)).toHaveLength(4), {
      timeout: 20_000,
      interval: 100,
    });
    const later = await origins(key.id);
    const de = later.find((o) => o.value === "DE");
    expect(de?.first_seen_at).toBe(first[0]?.first_seen_at);
    expect(de?.last_seen_at).toBeGreaterThanOrEqual(first[0]?.last_seen_at ?? Number.POSITIVE_INFINITY);
    expect(later.map((o) => o.value)).toEqual(["DE", "FR", "AS64500", "AS64501"]);
  });

  it("falls back to the client's /24 or /48 when the edge gives no AS number", async () => {
    const tenant = await createTenant("usage prefixes");
    const key = await createKey(tenant);
    await verifyFrom(tenant, key.key, {}, "203.0.113.77");
    await vi.waitFor(
      async () => expect((await origins(key.id)).map((o) => o.value)).toEqual(["203.0.113.0/24"]),
      { timeout: 20_000, interval: 100 },
    );
    expect(networkOf(undefined, "2001:db8:abcd:12::1")).toBe("2001:db8:abcd::/48");
    expect(networkOf(undefined, "::ffff:198.51.100.9")).toBe("198.51.100.0/24");
    expect(networkOf(13335, "198.51.100.9")).toBe("AS13335");
    expect(networkOf(undefined, "not an address")).toBeUndefined();
  });

  it("records nothing with USAGE_ANALYTICS=off: no counts, origins or last_used_at", async () => {
    const tenant = await createTenant("usage off");
    const quiet = await createKey(tenant);
    const marker = await createKey(tenant);
    const ctx = createExecutionContext();
    const response = await worker.fetch(
      new Request(`${BASE}/api/v1/keys/verify`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${tenant.adminKey}`,
          "content-type": "application/json",
          "cf-connecting-ip": freshClientIp(),
        },
        body: JSON.stringify({ key: quiet.key }),
      }),
      envWith({ USAGE_ANALYTICS: "off" }),
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(await response.json()).toMatchObject({ valid: true });
    // Anything the first verify had tallied would be written no later than the second one's counts.
    await verify(tenant, marker.key);
    await expectCounts(tenant.id, marker.id, { valid: 1 });
    expect(sums(await usageRows(tenant.id, "day"), quiet.id)).toEqual({});
    expect(await origins(quiet.id)).toEqual([]);
    const row = await env.DB.prepare("SELECT last_used_at FROM api_keys WHERE id = ?").bind(quiet.id).first();
    expect(row).toEqual({ last_used_at: null });
  });
});
