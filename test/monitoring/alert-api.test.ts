import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { applyStateRules } from "../../src/monitoring/state-rules";
import { call, callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { insertChannelRow } from "./channel-rows";

const DAY = 86_400_000;
/** Evaluations run at a fixed time a day ahead: the route's own clock (acknowledge, resolve) is later. */
const BASE = Math.floor(Date.now() / DAY) * DAY - 2 * DAY;

interface AlertView {
  id: string;
  kind: string;
  severity: string;
  state: string;
  subject: { type: string; id: string };
  fired_at: string;
  acknowledged_by: string | null;
  resolved_at: string | null;
  rule_id: string;
  summary: string;
  console_url: string | null;
  deliveries?: { channel_id: string; transition: string; state: string }[];
}

const addChannel = (tenant: TestTenant, name: string) => insertChannelRow(tenant, name, BASE);

/** A tenant with `count` keys expiring within a week: one firing expiry alert per key, from the default rule. */
async function tenantWithAlerts(count: number) {
  const tenant = await createTenant();
  const keys = [];
  for (let i = 0; i < count; i++) {
    const key = await createKey(tenant, { name: `expiring ${i}` });
    await env.DB.prepare("UPDATE api_keys SET expires_at = ? WHERE id = ?")
      .bind(BASE + (5 + i) * DAY, key.id)
      .run();
    keys.push(key);
  }
  return { tenant, keys };
}

const list = (tenant: TestTenant, query = "") =>
  callJson<{ items: AlertView[]; next_cursor: string | null }>("GET", `/api/v1/alerts${query}`, {
    key: tenant.adminKey,
  });

describe("GET /api/v1/alerts", () => {
  it("lists the default expiry reminders of a tenant with no channel, newest first, paged by cursor", async () => {
    const { tenant, keys } = await tenantWithAlerts(3);
    await applyStateRules(env, BASE, { tenantId: tenant.id });

    const first = await list(tenant, "?limit=2");
    expect(first.status).toBe(200);
    expect(first.body.items).toHaveLength(2);
    expect(first.body.items[0]).toMatchObject({
      kind: "expiry_warning",
      severity: "warning",
      state: "firing",
      rule_id: "default:expiry_warning",
      fired_at: new Date(BASE).toISOString(),
      resolved_at: null,
    });
    expect(first.body.items[0]?.console_url).toContain(`/console/#/alerts/${first.body.items[0]?.id}`);
    const second = await list(tenant, `?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.next_cursor).toBeNull();
    const subjects = [...first.body.items, ...second.body.items].map((a) => a.subject.id);
    expect(new Set(subjects)).toEqual(new Set(keys.map((k) => k.id)));
  });

  it("filters by state, severity and kind", async () => {
    const { tenant } = await tenantWithAlerts(2);
    await applyStateRules(env, BASE, { tenantId: tenant.id });
    const { items } = (await list(tenant)).body;
    await call("POST", `/api/v1/alerts/${items[0]?.id}/acknowledge`, { key: tenant.adminKey });

    expect((await list(tenant, "?state=acknowledged")).body.items.map((a) => a.id)).toEqual([items[0]?.id]);
    expect((await list(tenant, "?state=firing")).body.items.map((a) => a.id)).toEqual([items[1]?.id]);
    expect((await list(tenant, "?severity=critical")).body.items).toEqual([]);
    expect((await list(tenant, "?kind=rotation")).body.items).toEqual([]);
    expect((await list(tenant, "?kind=expiry_warning")).body.items).toHaveLength(2);
    expect((await list(tenant, "?state=open")).status).toBe(422);
    expect((await list(tenant, "?cursor=not-a-cursor")).status).toBe(400);
  });

  it("never shows another tenant's alerts, and answers 404 for one by id (threat model case 1)", async () => {
    const { tenant, keys } = await tenantWithAlerts(1);
    await applyStateRules(env, BASE, { tenantId: tenant.id });
    const [alert] = (await list(tenant)).body.items;
    const other = await createTenant();
    expect((await list(other)).body.items).toEqual([]);
    for (const [method, path] of [
      ["GET", `/api/v1/alerts/${alert?.id}`],
      ["POST", `/api/v1/alerts/${alert?.id}/acknowledge`],
      ["POST", `/api/v1/alerts/${alert?.id}/resolve`],
    ] as const) {
      expect((await call(method, path, { key: other.adminKey })).status).toBe(404);
    }
    expect(
      (await callJson<AlertView>("GET", `/api/v1/alerts/${alert?.id}`, { key: tenant.adminKey })).body
        .subject,
    ).toEqual({
      type: "key",
      id: keys[0]?.id,
    });
  });
});

describe("acknowledge and resolve", () => {
  it("acknowledges a firing alert once, audited, and refuses to acknowledge a resolved one", async () => {
    const { tenant } = await tenantWithAlerts(1);
    await applyStateRules(env, BASE, { tenantId: tenant.id });
    const [alert] = (await list(tenant)).body.items;

    const acked = await callJson<AlertView>("POST", `/api/v1/alerts/${alert?.id}/acknowledge`, {
      key: tenant.adminKey,
    });
    expect(acked.status).toBe(200);
    expect(acked.body).toMatchObject({ state: "acknowledged", acknowledged_by: tenant.adminKeyId });
    const again = await callJson<AlertView>("POST", `/api/v1/alerts/${alert?.id}/acknowledge`, {
      key: tenant.adminKey,
    });
    expect(again.body.state).toBe("acknowledged");

    // Still true at the next evaluation: the acknowledged alert stays the one open alert.
    await applyStateRules(env, BASE + 60_000, { tenantId: tenant.id });
    expect((await list(tenant)).body.items.map((a) => [a.id, a.state])).toEqual([
      [alert?.id, "acknowledged"],
    ]);

    const audit = await env.DB.prepare(
      "SELECT action, target_id FROM audit_log WHERE tenant_id = ? AND action LIKE 'alert.%' ORDER BY seq",
    )
      .bind(tenant.id)
      .all<{ action: string; target_id: string }>();
    expect(audit.results).toEqual([{ action: "alert.acknowledge", target_id: alert?.id }]);

    await call("POST", `/api/v1/alerts/${alert?.id}/resolve`, { key: tenant.adminKey });
    const conflict = await call("POST", `/api/v1/alerts/${alert?.id}/acknowledge`, { key: tenant.adminKey });
    expect(conflict.status).toBe(409);
    expect(conflict.headers.get("content-type")).toContain("application/problem+json");
  });

  it("resolves by hand with a 'resolved' notification per channel, audited; the cool-down holds it back", async () => {
    const { tenant } = await tenantWithAlerts(1);
    const channel = await addChannel(tenant, "ops");
    await applyStateRules(env, BASE, { tenantId: tenant.id });
    const [alert] = (await list(tenant)).body.items;

    const resolved = await callJson<AlertView>("POST", `/api/v1/alerts/${alert?.id}/resolve`, {
      key: tenant.adminKey,
    });
    expect(resolved.status).toBe(200);
    expect(resolved.body.state).toBe("resolved");
    const detail = await callJson<AlertView>("GET", `/api/v1/alerts/${alert?.id}`, { key: tenant.adminKey });
    expect(detail.body.deliveries?.map((d) => [d.channel_id, d.transition, d.state])).toEqual([
      [channel, "fired", "pending"],
      [channel, "resolved", "pending"],
    ]);
    const audit = await env.DB.prepare(
      "SELECT action FROM audit_log WHERE tenant_id = ? AND action = 'alert.resolve' AND target_id = ?",
    )
      .bind(tenant.id, alert?.id)
      .all();
    expect(audit.results).toHaveLength(1);

    // The key still expires soon: within the default one-hour cool-down the reminder does not come back.
    const resolvedAt = Date.parse(resolved.body.resolved_at as string);
    const report = await applyStateRules(env, resolvedAt + 60_000, { tenantId: tenant.id });
    expect(report).toMatchObject({ fired: 0, suppressed: 1 });
  });

  it("refuses a read-only key that acknowledges or resolves, with no side effects (threat model case 13)", async () => {
    const { tenant } = await tenantWithAlerts(1);
    await applyStateRules(env, BASE, { tenantId: tenant.id });
    const [alert] = (await list(tenant)).body.items;
    const readOnly = await createKey(tenant, { role: "read_only" });
    expect((await call("GET", `/api/v1/alerts/${alert?.id}`, { key: readOnly.key })).status).toBe(200);
    expect(
      (await call("POST", `/api/v1/alerts/${alert?.id}/acknowledge`, { key: readOnly.key })).status,
    ).toBe(403);
    expect((await call("POST", `/api/v1/alerts/${alert?.id}/resolve`, { key: readOnly.key })).status).toBe(
      403,
    );
    expect((await list(tenant)).body.items[0]?.state).toBe("firing");
  });
});
