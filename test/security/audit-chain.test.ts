import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { countRows } from "../helpers/db";

const dropAppendOnlyTriggers = () =>
  env.DB.batch([
    env.DB.prepare("DROP TRIGGER IF EXISTS audit_log_no_update"),
    env.DB.prepare("DROP TRIGGER IF EXISTS audit_log_no_delete"),
  ]);

async function chainVerdict(tenant: TestTenant) {
  const response = await callJson<{ ok: boolean; rows: number; broken_at_seq?: number; reason?: string }>(
    "GET",
    "/api/v1/audit/verify",
    { key: tenant.adminKey },
  );
  expect(response.status).toBe(200);
  return response.body;
}

describe("audit log (SECURITY.md case 19)", () => {
  let tenant: TestTenant;

  beforeEach(async () => {
    tenant = await createTenant("audited");
    for (let i = 0; i < 4; i++) await createKey(tenant, { name: `k${i}` });
  });

  it("writes one chained row per mutation, with actor, action, target and request id but no secrets", async () => {
    const created = await createKey(tenant, { name: "watched" });
    const log = await callJson<{ items: Record<string, unknown>[] }>("GET", "/api/v1/audit?limit=100", {
      key: tenant.adminKey,
    });
    const entry = log.body.items.find((item) => item.target_id === created.id);
    expect(entry).toMatchObject({ action: "key.create", actor_type: "key", actor_id: tenant.adminKeyId });
    expect(entry?.request_id).toEqual(expect.any(String));
    expect(JSON.stringify(log.body)).not.toContain(created.key);
    expect(await chainVerdict(tenant)).toEqual({ ok: true, rows: 7 });
  });

  it("refuses updates and deletes of audit rows at the database level", async () => {
    await expect(env.DB.prepare("UPDATE audit_log SET action = 'x' WHERE seq = 1").run()).rejects.toThrow(
      /append-only/,
    );
    await expect(env.DB.prepare("DELETE FROM audit_log WHERE seq = 1").run()).rejects.toThrow(/append-only/);
  });

  it("detects an edited row at that exact row", async () => {
    await dropAppendOnlyTriggers();
    await env.DB.prepare("UPDATE audit_log SET action = 'key.read' WHERE tenant_id = ? AND seq = 3")
      .bind(tenant.id)
      .run();
    expect(await chainVerdict(tenant)).toMatchObject({
      ok: false,
      broken_at_seq: 3,
      reason: "row content altered",
    });
  });

  it("detects a deleted row at that exact position", async () => {
    await dropAppendOnlyTriggers();
    await env.DB.prepare("DELETE FROM audit_log WHERE tenant_id = ? AND seq = 4").bind(tenant.id).run();
    expect(await chainVerdict(tenant)).toMatchObject({ ok: false, broken_at_seq: 4, reason: "row missing" });
  });

  it("detects two reordered rows at the first of them", async () => {
    await dropAppendOnlyTriggers();
    await env.DB.batch([
      env.DB.prepare("UPDATE audit_log SET seq = -1 WHERE tenant_id = ? AND seq = 3").bind(tenant.id),
      env.DB.prepare("UPDATE audit_log SET seq = 3 WHERE tenant_id = ? AND seq = 4").bind(tenant.id),
      env.DB.prepare("UPDATE audit_log SET seq = 4 WHERE tenant_id = ? AND seq = -1").bind(tenant.id),
    ]);
    expect(await chainVerdict(tenant)).toMatchObject({ ok: false, broken_at_seq: 3 });
  });

  it("rolls back the mutation when its audit insert fails", async () => {
    await env.DB.prepare(
      "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log WHEN NEW.action = 'key.create' BEGIN SELECT RAISE(ABORT, 'injected'); END",
    ).run();
    const keysBefore = await countRows("api_keys");
    const auditBefore = await countRows("audit_log");
    const response = await callJson("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: { name: "doomed" },
    });
    await env.DB.prepare("DROP TRIGGER fail_audit").run();
    expect(response.status).toBe(500);
    expect(response.body).toMatchObject({ code: "INTERNAL" });
    expect(JSON.stringify(response.body)).not.toContain("injected");
    expect(await countRows("api_keys")).toBe(keysBefore);
    expect(await countRows("audit_log")).toBe(auditBefore);
  });

  it("keeps one unbroken chain under concurrent mutations", async () => {
    await Promise.all(Array.from({ length: 8 }, (_, i) => createKey(tenant, { name: `parallel ${i}` })));
    // 2 rows from tenant creation, 4 from beforeEach, 8 here.
    expect(await chainVerdict(tenant)).toEqual({ ok: true, rows: 14 });
  });
});
