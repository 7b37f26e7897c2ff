import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../src/crypto/random";
import { applyEvaluations } from "../../src/monitoring/alert-lifecycle";
import type { Condition, EvaluatedRule, Evaluation } from "../../src/monitoring/evaluation";

const T0 = Date.UTC(2030, 0, 15, 12);
const HOUR = 3_600_000;

function rule(overrides: Partial<EvaluatedRule> = {}): EvaluatedRule {
  return {
    tenantId: newId("ten"),
    ruleId: newId("rul"),
    kind: "usage_threshold",
    severity: "warning",
    cooldownSeconds: 3600,
    channelIds: ["chn_a", "chn_b"],
    serviceId: null,
    settings: {},
    ...overrides,
  };
}

function condition(subjectId: string, overrides: Partial<Condition> = {}): Condition {
  return {
    subject: { type: "key", id: subjectId },
    summary: `key ${subjectId} over threshold`,
    detail: {},
    ...overrides,
  };
}

interface AlertRow {
  id: string;
  state: string;
  severity: string;
  summary: string;
  subject_id: string;
  fired_at: number;
  last_seen_at: number;
  resolved_at: number | null;
}

async function alertsOf(tenantId: string): Promise<AlertRow[]> {
  const { results } = await env.DB.prepare(
    "SELECT id, state, severity, summary, subject_id, fired_at, last_seen_at, resolved_at FROM alerts WHERE tenant_id = ? ORDER BY fired_at, id",
  )
    .bind(tenantId)
    .all<AlertRow>();
  return results;
}

async function deliveriesOf(
  tenantId: string,
): Promise<{ alert_id: string; channel_id: string; transition: string }[]> {
  const { results } = await env.DB.prepare(
    "SELECT alert_id, channel_id, transition FROM alert_deliveries WHERE tenant_id = ? ORDER BY created_at, channel_id",
  )
    .bind(tenantId)
    .all<{ alert_id: string; channel_id: string; transition: string }>();
  return results;
}

const evaluation = (
  r: EvaluatedRule,
  conditions: Condition[],
  scope: Evaluation["scope"] = "all",
): Evaluation => ({
  rule: r,
  conditions,
  scope,
});

