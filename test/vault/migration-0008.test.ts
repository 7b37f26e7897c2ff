import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DEK_ROTATION_MS } from "../../src/vault/data-keys";
import { createTenant } from "../helpers/api";

const DAY = 86_400_000;

describe("migration 0008: existing DEKs join the 90-day schedule", () => {
  it("keeps a young DEK on created_at + 90 days and spreads the DEKs already past it over the next 90 days", async () => {
    const young = await createTenant("young DEK");
    const old = await Promise.all(Array.from({ length: 20 }, (_, i) => createTenant(`old DEK ${i}`)));
    const now = Date.now();
    await env.DB.batch([
      env.DB.prepare("UPDATE data_keys SET created_at = ?, next_rotation_at = NULL WHERE tenant_id = ?").bind(
        now - 10 * DAY,
        young.id,
      ),
      ...old.map((tenant) =>
        env.DB.prepare(
          "UPDATE data_keys SET created_at = ?, next_rotation_at = NULL WHERE tenant_id = ?",
        ).bind(now - 400 * DAY, tenant.id),
      ),
    ]);
    const migration = env.TEST_MIGRATIONS.find((entry) => entry.name.startsWith("0008"));
    const conversion = migration?.queries.find((query) => query.includes("spread at random"));
    expect(conversion).toBeDefined();
    await env.DB.prepare(conversion as string).run();
    const after = Date.now();

    const dueAt = async (tenantId: string) =>
      (
        await env.DB.prepare("SELECT next_rotation_at AS at FROM data_keys WHERE tenant_id = ?")
          .bind(tenantId)
          .first<{ at: number }>()
      )?.at;
    expect(await dueAt(young.id)).toBe(now - 10 * DAY + DEK_ROTATION_MS);
    const spread = await Promise.all(old.map((tenant) => dueAt(tenant.id)));
    for (const at of spread) {
      // Never in the past (no burst on the first tick), never beyond one period from the migration.
      expect(at).toBeGreaterThanOrEqual(now - 1_000);
      expect(at).toBeLessThanOrEqual(after + DEK_ROTATION_MS);
    }
    // Spread, not bunched: twenty draws over 90 days do not share a day.
    expect(new Set(spread.map((at) => Math.floor((at as number) / DAY))).size).toBeGreaterThan(10);
  });
});
