import { env, exports } from "cloudflare:workers";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { ENTROPY_BITS, parseKey, randomLengthForLevel, type SecurityLevel } from "../../src/crypto/keys";
import { database } from "../../src/db/client";
import { apiKeys, securityPolicies } from "../../src/db/schema";
import { ApiError } from "../../src/errors";
import { assertRotatable, commitKeyChange, mintSuccessor } from "../../src/keys/key-lifecycle";
import { planKeyRotationNow } from "../../src/lifecycle/key-rotation";
import {
  adminActor,
  BASE,
  call,
  callJson,
  createKey,
  createTenant,
  type TestTenant,
  verify,
} from "../helpers/api";
import { snapshotTenantRows } from "../helpers/db";

describe("issued key lifecycle", () => {
  it("creates, verifies, lists, updates, rotates, revokes and deletes a key", async () => {
    const tenant = await createTenant();
    const created = await createKey(tenant, { scopes: ["orders:read"], environment: "test" });
    expect(created.key).toMatch(/^kw_test_[0-9A-Za-z]{32}$/);

    expect(await verify(tenant, created.key)).toMatchObject({
      valid: true,
      code: "VALID",
      key_id: created.id,
    });

    const list = await callJson<{ items: { id: string }[] }>("GET", "/api/v1/keys", { key: tenant.adminKey });
    expect(list.body.items.map((k) => k.id)).toContain(created.id);
    expect(JSON.stringify(list.body)).not.toContain(created.key);

    const patched = await callJson("PATCH", `/api/v1/keys/${created.id}`, {
      key: tenant.adminKey,
      body: { name: "renamed" },
    });
    expect(patched.body).toMatchObject({ name: "renamed" });

    const rotated = await callJson<{ id: string; key: string; previous: { id: string } }>(
      "POST",
      `/api/v1/keys/${created.id}/rotate`,
      { key: tenant.adminKey, body: { grace_seconds: 60 } },
    );
    expect(rotated.status).toBe(201);
    expect(await verify(tenant, created.key)).toMatchObject({ valid: true, replaced_by: rotated.body.id });
    expect(await verify(tenant, rotated.body.key)).toMatchObject({ valid: true, key_id: rotated.body.id });

    const revoked = await call("POST", `/api/v1/keys/${rotated.body.id}/revoke`, { key: tenant.adminKey });
    expect(revoked.status).toBe(200);
    expect(await verify(tenant, rotated.body.key)).toMatchObject({ valid: false, code: "DISABLED" });

    const deleted = await call("DELETE", `/api/v1/keys/${created.id}`, { key: tenant.adminKey });
    expect(deleted.status).toBe(204);
    expect(await verify(tenant, created.key)).toEqual({ valid: false, code: "NOT_FOUND" });
  });
});

type Problem = { code: string; status: number; detail: string };
type RotatedKey = { id: string; key: string; security_level: string; previous: { id: string } };

describe("rotation refuses keys that do not work (disabled, revoked, expired, already rotated)", () => {
  const setups: [string, (tenant: TestTenant, id: string) => Promise<unknown>][] = [
    [
      "disabled",
      (tenant, id) =>
        callJson("PATCH", `/api/v1/keys/${id}`, { key: tenant.adminKey, body: { enabled: false } }),
    ],
    ["revoked", (tenant, id) => call("POST", `/api/v1/keys/${id}/revoke`, { key: tenant.adminKey })],
    // Expired a day ago: set in D1, since the API only accepts expiries in the future.
    [
      "expired",
      (_tenant, id) =>
        env.DB.prepare("UPDATE api_keys SET expires_at = ? WHERE id = ?")
          .bind(Date.now() - 86_400_000, id)
          .run(),
    ],
    [
      "already rotated",
      (tenant, id) =>
        call("POST", `/api/v1/keys/${id}/rotate`, { key: tenant.adminKey, body: { grace_seconds: 3600 } }),
    ],
  ];

  for (const [state, makeIt] of setups) {
    it(`answers 409 for a ${state} key and mints no successor`, async () => {
      const tenant = await createTenant(`rotate ${state}`);
      const created = await createKey(tenant, { scopes: ["orders:read"] });
      await makeIt(tenant, created.id);
      const before = await snapshotTenantRows(tenant.id);

      const response = await callJson<Problem>("POST", `/api/v1/keys/${created.id}/rotate`, {
        key: tenant.adminKey,
        body: { grace_seconds: 60 },
      });

      expect(response.status).toBe(409);
      expect(response.body).toMatchObject({ code: "CONFLICT" });
      expect(response.body).not.toHaveProperty("key");
      expect(await snapshotTenantRows(tenant.id)).toBe(before);
    });
  }
});