describe("alert lifecycle (applyEvaluations)", () => {
  it("fires and then updates 300 alerts of a rule without channels in a tick: its id lists bind one parameter, not one per id (D1 allows 100)", async () => {
    // Without channels every alert is a single statement, so a batch holds the most fired alerts.
    const r = rule({ channelIds: [] });
    const many = Array.from({ length: 300 }, (_, i) => condition(`key_${i}`));
    const first = await applyEvaluations(env, [evaluation(r, many)], T0);
    expect(first).toMatchObject({ fired: 300, updated: 0, resolved: 0 });
    const again = await applyEvaluations(env, [evaluation(r, many)], T0 + HOUR);
    expect(again).toMatchObject({ fired: 0, updated: 300, resolved: 0 });
    const rows = await alertsOf(r.tenantId);
    expect(rows).toHaveLength(300);
    expect(rows.every((row) => row.last_seen_at === T0 + HOUR)).toBe(true);
    expect(await deliveriesOf(r.tenantId)).toHaveLength(0);
  });

  it("fires once with a 'fired' notification per channel, and de-duplicates while the condition stays true", async () => {
    const r = rule();
    const first = await applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0);
    expect(first).toMatchObject({ fired: 1, updated: 0, resolved: 0 });
    const again = await applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0 + HOUR);
    expect(again).toMatchObject({ fired: 0, updated: 1, resolved: 0 });

    const rows = await alertsOf(r.tenantId);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      state: "firing",
      fired_at: T0,
      last_seen_at: T0 + HOUR,
      resolved_at: null,
    });
    const deliveries = await deliveriesOf(r.tenantId);
    expect(deliveries).toEqual([
      { alert_id: rows[0]?.id, channel_id: "chn_a", transition: "fired" },
      { alert_id: rows[0]?.id, channel_id: "chn_b", transition: "fired" },
    ]);
  });

  it("resolves an open alert whose condition cleared, with a 'resolved' notification per channel", async () => {
    const r = rule();
    await applyEvaluations(env, [evaluation(r, [condition("key_1"), condition("key_2")])], T0);
    const report = await applyEvaluations(env, [evaluation(r, [condition("key_2")])], T0 + HOUR);
    expect(report).toMatchObject({ fired: 0, updated: 1, resolved: 1 });

    const rows = await alertsOf(r.tenantId);
    const resolved = rows.find((row) => row.subject_id === "key_1");
    expect(resolved).toMatchObject({ state: "resolved", resolved_at: T0 + HOUR });
    expect(rows.find((row) => row.subject_id === "key_2")?.state).toBe("firing");
    const resolutions = (await deliveriesOf(r.tenantId)).filter((d) => d.transition === "resolved");
    expect(resolutions).toEqual([
      { alert_id: resolved?.id, channel_id: "chn_a", transition: "resolved" },
      { alert_id: resolved?.id, channel_id: "chn_b", transition: "resolved" },
    ]);
  });

  it("resolves by absence only inside the evaluation's scope", async () => {
    const r = rule();
    await applyEvaluations(env, [evaluation(r, [condition("key_1"), condition("key_2")])], T0);
    // A chunk that looked at key_2 only says nothing about key_1; an event rule (scope none) resolves nothing.
    await applyEvaluations(env, [evaluation(r, [], { subjects: ["key_2"] })], T0 + HOUR);
    await applyEvaluations(env, [evaluation(r, [], "none")], T0 + 2 * HOUR);

    const rows = await alertsOf(r.tenantId);
    expect(rows.find((row) => row.subject_id === "key_1")?.state).toBe("firing");
    expect(rows.find((row) => row.subject_id === "key_2")).toMatchObject({
      state: "resolved",
      resolved_at: T0 + HOUR,
    });
  });

  it("resolves the fingerprints an evaluation lists in `resolves`, whatever its scope", async () => {
    const r = rule({ kind: "rotation" });
    const failed = condition("key_1", { occurrence: "run_1" });
    await applyEvaluations(env, [evaluation(r, [failed], "none")], T0);
    const [alert] = await alertsOf(r.tenantId);
    await applyEvaluations(
      env,
      [{ rule: r, conditions: [], scope: "none", resolves: [`${r.ruleId}|key:key_1|run_1`] }],
      T0 + HOUR,
    );
    expect((await alertsOf(r.tenantId))[0]).toMatchObject({ id: alert?.id, state: "resolved" });
  });

  it("cools down: a fingerprint resolved less than cooldown_seconds ago does not fire again, later it does", async () => {
    const r = rule({ cooldownSeconds: 7200 });
    await applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0);
    await applyEvaluations(env, [evaluation(r, [])], T0 + HOUR);

    const within = await applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0 + HOUR + 7_199_000);
    expect(within).toMatchObject({ fired: 0, suppressed: 1 });
    expect(await alertsOf(r.tenantId)).toHaveLength(1);

    const after = await applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0 + 3 * HOUR);
    expect(after).toMatchObject({ fired: 1, suppressed: 0 });
    const rows = await alertsOf(r.tenantId);
    expect(rows.map((row) => row.state)).toEqual(["resolved", "firing"]);
    expect((await deliveriesOf(r.tenantId)).filter((d) => d.transition === "fired")).toHaveLength(4);
  });

  it("keeps an acknowledged alert acknowledged (and de-duplicated) while its condition stays true", async () => {
    const r = rule();
    await applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0);
    await env.DB.prepare("UPDATE alerts SET state = 'acknowledged', acknowledged_at = ? WHERE tenant_id = ?")
      .bind(T0 + 1, r.tenantId)
      .run();
    const report = await applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0 + HOUR);
    expect(report).toMatchObject({ fired: 0, updated: 1 });
    const rows = await alertsOf(r.tenantId);
    expect(rows).toHaveLength(1);
    expect(rows[0]?.state).toBe("acknowledged");

    await applyEvaluations(env, [evaluation(r, [])], T0 + 2 * HOUR);
    expect((await alertsOf(r.tenantId))[0]?.state).toBe("resolved");
  });

  it("updates the summary and severity of an open alert without notifying again", async () => {
    const r = rule();
    await applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0);
    await applyEvaluations(
      env,
      [evaluation(r, [condition("key_1", { summary: "worse now", severity: "critical" })])],
      T0 + HOUR,
    );
    const [row] = await alertsOf(r.tenantId);
    expect(row).toMatchObject({ summary: "worse now", severity: "critical", state: "firing" });
    expect(await deliveriesOf(r.tenantId)).toHaveLength(2);
  });

  it("is idempotent under a duplicate tick: two applications at once fire one alert and notify once", async () => {
    const r = rule();
    await Promise.all([
      applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0),
      applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0 + 1000),
    ]);
    const rows = await alertsOf(r.tenantId);
    expect(rows).toHaveLength(1);
    const deliveries = await deliveriesOf(r.tenantId);
    expect(deliveries).toHaveLength(2);
    expect(new Set(deliveries.map((d) => d.alert_id))).toEqual(new Set([rows[0]?.id]));
  });

  it("never notifies a failing channel about itself: its alert goes to the other channels", async () => {
    const r = rule({ kind: "channel_failing", channelIds: ["chn_a", "chn_b", "chn_c"] });
    await applyEvaluations(
      env,
      [
        evaluation(r, [
          { subject: { type: "channel", id: "chn_b" }, summary: "channel failing", detail: {} },
        ]),
      ],
      T0,
    );
    expect((await deliveriesOf(r.tenantId)).map((d) => d.channel_id)).toEqual(["chn_a", "chn_c"]);
  });

  it("lists an alert with no channel at all (nothing to notify, still recorded)", async () => {
    const r = rule({ channelIds: [] });
    await applyEvaluations(env, [evaluation(r, [condition("key_1")])], T0);
    expect(await alertsOf(r.tenantId)).toHaveLength(1);
    expect(await deliveriesOf(r.tenantId)).toEqual([]);
  });

  it("keeps tenants apart: the same rule id and fingerprint in two tenants are two alerts", async () => {
    const a = rule({ ruleId: "default:expiry_warning", kind: "expiry_warning" });
    const b = { ...a, tenantId: newId("ten") };
    await applyEvaluations(
      env,
      [evaluation(a, [condition("key_1")]), evaluation(b, [condition("key_1")])],
      T0,
    );
    await applyEvaluations(env, [evaluation(a, [])], T0 + HOUR);
    expect((await alertsOf(a.tenantId))[0]?.state).toBe("resolved");
    expect((await alertsOf(b.tenantId))[0]?.state).toBe("firing");
  });
});
