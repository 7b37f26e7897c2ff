import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../src/crypto/random";
import { database } from "../../src/db/client";
import { loadRules } from "../../src/monitoring/rule-loader";
import { applyStateRules } from "../../src/monitoring/state-rules";
import { stripeKey } from "../credentials/samples";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { insertChannelRow } from "./channel-rows";

const DAY = 86_400_000;
const HOUR = 3_600_000;
/** Far from any wall-clock edge: every test moves its own clock from here. */
const BASE = Math.floor(Date.now() / DAY) * DAY + 12 * HOUR;

interface Alert {
  id: string;
  rule_id: string;
  kind: string;
  state: string;
  severity: string;
  subject_type: string;
  subject_id: string;
  fingerprint: string;
  summary: string;
}

async function alertsOf(tenantId: string, kind?: string): Promise<Alert[]> {
  const { results } = await env.DB.prepare(
    `SELECT id, rule_id, kind, state, severity, subject_type, subject_id, fingerprint, summary FROM alerts
     WHERE tenant_id = ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY fired_at, id`,
  )
    .bind(tenantId, kind ?? null)
    .all<Alert>();
  return results;
}

const tick = (tenant: TestTenant, now: number) => applyStateRules(env, now, { tenantId: tenant.id });

async function sql(query: string, ...params: unknown[]) {
  await env.DB.prepare(query)
    .bind(...params)
    .run();
}

const addChannel = (tenant: TestTenant, name: string, failures = 0) =>
  insertChannelRow(tenant, name, BASE, failures);

