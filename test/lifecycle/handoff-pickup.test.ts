/** One-time pickup of a rotated key by a tenant without a delivery endpoint. */
import { env } from "cloudflare:workers";
import { compactDecrypt } from "jose";
import { describe, expect, it } from "vitest";
import { stepAt, totpAt } from "../../src/auth/totp";
import { database } from "../../src/db/client";
import { claimPickup, readPickup } from "../../src/lifecycle/key-handoff";
import { adminActor, call, callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";
import { dumpDatabase } from "../helpers/db";
import { enrollTotp } from "../helpers/totp";
import { deliveryKeyPair, handOff, handoffRow, registerEndpoint } from "./handoff-fixtures";

function pickUp(
  tenant: TestTenant,
  keyId: string,
  options: { key?: string; headers?: Record<string, string> } = {},
) {
  return callJson<{ key_id: string; key?: string; jwe?: string; code?: string }>(
    "POST",
    `/api/v1/keys/${keyId}/pickup`,
    { key: options.key ?? tenant.adminKey, headers: options.headers },
  );
}

async function pickupAudits(tenantId: string, keyId: string): Promise<number> {
  const row = await env.DB.prepare(
    "SELECT count(*) AS n FROM audit_log WHERE tenant_id = ? AND target_id = ? AND action = 'key.pickup'",
  )
    .bind(tenantId, keyId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

describe("one-time pickup of a rotated key (threat model case 30)", () => {
  it("hands the key out once, audited and not cacheable; a second pickup is 404 and nothing stored yields the key", async () => {
    const tenant = await createTenant("pickup once");
    const handoff = await handOff(tenant);
    expect(handoff.method).toBe("pickup");
    const sealed = (await handoffRow(handoff.keyId))?.payload ?? "";

    const first = await pickUp(tenant, handoff.keyId);
    expect(first.status).toBe(200);
    expect(first.headers.get("cache-control")).toBe("no-store");
    expect(first.body).toEqual({ key_id: handoff.keyId, key: handoff.plaintext });
    expect((await verify(tenant, first.body.key ?? "")).valid).toBe(true);

    const second = await pickUp(tenant, handoff.keyId);
    expect(second.status).toBe(404);
    expect(second.body.code).toBe("NOT_FOUND");
    expect(JSON.stringify(second.body)).not.toContain(handoff.plaintext);

    expect(await handoffRow(handoff.keyId)).toBeNull();
    const dump = await dumpDatabase();
    expect(dump).not.toContain(handoff.plaintext);
    expect(dump).not.toContain(sealed);
    expect(await pickupAudits(tenant.id, handoff.keyId)).toBe(1);
  });

  it("gives the key to exactly one of two concurrent pickups", async () => {
    const tenant = await createTenant("pickup race");
    const handoff = await handOff(tenant);
    const results = await Promise.all([pickUp(tenant, handoff.keyId), pickUp(tenant, handoff.keyId)]);
    expect(results.map((result) => result.status).sort()).toEqual([200, 404]);
    expect(results.filter((result) => result.body.key === handoff.plaintext)).toHaveLength(1);
    expect(await pickupAudits(tenant.id, handoff.keyId)).toBe(1);
  });

  it("refuses the claim of a pickup that read the key after another pickup claimed it, with no audit row", async () => {
    const tenant = await createTenant("pickup lost race");
    const handoff = await handOff(tenant);
    const db = database(env.DB);
    // Both read the handoff before either commits: the interleaving a race can produce, made deterministic.
    const a = await readPickup(env, db, tenant.id, handoff.keyId, Date.now());
    const b = await readPickup(env, db, tenant.id, handoff.keyId, Date.now());
    expect(await claimPickup(env, adminActor(tenant, "pickup-a"), a)).toEqual({
      key_id: handoff.keyId,
      key: handoff.plaintext,
    });
    await expect(claimPickup(env, adminActor(tenant, "pickup-b"), b)).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
    expect(await pickupAudits(tenant.id, handoff.keyId)).toBe(1);
  });

  it("answers another tenant's pickup with 404 and keeps the key waiting for its own tenant", async () => {
    const tenant = await createTenant("pickup owner");
    const other = await createTenant("pickup intruder");
    const handoff = await handOff(tenant);
    const intruder = await pickUp(other, handoff.keyId);
    expect(intruder.status).toBe(404);
    expect(JSON.stringify(intruder.body)).not.toContain(handoff.plaintext);
    expect(await handoffRow(handoff.keyId)).not.toBeNull();
    expect((await pickUp(tenant, handoff.keyId)).body.key).toBe(handoff.plaintext);
  });

  it("needs step-up once the caller enrolled TOTP, and a refused pickup leaves the key waiting", async () => {
    const tenant = await createTenant("pickup step-up");
    const handoff = await handOff(tenant);
    const { secret } = await enrollTotp(tenant.adminKey);
    const without = await pickUp(tenant, handoff.keyId);
    expect(without.status).toBe(401);
    expect(without.body.code).toBe("UNAUTHENTICATED");
    expect(await handoffRow(handoff.keyId)).not.toBeNull();
    expect(await pickupAudits(tenant.id, handoff.keyId)).toBe(0);

    const withCode = await pickUp(tenant, handoff.keyId, {
      headers: { "x-keywarden-totp": await totpAt(secret, stepAt(Date.now()) + 1) },
    });
    expect(withCode.status).toBe(200);
    expect(withCode.body.key).toBe(handoff.plaintext);
  });

  it("refuses a caller that does not hold every scope of the rotated key (403)", async () => {
    const tenant = await createTenant("pickup scopes");
    const handoff = await handOff(tenant, { keyBody: { role: "admin" } });
    const readWrite = await createKey(tenant, { role: "read_write" });
    const refused = await pickUp(tenant, handoff.keyId, { key: readWrite.key });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe("FORBIDDEN");
    expect(await handoffRow(handoff.keyId)).not.toBeNull();
  });

  it("is 404 once the overlap has ended, and for a key that was never handed off", async () => {
    const tenant = await createTenant("pickup expired");
    const expired = await handOff(tenant, { expiresAt: Date.now() - 1_000 });
    expect((await pickUp(tenant, expired.keyId)).status).toBe(404);
    const plain = await createKey(tenant);
    expect((await pickUp(tenant, plain.id)).status).toBe(404);
    expect(
      (await call("POST", "/api/v1/keys/key_doesnotexist000000000/pickup", { key: tenant.adminKey })).status,
    ).toBe(404);
  });

  it("returns an undelivered JWE instead of a plaintext when the tenant has an endpoint", async () => {
    const tenant = await createTenant("pickup jwe");
    const { publicJwk, privateKey } = await deliveryKeyPair();
    await registerEndpoint(tenant, publicJwk);
    const handoff = await handOff(tenant);
    expect(handoff.method).toBe("webhook");
    const picked = await pickUp(tenant, handoff.keyId);
    expect(picked.status).toBe(200);
    expect(picked.body.key).toBeUndefined();
    const { plaintext } = await compactDecrypt(picked.body.jwe ?? "", privateKey);
    expect(JSON.parse(new TextDecoder().decode(plaintext)).key).toBe(handoff.plaintext);
    expect(await handoffRow(handoff.keyId)).toBeNull();
  });
});