describe("a rotation racing a revocation leaves no live successor of a dead key", () => {
  it("the 0006 trigger aborts inserting a successor of a revoked or disabled key", async () => {
    const tenant = await createTenant("trigger");
    const revoked = await createKey(tenant);
    const disabled = await createKey(tenant);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?")
      .bind(Date.now(), revoked.id)
      .run();
    await env.DB.prepare("UPDATE api_keys SET enabled = 0 WHERE id = ?").bind(disabled.id).run();
    const db = database(env.DB);
    for (const source of [revoked, disabled]) {
      const row = await db.select().from(apiKeys).where(eq(apiKeys.id, source.id)).get();
      if (!row) throw new Error("key row missing");
      const successor = await mintSuccessor(
        { ...row, enabled: true, revokedAt: null },
        tenant.adminKeyId,
        Date.now(),
      );
      const insert = db.insert(apiKeys).values(successor.row).toSQL();
      await expect(
        env.DB.prepare(insert.sql)
          .bind(...insert.params)
          .run(),
      ).rejects.toThrow(/api_keys\.rotated_from_id source is not live/);
      expect(await db.select().from(apiKeys).where(eq(apiKeys.id, successor.row.id)).get()).toBeUndefined();
    }
  });

  it("answers 409 and commits nothing when the key is revoked between the rotation's read and its commit", async () => {
    const tenant = await createTenant("rotate race");
    const created = await createKey(tenant, { scopes: ["orders:read"] });
    const db = database(env.DB);
    // The rotation reads the key while it is live and plans its batch, exactly as the route does ...
    const row = await db.select().from(apiKeys).where(eq(apiKeys.id, created.id)).get();
    if (!row) throw new Error("key row missing");
    assertRotatable(row);
    const plan = await planKeyRotationNow(db, row, {
      overlapSeconds: 60,
      createdBy: tenant.adminKeyId,
      now: Date.now(),
    });
    // ... then a revocation commits first ...
    const revoked = await call("POST", `/api/v1/keys/${created.id}/revoke`, { key: tenant.adminKey });
    expect(revoked.status).toBe(200);
    const before = await snapshotTenantRows(tenant.id);

    // ... and the rotation's commit, through the route's own commit path, is refused as a whole.
    const actor = adminActor(tenant, "race");
    const failure = await commitKeyChange(env, actor, plan.statements, plan.events).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApiError);
    expect(failure).toMatchObject({ code: "CONFLICT", status: 409 });
    expect(await snapshotTenantRows(tenant.id)).toBe(before);
    expect(await verify(tenant, plan.successor.key)).toEqual({ valid: false, code: "NOT_FOUND" });
  });
});