async function addRule(
  tenant: TestTenant,
  kind: string,
  fields: Record<string, unknown> = {},
): Promise<string> {
  const id = newId("rul");
  await sql(
    `INSERT INTO alert_rules (id, tenant_id, name, kind, settings, channel_ids, severity, cooldown_seconds, enabled,
       created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    id,
    tenant.id,
    `${kind} rule`,
    kind,
    JSON.stringify(fields.settings ?? {}),
    JSON.stringify(fields.channel_ids ?? []),
    fields.severity ?? "warning",
    fields.cooldown_seconds ?? 3600,
    fields.enabled === false ? 0 : 1,
    BASE,
    BASE,
  );
  return id;
}

async function storedCredential(tenant: TestTenant): Promise<string> {
  const created = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service: "stripe", environment: "development", fields: { secret_key: stripeKey() } },
  });
  expect(created.status).toBe(201);
  return created.body.id;
}

describe("rule loader and default rules", () => {
  it("gives every tenant the default expiry, rotation, re-test and channel rules, to all of its channels", async () => {
    const tenant = await createTenant();
    const a = await addChannel(tenant, "ops");
    const b = await addChannel(tenant, "pager");
    const rules = await loadRules(
      database(env.DB),
      ["expiry_warning", "rotation", "retest_failing", "channel_failing"],
      {
        tenantId: tenant.id,
      },
    );
    expect(rules.map((rule) => rule.ruleId).sort()).toEqual([
      "default:channel_failing",
      "default:expiry_warning",
      "default:retest_failing",
      "default:rotation",
    ]);
    const expiry = rules.find((rule) => rule.kind === "expiry_warning");
    expect(expiry?.settings).toEqual({ days_before: [30, 7, 1], subjects: ["key", "credential"] });
    expect(new Set(expiry?.channelIds)).toEqual(new Set([a, b]));
  });

  it("replaces a default by the tenant's stored rule of its kind; a disabled one switches the default off", async () => {
    const tenant = await createTenant();
    const channel = await addChannel(tenant, "ops");
    const stored = await addRule(tenant, "expiry_warning", {
      settings: { days_before: [14] },
      channel_ids: [channel, "chn_deleted"],
    });
    await addRule(tenant, "retest_failing", { enabled: false });
    const rules = await loadRules(database(env.DB), ["expiry_warning", "retest_failing", "failure_rate"], {
      tenantId: tenant.id,
    });
    expect(rules).toHaveLength(1);
    expect(rules[0]).toMatchObject({
      ruleId: stored,
      channelIds: [channel],
      settings: { days_before: [14], subjects: ["key", "credential"] },
    });
  });
});

describe("expiry_warning rule", () => {
  it("fires the 30-day reminder, de-duplicates it, escalates to 7 and 1 days, and resolves once expired", async () => {
    const tenant = await createTenant();
    const key = await createKey(tenant);
    await sql("UPDATE api_keys SET expires_at = ? WHERE id = ?", BASE + 40 * DAY, key.id);

    await tick(tenant, BASE);
    expect(await alertsOf(tenant.id, "expiry_warning")).toEqual([]);

    await tick(tenant, BASE + 11 * DAY);
    await tick(tenant, BASE + 12 * DAY);
    let alerts = await alertsOf(tenant.id, "expiry_warning");
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      rule_id: "default:expiry_warning",
      state: "firing",
      severity: "warning",
      subject_type: "key",
      subject_id: key.id,
      fingerprint: `default:expiry_warning|key:${key.id}|30d@${BASE + 40 * DAY}`,
    });
    // The de-duplicated alert follows the condition: 28 days left at the second tick.
    expect(alerts[0]?.summary).toContain("expires in 28 days");

    await tick(tenant, BASE + 34 * DAY);
    alerts = await alertsOf(tenant.id, "expiry_warning");
    expect(alerts.map((a) => [a.fingerprint.split("|")[2], a.state])).toEqual([
      [`30d@${BASE + 40 * DAY}`, "resolved"],
      [`7d@${BASE + 40 * DAY}`, "firing"],
    ]);

    await tick(tenant, BASE + 39 * DAY + HOUR);
    alerts = await alertsOf(tenant.id, "expiry_warning");
    expect(alerts.at(-1)).toMatchObject({ severity: "critical", state: "firing" });
    expect(alerts.at(-1)?.fingerprint).toContain("|1d@");

    await tick(tenant, BASE + 41 * DAY);
    expect((await alertsOf(tenant.id, "expiry_warning")).every((a) => a.state === "resolved")).toBe(true);
  });

  it("reminds of a credential's provider expiry, shown even with no channel configured", async () => {
    const tenant = await createTenant();
    const credentialId = await storedCredential(tenant);
    await sql("UPDATE credentials SET provider_expires_at = ? WHERE id = ?", BASE + 5 * DAY, credentialId);
    await tick(tenant, BASE);
    const alerts = await alertsOf(tenant.id, "expiry_warning");
    expect(alerts).toMatchObject([{ subject_type: "credential", subject_id: credentialId, state: "firing" }]);
    const deliveries = await env.DB.prepare("SELECT count(*) AS n FROM alert_deliveries WHERE tenant_id = ?")
      .bind(tenant.id)
      .first<{ n: number }>();
    expect(deliveries?.n).toBe(0);
  });

  it("cools down: a renewal that is undone within the cool-down does not remind again, after it does", async () => {
    const tenant = await createTenant();
    const key = await createKey(tenant);
    const expiry = BASE + 20 * DAY;
    await sql("UPDATE api_keys SET expires_at = ? WHERE id = ?", expiry, key.id);
    await tick(tenant, BASE);
    await sql("UPDATE api_keys SET expires_at = ? WHERE id = ?", BASE + 300 * DAY, key.id);
    await tick(tenant, BASE + HOUR);
    expect((await alertsOf(tenant.id, "expiry_warning")).map((a) => a.state)).toEqual(["resolved"]);

    await sql("UPDATE api_keys SET expires_at = ? WHERE id = ?", expiry, key.id);
    const within = await tick(tenant, BASE + HOUR + 30 * 60_000);
    expect(within.suppressed).toBe(1);
    expect(await alertsOf(tenant.id, "expiry_warning")).toHaveLength(1);

    await tick(tenant, BASE + 2 * HOUR + 1000);
    expect((await alertsOf(tenant.id, "expiry_warning")).map((a) => a.state)).toEqual(["resolved", "firing"]);
  });

  it("does not remind of a revoked key or of a rotated key's overlap end", async () => {
    const tenant = await createTenant();
    const revoked = await createKey(tenant);
    const rotated = await createKey(tenant);
    await sql(
      "UPDATE api_keys SET expires_at = ?, revoked_at = ? WHERE id = ?",
      BASE + 2 * DAY,
      BASE,
      revoked.id,
    );
    await sql(
      "UPDATE api_keys SET expires_at = ?, rotated_to_id = 'key_x' WHERE id = ?",
      BASE + 2 * DAY,
      rotated.id,
    );
    await tick(tenant, BASE);
    expect(await alertsOf(tenant.id, "expiry_warning")).toEqual([]);
  });
});

describe("rotation rule", () => {
  async function run(tenant: TestTenant, subjectId: string, state: string, startedAt: number, step = "mint") {
    const id = `run_${newId("x").slice(2)}`;
    await sql(
      `INSERT INTO rotation_runs (id, tenant_id, subject_type, subject_id, trigger, state, step, error, started_at,
         updated_at, finished_at)
       VALUES (?, ?, 'key', ?, 'schedule', ?, ?, ?, ?, ?, ?)`,
      id,
      tenant.id,
      subjectId,
      state,
      step,
      state === "failed" ? "provider_error" : null,
      startedAt,
      startedAt,
      state === "in_progress" ? null : startedAt + 1000,
    );
    return id;
  }

  it("fires critical on a failed rotation, keeps one alert through a failed retry, resolves when one completes", async () => {
    const tenant = await createTenant();
    const key = await createKey(tenant);
    await run(tenant, key.id, "failed", BASE);
    await tick(tenant, BASE + 1000);
    await run(tenant, key.id, "in_progress", BASE + HOUR);
    await tick(tenant, BASE + HOUR + 1000);
    await run(tenant, key.id, "failed", BASE + 2 * HOUR - 2000);
    await tick(tenant, BASE + 2 * HOUR);
    let alerts = await alertsOf(tenant.id, "rotation");
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ state: "firing", severity: "critical", subject_id: key.id });
    expect(alerts[0]?.summary).toContain("rotation failed at step mint");

    await run(tenant, key.id, "completed", BASE + 3 * HOUR);
    await tick(tenant, BASE + 3 * HOUR + 5000);
    alerts = await alertsOf(tenant.id, "rotation");
    expect(alerts.map((a) => a.state)).toEqual(["resolved"]);
  });

  it("fires when a scheduled key rotation is overdue by overdue_after_hours, not before", async () => {
    const tenant = await createTenant();
    const key = await createKey(tenant);
    await sql("UPDATE api_keys SET next_rotation_at = ? WHERE id = ?", BASE, key.id);
    await tick(tenant, BASE + 23 * HOUR);
    expect(await alertsOf(tenant.id, "rotation")).toEqual([]);
    await tick(tenant, BASE + 25 * HOUR);
    expect(await alertsOf(tenant.id, "rotation")).toMatchObject([{ state: "firing", subject_id: key.id }]);
    await sql("UPDATE api_keys SET next_rotation_at = ? WHERE id = ?", BASE + 90 * DAY, key.id);
    await tick(tenant, BASE + 26 * HOUR);
    expect((await alertsOf(tenant.id, "rotation")).map((a) => a.state)).toEqual(["resolved"]);
  });

  it("reminds that an assisted rotation is due, then escalates it as overdue", async () => {
    const tenant = await createTenant();
    const credentialId = await storedCredential(tenant);
    const rotation = await callJson("PUT", `/api/v1/credentials/${credentialId}/rotation`, {
      key: tenant.adminKey,
      body: { method: "assisted", policy_days: 30 },
    });
    expect(rotation.status).toBe(200);
    await sql(
      "UPDATE credential_rotations SET next_rotation_at = ? WHERE credential_id = ?",
      BASE,
      credentialId,
    );
    await tick(tenant, BASE + HOUR);
    let alerts = await alertsOf(tenant.id, "rotation");
    expect(alerts).toMatchObject([{ state: "firing", severity: "warning", subject_id: credentialId }]);
    expect(alerts[0]?.fingerprint).toContain(`|due@${BASE}`);

    await tick(tenant, BASE + 25 * HOUR);
    alerts = await alertsOf(tenant.id, "rotation");
    expect(alerts.map((a) => [a.fingerprint.split("|")[2], a.state, a.severity])).toEqual([
      [`due@${BASE}`, "resolved", "warning"],
      [`overdue@${BASE}`, "firing", "critical"],
    ]);
  });

  it("raises a missed pickup as a critical alert and closes it a week later", async () => {
    const tenant = await createTenant();
    const key = await createKey(tenant);
    await sql(
      `INSERT INTO events (id, tenant_id, kind, severity, subject_type, subject_id, dedupe_key, detail, at)
       VALUES (?, ?, 'rotation.pickup_missed', 'critical', 'key', ?, ?, '{}', ?)`,
      newId("evt"),
      tenant.id,
      key.id,
      `rotation.pickup_missed:${newId("run")}`,
      BASE,
    );
    await tick(tenant, BASE + 1000);
    expect(await alertsOf(tenant.id, "rotation")).toMatchObject([{ state: "firing", severity: "critical" }]);
    await tick(tenant, BASE + 8 * DAY);
    expect((await alertsOf(tenant.id, "rotation")).map((a) => a.state)).toEqual(["resolved"]);
  });
});

describe("retest_failing rule", () => {
  it("fires while a credential fails its live test, de-duplicates, and resolves when it passes again", async () => {
    const tenant = await createTenant();
    const credentialId = await storedCredential(tenant);
    await sql(
      "UPDATE credentials SET last_test_status = 'invalid', last_test_reason = 'rejected' WHERE id = ?",
      credentialId,
    );
    await tick(tenant, BASE);
    await tick(tenant, BASE + HOUR);
    expect(await alertsOf(tenant.id, "retest_failing")).toMatchObject([
      { state: "firing", severity: "critical", subject_id: credentialId },
    ]);
    await sql("UPDATE credentials SET last_test_status = 'valid' WHERE id = ?", credentialId);
    await tick(tenant, BASE + 2 * HOUR);
    expect((await alertsOf(tenant.id, "retest_failing")).map((a) => a.state)).toEqual(["resolved"]);
  });
});

describe("channel_failing rule", () => {
  it("alerts on the other channels when one keeps failing, and resolves when it delivers again", async () => {
    const tenant = await createTenant();
    const healthy = await addChannel(tenant, "ops");
    const failing = await addChannel(tenant, "pager", 3);
    await tick(tenant, BASE);
    const [alert] = await alertsOf(tenant.id, "channel_failing");
    expect(alert).toMatchObject({ state: "firing", subject_type: "channel", subject_id: failing });
    const { results } = await env.DB.prepare("SELECT channel_id FROM alert_deliveries WHERE alert_id = ?")
      .bind(alert?.id)
      .all<{ channel_id: string }>();
    expect(results.map((row) => row.channel_id)).toEqual([healthy]);

    await sql("UPDATE alert_channels SET consecutive_failures = 0, health = 'healthy' WHERE id = ?", failing);
    await tick(tenant, BASE + HOUR);
    expect((await alertsOf(tenant.id, "channel_failing")).map((a) => a.state)).toEqual(["resolved"]);
  });
});

describe("events", () => {
  it("stamps the events an evaluation took into account, once", async () => {
    const tenant = await createTenant();
    const eventId = newId("evt");
    await sql(
      `INSERT INTO events (id, tenant_id, kind, severity, subject_type, subject_id, dedupe_key, detail, at)
       VALUES (?, ?, 'credential.test_failed', 'critical', 'credential', 'crd_x', ?, '{}', ?)`,
      eventId,
      tenant.id,
      `credential.test_failed:${eventId}`,
      BASE,
    );
    const first = await tick(tenant, BASE + 1000);
    const second = await tick(tenant, BASE + 2000);
    expect([first.events, second.events]).toEqual([1, 0]);
    const row = await env.DB.prepare("SELECT alerted_at FROM events WHERE id = ?").bind(eventId).first();
    expect(row).toEqual({ alerted_at: BASE + 1000 });
  });

  it("stamps 150 events in one evaluation: their ids bind as one parameter (D1 allows 100)", async () => {
    const tenant = await createTenant();
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150)
       INSERT INTO events (id, tenant_id, kind, severity, subject_type, subject_id, dedupe_key, detail, at)
       SELECT ?1 || '_evt_' || i, ?1, 'rotation.started', 'info', 'key', 'key_x', ?1 || ':many:' || i, '{}', ?2 FROM n`,
    )
      .bind(tenant.id, BASE)
      .run();
    const first = await tick(tenant, BASE + 1000);
    expect(first.events).toBe(150);
    const left = await env.DB.prepare(
      "SELECT count(*) AS n FROM events WHERE tenant_id = ? AND alerted_at IS NULL",
    )
      .bind(tenant.id)
      .first<{ n: number }>();
    expect(left?.n).toBe(0);
  });
});
