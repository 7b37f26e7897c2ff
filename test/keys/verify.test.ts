import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { generateKey, hashKey } from "../../src/crypto/keys";
import type { Database } from "../../src/db/client";
import { database } from "../../src/db/client";
import { clearKeyCache } from "../../src/keys/key-record";
import { verifyKey } from "../../src/keys/verify-key";
import { call, callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";
import { dumpDatabase } from "../helpers/db";
import { inOneWindow } from "../setup/limiter-window";

let tenant: TestTenant;
beforeAll(async () => {
  tenant = await createTenant("verify");
});

/** A database that fails the test if anything touches it. */
const untouchableDb = new Proxy({} as Database, {
  get() {
    throw new Error("verify read the database");
  },
});

function flipLastChar(key: string): string {
  const last = key.at(-1);
  return key.slice(0, -1) + (last === "a" ? "b" : "a");
}

describe("verify codes", () => {
  it("answers INVALID_FORMAT for garbage and for a key with a bad checksum", async () => {
    const { key } = await createKey(tenant);
    expect(await verify(tenant, "not-a-key")).toEqual({ valid: false, code: "INVALID_FORMAT" });
    expect(await verify(tenant, flipLastChar(key))).toEqual({ valid: false, code: "INVALID_FORMAT" });
  });

  it("rejects a bad checksum without any database read (threat model case 9)", async () => {
    const { key } = await createKey(tenant);
    const outcome = await verifyKey(
      { db: untouchableDb, limiter: env.KEY_LIMITER },
      { key: flipLastChar(key) },
    );
    expect(outcome.code).toBe("INVALID_FORMAT");
  });

  it("rejects 10,000 random well-formed keys with one identical answer (threat model case 9)", async () => {
    const db = database(env.DB);
    const answers = new Set<string>();
    for (let batch = 0; batch < 100; batch++) {
      const outcomes = await Promise.all(
        Array.from({ length: 100 }, () =>
          verifyKey(
            { db, limiter: env.KEY_LIMITER },
            { key: generateKey("kw", "live", "basic"), tenantId: tenant.id },
          ),
        ),
      );
      for (const outcome of outcomes) answers.add(JSON.stringify(outcome));
    }
    expect([...answers]).toEqual([JSON.stringify({ code: "NOT_FOUND" })]);
    // 10,000 lookups through every verify tier (the isolate, the Cache API simulator, D1): about 22 s alone on
    // this machine, 85 s when other benchmarks share it. No time is asserted; the limit leaves room for worse.
  }, 300_000);

  it("answers a one-character variant of a real key exactly as the same variant of a never-issued key (threat model case 9)", async () => {
    const real = (await createKey(tenant)).key;
    const never = generateKey("kw", "live", "basic");
    const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const variant = (key: string, position: number) => {
      const replacement = alphabet[
        (alphabet.indexOf(key[position] as string) + 1) % alphabet.length
      ] as string;
      return key.slice(0, position) + replacement + key.slice(position + 1);
    };
    for (let position = 0; position < real.length; position++) {
      if (real[position] === "_") continue;
      const fromReal = await verify(tenant, variant(real, position));
      const fromNever = await verify(tenant, variant(never, position));
      expect(fromReal).toEqual(fromNever);
      expect(fromReal.valid).toBe(false);
    }
  });

  it("rejects the stored hash or the display prefix presented as a key (threat model case 10)", async () => {
    const created = await createKey(tenant);
    const row = await env.DB.prepare("SELECT hash, start, last4 FROM api_keys WHERE id = ?")
      .bind(created.id)
      .first<{
        hash: string;
        start: string;
        last4: string;
      }>();
    expect(row?.hash).toBe(await hashKey(created.key));
    for (const impostor of [row?.hash, row?.start, `${row?.start}${row?.last4}`, created.id]) {
      expect(await verify(tenant, impostor as string)).toMatchObject({ valid: false });
    }
  });

  it("keeps no issued-key plaintext anywhere in a full database dump (threat model case 10)", async () => {
    const keys = [await createKey(tenant), await createKey(tenant, { security_level: "enterprise" })];
    const dump = await dumpDatabase();
    for (const created of keys) {
      expect(dump).not.toContain(created.key);
      expect(dump).not.toContain(created.key.slice(8, 28));
    }
    expect(dump).not.toContain(tenant.adminKey);
  });

  it("rejects a revoked key on the very next verify, even when it was cached (threat model case 11)", async () => {
    const created = await createKey(tenant);
    expect(await verify(tenant, created.key)).toMatchObject({ valid: true });
    expect(await verify(tenant, created.key)).toMatchObject({ valid: true });
    const revoked = await call("POST", `/api/v1/keys/${created.id}/revoke`, { key: tenant.adminKey });
    expect(revoked.status).toBe(200);
    expect(await verify(tenant, created.key)).toMatchObject({
      valid: false,
      code: "DISABLED",
      key_id: created.id,
    });
  });

  it("verifies a key expiring at t at t-1s and rejects it at t and t+1s (threat model case 12)", async () => {
    const t = Date.now() + 3_600_000;
    const created = await createKey(tenant, { expires_at: new Date(t).toISOString() });
    const deps = { db: database(env.DB), limiter: env.KEY_LIMITER };
    clearKeyCache();
    expect((await verifyKey(deps, { key: created.key, now: t - 1000 })).code).toBe("VALID");
    expect((await verifyKey(deps, { key: created.key, now: t })).code).toBe("EXPIRED");
    expect((await verifyKey(deps, { key: created.key, now: t + 1000 })).code).toBe("EXPIRED");
  });

  it("answers DISABLED for a disabled key and VALID again once re-enabled", async () => {
    const created = await createKey(tenant);
    await callJson("PATCH", `/api/v1/keys/${created.id}`, { key: tenant.adminKey, body: { enabled: false } });
    expect(await verify(tenant, created.key)).toMatchObject({ valid: false, code: "DISABLED" });
    await callJson("PATCH", `/api/v1/keys/${created.id}`, { key: tenant.adminKey, body: { enabled: true } });
    expect(await verify(tenant, created.key)).toMatchObject({ valid: true, code: "VALID" });
  });

  it("answers FORBIDDEN outside the IP allowlist (IPv4 and IPv6) and VALID inside it", async () => {
    const created = await createKey(tenant, { ip_allowlist: ["203.0.113.0/24", "2001:db8::/32"] });
    const from = (ip: string) => verify(tenant, created.key, {}, { "cf-connecting-ip": ip });
    expect(await from("203.0.113.7")).toMatchObject({ valid: true });
    expect(await from("2001:db8:1::5")).toMatchObject({ valid: true });
    expect(await from("198.51.100.1")).toMatchObject({ valid: false, code: "FORBIDDEN" });
    expect(await from("2001:db9::1")).toMatchObject({ valid: false, code: "FORBIDDEN" });
    expect(await verify(tenant, created.key)).toMatchObject({ valid: false, code: "FORBIDDEN" });
  });

  it("answers FORBIDDEN from a country outside the allowlist", async () => {
    const created = await createKey(tenant, { country_allowlist: ["DE", "FR"] });
    const deps = { db: database(env.DB), limiter: env.KEY_LIMITER };
    const from = (country: string | undefined) => ({ ip: () => undefined, country: () => country });
    expect((await verifyKey(deps, { key: created.key, origin: from("DE") })).code).toBe("VALID");
    expect((await verifyKey(deps, { key: created.key, origin: from("US") })).code).toBe("FORBIDDEN");
    expect((await verifyKey(deps, { key: created.key, origin: from(undefined) })).code).toBe("FORBIDDEN");
    expect((await verifyKey(deps, { key: created.key })).code).toBe("FORBIDDEN");
  });

  it("reads the caller's IP and country only for keys that restrict by them", async () => {
    const deps = { db: database(env.DB), limiter: env.KEY_LIMITER };
    const reads: string[] = [];
    const origin = {
      ip: () => {
        reads.push("ip");
        return "203.0.113.7";
      },
      country: () => {
        reads.push("country");
        return "DE";
      },
    };
    const open = await createKey(tenant);
    expect((await verifyKey(deps, { key: open.key, origin })).code).toBe("VALID");
    expect(reads).toEqual([]);
    const fenced = await createKey(tenant, { ip_allowlist: ["203.0.113.0/24"], country_allowlist: ["DE"] });
    expect((await verifyKey(deps, { key: fenced.key, origin })).code).toBe("VALID");
    expect(reads).toEqual(["ip", "country"]);
  });

  it("answers INSUFFICIENT_SCOPES when a required scope is missing", async () => {
    const created = await createKey(tenant, { scopes: ["orders:read"] });
    expect(await verify(tenant, created.key, { scopes: ["orders:read"] })).toMatchObject({ valid: true });
    expect(await verify(tenant, created.key, { scopes: ["orders:read", "orders:write"] })).toMatchObject({
      valid: false,
      code: "INSUFFICIENT_SCOPES",
    });
  });

  it("answers RATE_LIMITED past the key's limit and reports the window", async () => {
    // The limiter's windows are aligned to the clock: a burst straddling a boundary is redone with a new key.
    const results = await inOneWindow(60, async () => {
      const created = await createKey(tenant, { ratelimit: { limit: 3, window_ms: 60_000 } });
      const results = [];
      for (let i = 0; i < 5; i++) results.push(await verify(tenant, created.key));
      return results;
    });
    expect(results.map((r) => r.code)).toEqual(["VALID", "VALID", "VALID", "RATE_LIMITED", "RATE_LIMITED"]);
    expect(results[2]).toMatchObject({ ratelimit: { limit: 3, remaining: 0 } });
  });

  it("counts usage exactly under concurrency: 50 parallel verifies of a 20-use key give exactly 20 VALID", async () => {
    const created = await createKey(tenant, { usage_limit: { remaining: 20 } });
    const results = await Promise.all(Array.from({ length: 50 }, () => verify(tenant, created.key)));
    expect(results.filter((r) => r.code === "VALID")).toHaveLength(20);
    expect(results.filter((r) => r.code === "USAGE_EXCEEDED")).toHaveLength(30);
    const remaining = results.filter((r) => r.code === "VALID").map((r) => r.remaining);
    expect(new Set(remaining).size).toBe(20);
  });

  it("refills usage after the refill interval", async () => {
    const created = await createKey(tenant, {
      usage_limit: { remaining: 1, refill_amount: 2, refill_interval_ms: 60_000 },
    });
    const deps = { db: database(env.DB), limiter: env.KEY_LIMITER };
    const now = Date.now();
    expect((await verifyKey(deps, { key: created.key, now })).code).toBe("VALID");
    expect((await verifyKey(deps, { key: created.key, now })).code).toBe("USAGE_EXCEEDED");
    expect((await verifyKey(deps, { key: created.key, now: now + 61_000 })).code).toBe("VALID");
  });

  it("resets the counters when the owner changes the usage limit", async () => {
    const created = await createKey(tenant, { usage_limit: { remaining: 1 } });
    expect(await verify(tenant, created.key)).toMatchObject({ valid: true, remaining: 0 });
    expect(await verify(tenant, created.key)).toMatchObject({ code: "USAGE_EXCEEDED" });
    await callJson("PATCH", `/api/v1/keys/${created.id}`, {
      key: tenant.adminKey,
      body: { usage_limit: { remaining: 5 } },
    });
    expect(await verify(tenant, created.key)).toMatchObject({ valid: true, remaining: 4 });
  });

  it("records per-day verification counts and last_used_at", async () => {
    const created = await createKey(tenant);
    await verify(tenant, created.key);
    await verify(tenant, created.key);
    await verify(tenant, created.key, { scopes: ["missing"] });
    // The counters are written off the response path (ctx.waitUntil): wait for that write, however slow
    // the machine, rather than for a fixed time.
    await vi.waitFor(
      async () => {
        const usage = await callJson<{ days: { valid: number; invalid: number }[] }>(
          "GET",
          `/api/v1/keys/${created.id}/usage`,
          { key: tenant.adminKey },
        );
        expect(usage.body.days[0]).toMatchObject({ valid: 2, invalid: 1 });
      },
      { timeout: 20_000, interval: 100 },
    );
    const key = await callJson<{ last_used_at: string | null }>("GET", `/api/v1/keys/${created.id}`, {
      key: tenant.adminKey,
    });
    expect(key.body.last_used_at).not.toBeNull();
  });
});