describe("key display: start and last4 never cost a key its level's strength", () => {
  const LEVELS: SecurityLevel[] = ["basic", "enhanced", "enterprise"];

  it("keeps at least ENTROPY_BITS[level] unknown random bits after start and last4 are shown, at every level", async () => {
    const tenant = await createTenant("display");
    const bitsPerChar = Math.log2(62);
    for (const level of LEVELS) {
      const created = await createKey(tenant, { security_level: level, environment: "test" });
      const stored = await env.DB.prepare("SELECT start, last4 FROM api_keys WHERE id = ?")
        .bind(created.id)
        .first<{ start: string; last4: string }>();
      const parsed = parseKey(created.key);
      if (!stored || !parsed) throw new Error("key or row missing");
      const head = `${parsed.prefix}_${parsed.environment}_`;
      // Characters of the random part that start shows outright.
      expect(created.key.startsWith(stored.start)).toBe(true);
      const shownInStart = Math.max(0, stored.start.length - head.length);
      // last4 is the key's tail: characters inside the checksum tell at most log2(62) bits each about the
      // random part (it is a function of it); any that reach into the random part are shown outright.
      expect(created.key.endsWith(stored.last4)).toBe(true);
      const checksumStart = created.key.length - 6;
      const last4Start = created.key.length - stored.last4.length;
      const shownInLast4 = Math.max(0, checksumStart - last4Start);
      const checksumCharsShown = stored.last4.length - shownInLast4;
      const unknownBits =
        (parsed.randomPart.length - shownInStart - shownInLast4) * bitsPerChar -
        checksumCharsShown * bitsPerChar;
      expect(unknownBits).toBeGreaterThanOrEqual(ENTROPY_BITS[level]);
      expect(stored.start).toBe(head);
    }
  });

  it("keeps start usable: a rotation's successor keeps the key's own prefix and environment", async () => {
    const tenant = await createTenant("display prefix");
    const created = await createKey(tenant, { prefix: "acme", environment: "test" });
    expect(created.start).toBe("acme_test_");
    const rotated = await callJson<RotatedKey & { start: string }>(
      "POST",
      `/api/v1/keys/${created.id}/rotate`,
      {
        key: tenant.adminKey,
        body: { grace_seconds: 60 },
      },
    );
    expect(rotated.status).toBe(201);
    expect(rotated.body.key.startsWith("acme_test_")).toBe(true);
    expect(rotated.body.start).toBe("acme_test_");
  });
});

describe("the tenant's security policy is a floor for keys created through the API", () => {
  async function withPolicy(securityLevel: SecurityLevel, ipAllowlist: string[], countryAllowlist: string[]) {
    const tenant = await createTenant(`policy ${securityLevel}`);
    await database(env.DB).insert(securityPolicies).values({
      tenantId: tenant.id,
      securityLevel,
      environment: "production",
      rotationPolicy: "never",
      rotationDays: null,
      ipAllowlist,
      countryAllowlist,
      require2fa: false,
      compliance: [],
      wizardId: "wiz_test",
      updatedAt: Date.now(),
    });
    return tenant;
  }

  it("raises a basic key to an enterprise policy's level, with its entropy and backup key", async () => {
    const tenant = await withPolicy("enterprise", [], []);
    const created = await createKey(tenant, { security_level: "basic" });
    expect(created.security_level).toBe("enterprise");
    expect(parseKey(created.key)?.randomPart.length).toBe(randomLengthForLevel("enterprise"));
    expect(created.backup_key).toMatchObject({ id: expect.any(String), key: expect.any(String) });
  });

  it("keeps a level above the floor: the policy is a floor, not a default", async () => {
    const tenant = await withPolicy("enhanced", [], []);
    expect((await createKey(tenant, { security_level: "enterprise" })).security_level).toBe("enterprise");
    expect((await createKey(tenant, { security_level: "basic" })).security_level).toBe("enhanced");
  });

  it("gives a key that brings no allowlist the policy's IP and country allowlists, and keeps a key's own", async () => {
    const tenant = await withPolicy("basic", ["203.0.113.0/24"], ["DE"]);
    // The policy fences this tenant's own management calls too, so they come from inside it.
    const createFromInside = async (body: Record<string, unknown>) => {
      const response = await exports.default.fetch(
        new Request(`${BASE}/api/v1/keys`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${tenant.adminKey}`,
            "content-type": "application/json",
            "cf-connecting-ip": "203.0.113.9",
          },
          body: JSON.stringify({ name: "fenced", ...body }),
          cf: { country: "DE" },
        }),
      );
      expect(response.status).toBe(201);
      return (await response.json()) as Record<string, unknown>;
    };
    expect(await createFromInside({})).toMatchObject({
      ip_allowlist: ["203.0.113.0/24"],
      country_allowlist: ["DE"],
    });
    expect(await createFromInside({ ip_allowlist: ["198.51.100.0/24"] })).toMatchObject({
      ip_allowlist: ["198.51.100.0/24"],
      country_allowlist: ["DE"],
    });
  });
});
