import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../src/crypto/random";
import { applyEvaluations } from "../../src/monitoring/alert-lifecycle";
import { emptySlot, foldHour, hourOfWeek, WEEK_MS } from "../../src/monitoring/anomaly";
import { FOLD_LAG_HOURS, foldClosedHours } from "../../src/monitoring/baselines";
import { counterEvaluations } from "../../src/monitoring/counter-rules";
import { createKey, createTenant } from "../helpers/api";
import { addRule as addRuleAt, addUsage, type UsageRow } from "./usage-fixtures";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Monday 2030-01-14 00:00 UTC, far from the test run's own clock: rows of other tests never fall in its hours. */
const MONDAY = Date.UTC(2030, 0, 14);

const addRule: typeof addRuleAt = (tenantId, kind, settings, options = {}) =>
  addRuleAt(tenantId, kind, settings, { createdAt: MONDAY - 30 * DAY, ...options });

/** One cron tick's counter part: fold, evaluate, apply (as src/monitoring/alert-tick.ts runs them). */
async function tick(now: number) {
  await foldClosedHours(env, now);
  return applyEvaluations(env, await counterEvaluations(env, now), now);
}

interface AlertRow {
  state: string;
  subject_type: string;
  subject_id: string;
  fingerprint: string;
  summary: string;
  fired_at: number;
  resolved_at: number | null;
}

async function alertsOf(ruleId: string): Promise<AlertRow[]> {
  const { results } = await env.DB.prepare(
    "SELECT state, subject_type, subject_id, fingerprint, summary, fired_at, resolved_at FROM alerts WHERE rule_id = ? ORDER BY fired_at, fingerprint",
  )
    .bind(ruleId)
    .all<AlertRow>();
  return results;
}

const states = (rows: AlertRow[]) => rows.map((row) => `${row.subject_id}:${row.state}`);

describe("counter rules on the cron, with an injected clock", () => {
  it("usage_threshold fires when a key's last hour reaches the threshold, de-duplicates, resolves as the window slides, and cools down", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "usage_threshold", { window: "hour", threshold: 1000 });
    const busy = newId("key");
    const quiet = newId("key");
    const ten = MONDAY + 10 * HOUR;
    await addUsage([
      { tenantId: tenant.id, keyId: busy, start: ten, valid: 1150, invalid: 50 },
      { tenantId: tenant.id, keyId: quiet, start: ten, valid: 999 },
    ]);

    expect((await tick(ten + 30 * 60_000)).fired).toBe(1);
    expect(states(await alertsOf(ruleId))).toEqual([`${busy}:firing`]);
    expect((await alertsOf(ruleId))[0]?.summary).toContain("1200 requests in the last hour");

    // Still over: the same alert, not a second one.
    await addUsage([{ tenantId: tenant.id, keyId: busy, start: ten, valid: 100 }]);
    const again = await tick(ten + 50 * 60_000);
    expect(again.fired).toBe(0);
    expect(await alertsOf(ruleId)).toHaveLength(1);

    // 11:50: the last 60 minutes hold 10 of the 10:00 hour's minutes (1,300 x 1/6 = 217): resolved.
    expect((await tick(ten + HOUR + 50 * 60_000)).resolved).toBe(1);
    expect(states(await alertsOf(ruleId))).toEqual([`${busy}:resolved`]);

    // Over again at 11:55, within the hour's cool-down: suppressed, nothing fires.
    await addUsage([{ tenantId: tenant.id, keyId: busy, start: ten + HOUR, valid: 1500 }]);
    const cooling = await tick(ten + HOUR + 55 * 60_000);
    expect(cooling.fired).toBe(0);
    expect(cooling.suppressed).toBe(1);
    // After the cool-down it fires again, as a new alert.
    await addUsage([{ tenantId: tenant.id, keyId: busy, start: ten + 3 * HOUR, valid: 1500 }]);
    expect((await tick(ten + 3 * HOUR + 5 * 60_000)).fired).toBe(1);
    expect(states(await alertsOf(ruleId))).toEqual([`${busy}:resolved`, `${busy}:firing`]);
  });

  it("usage_threshold in percent of the usage budget fires per key that has one, from its valid verifications", async () => {
    const tenant = await createTenant();
    const limited = await createKey(tenant, {
      usage_limit: { remaining: 1000, refill_amount: 1000, refill_interval_ms: DAY },
    });
    const unlimited = await createKey(tenant);
    const ruleId = await addRule(tenant.id, "usage_threshold", { window: "day", percent_of_limit: 80 });
    await addUsage([
      // 850 valid of a 1,000 budget: 85%. Refused verifications consume nothing.
      {
        tenantId: tenant.id,
        keyId: limited.id,
        bucket: "day",
        start: MONDAY + DAY,
        valid: 850,
        invalid: 400,
      },
      { tenantId: tenant.id, keyId: unlimited.id, bucket: "day", start: MONDAY + DAY, valid: 1_000_000 },
    ]);
    await tick(MONDAY + DAY + 20 * HOUR);
    const alerts = await alertsOf(ruleId);
    expect(states(alerts)).toEqual([`${limited.id}:firing`]);
    expect(alerts[0]?.summary).toContain("85% of its usage limit");
  });

  it("usage_threshold on a service adds up the service's keys", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "usage_threshold", { threshold: 500 }, { serviceId: "stripe" });
    const day = MONDAY + 2 * DAY;
    await addUsage([
      {
        tenantId: tenant.id,
        keyId: newId("key"),
        serviceId: "stripe",
        bucket: "day",
        start: day,
        valid: 300,
      },
      {
        tenantId: tenant.id,
        keyId: newId("key"),
        serviceId: "stripe",
        bucket: "day",
        start: day,
        valid: 300,
      },
      {
        tenantId: tenant.id,
        keyId: newId("key"),
        serviceId: "github",
        bucket: "day",
        start: day,
        valid: 5000,
      },
    ]);
    await tick(day + 23 * HOUR);
    expect(states(await alertsOf(ruleId))).toEqual(["stripe:firing"]);
  });

  it("failure_rate fires per key and for the whole tenant (NOT_FOUND answers count there), never below min_requests", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "failure_rate", {
      window: "hour",
      threshold_percent: 20,
      min_requests: 50,
    });
    const failing = newId("key");
    const healthy = newId("key");
    const rare = newId("key");
    const at = MONDAY + 3 * DAY + 9 * HOUR;
    await addUsage([
      { tenantId: tenant.id, keyId: failing, start: at, valid: 60, invalid: 40 },
      { tenantId: tenant.id, keyId: healthy, start: at, valid: 400, invalid: 4 },
      { tenantId: tenant.id, keyId: rare, start: at, valid: 1, invalid: 9 },
      // Keys guessed against the verify route: answers naming no key.
      { tenantId: tenant.id, keyId: "", start: at, invalid: 300, notFound: 300 },
    ]);
    await tick(at + 40 * 60_000);
    const alerts = await alertsOf(ruleId);
    expect(states(alerts).sort()).toEqual([`${failing}:firing`, `${tenant.id}:firing`].sort());
    expect(alerts.find((a) => a.subject_type === "tenant")?.summary).toContain("43.4% of 814 verifications");

    // The failures stop; an hour and a half later the window holds only good traffic: both resolve.
    await addUsage([
      { tenantId: tenant.id, keyId: failing, start: at + HOUR, valid: 200 },
      { tenantId: tenant.id, keyId: healthy, start: at + HOUR, valid: 400 },
    ]);
    expect((await tick(at + HOUR + 50 * 60_000)).resolved).toBe(2);
  });

  it("auth_failure_burst fires on refused authentications summed over the tenant's keys, and resolves when they stop", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "auth_failure_burst", { threshold: 25 });
    const at = MONDAY + 4 * DAY + 2 * HOUR;
    const [a, b] = [newId("key"), newId("key")];
    await addUsage([
      { tenantId: tenant.id, keyId: a, start: at, authFailed: 20 },
      { tenantId: tenant.id, keyId: b, start: at, authFailed: 10 },
    ]);
    await tick(at + 10 * 60_000);
    const alerts = await alertsOf(ruleId);
    expect(states(alerts)).toEqual([`${tenant.id}:firing`]);
    expect(alerts[0]?.summary).toContain("30 refused authentications");
    expect((await tick(at + 2 * HOUR)).resolved).toBe(1);
  });

  it("new_origin fires for a network first seen after the key's first day, not for a new key's first origins, and resolves a day later", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "new_origin", {});
    const old = await createKey(tenant);
    const fresh = await createKey(tenant);
    const now = MONDAY + 10 * DAY;
    const origin = (keyId: string, kind: string, value: string, firstSeen: number) =>
      env.DB.prepare(
        "INSERT INTO key_origins (tenant_id, key_id, kind, value, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)",
      )
        .bind(tenant.id, keyId, kind, value, firstSeen, firstSeen)
        .run();
    await origin(old.id, "country", "DE", MONDAY);
    await origin(old.id, "network", "AS3320", MONDAY);
    await origin(old.id, "network", "AS64500", now - 10 * 60_000);
    // A key first used two hours ago from two places: its normal set, not news.
    await origin(fresh.id, "country", "FR", now - 2 * HOUR);
    await origin(fresh.id, "country", "BE", now - HOUR);

    await tick(now);
    const alerts = await alertsOf(ruleId);
    expect(alerts.map((a) => a.fingerprint)).toEqual([`${ruleId}|key:${old.id}|network:AS64500`]);
    expect(alerts[0]?.summary).toBe(`Key ${old.id} used from a new network: AS64500`);

    expect((await tick(now + 12 * HOUR)).fired).toBe(0);
    expect((await tick(now + DAY)).resolved).toBe(1);
  });

  it("anomaly_volume: four weeks of seasonal traffic folded on the cron; a spike fires within its hour, holds through the next, and resolves after a normal hour", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "anomaly_volume", {});
    const key = newId("key");
    const usual = (at: number) => {
      const how = hourOfWeek(at);
      const weekday = how < 5 * 24;
      const hour = how % 24;
      return weekday && hour >= 9 && hour < 17 ? 1000 + (how % 7) * 20 : weekday ? 200 : 30;
    };
    const rows: UsageRow[] = [{ tenantId: tenant.id, keyId: key, bucket: "day", start: MONDAY, valid: 1 }];
    for (let at = MONDAY; at < MONDAY + 4 * WEEK_MS; at += HOUR) {
      rows.push({ tenantId: tenant.id, keyId: key, start: at, valid: usual(at) });
    }
    await addUsage(rows);
    // The cron every day (it folds the 24 hours before its lag): four weeks of baselines.
    for (let at = MONDAY + DAY; at <= MONDAY + 4 * WEEK_MS + FOLD_LAG_HOURS * HOUR; at += DAY) {
      await foldClosedHours(env, at);
    }
    const tuesday14 = MONDAY + 4 * WEEK_MS + DAY + 14 * HOUR;
    const { results } = await env.DB.prepare(
      "SELECT samples, volume_mean FROM key_baselines WHERE key_id = ? AND hour_of_week = ?",
    )
      .bind(key, hourOfWeek(tuesday14))
      .all<{ samples: number; volume_mean: number }>();
    expect(results[0]?.samples).toBe(4);
    expect(results[0]?.volume_mean).toBeCloseTo(usual(tuesday14), 6);

    // Normal traffic up to Tuesday 14:00, then 5x in the 14:00 hour.
    const normal: UsageRow[] = [];
    for (let at = MONDAY + 4 * WEEK_MS; at < tuesday14; at += HOUR) {
      normal.push({ tenantId: tenant.id, keyId: key, start: at, valid: usual(at) });
    }
    await addUsage(normal);
    await addUsage([{ tenantId: tenant.id, keyId: key, start: tuesday14, valid: 2500 }]);
    expect((await tick(tuesday14 + 10 * 60_000)).fired).toBe(1);
    await addUsage([{ tenantId: tenant.id, keyId: key, start: tuesday14, valid: 2500 }]);
    expect((await tick(tuesday14 + 50 * 60_000)).fired).toBe(0);
    const alerts = await alertsOf(ruleId);
    expect(states(alerts)).toEqual([`${key}:firing`]);
    expect(alerts[0]?.summary).toContain("5000 requests in the hour from 2030-02-12T14:00:00.000Z");

    // 15:00 is normal; while it runs, the spike is the last closed hour: still firing.
    await addUsage([
      { tenantId: tenant.id, keyId: key, start: tuesday14 + HOUR, valid: usual(tuesday14 + HOUR) },
    ]);
    expect((await tick(tuesday14 + HOUR + 30 * 60_000)).resolved).toBe(0);
    // 15:00 has closed normal: resolved.
    await addUsage([{ tenantId: tenant.id, keyId: key, start: tuesday14 + 2 * HOUR, valid: 100 }]);
    expect((await tick(tuesday14 + 2 * HOUR + 5 * 60_000)).resolved).toBe(1);
    expect(states(await alertsOf(ruleId))).toEqual([`${key}:resolved`]);
  });

  it("anomaly_failures fires on a surge of failed verifications against the key's own baseline", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "anomaly_failures", { min_count: 20 });
    const key = newId("key");
    const at = MONDAY + 5 * WEEK_MS + 3 * HOUR;
    let slot = emptySlot(at - 4 * WEEK_MS, null);
    for (let week = 4; week >= 1; week--) {
      slot = foldHour(slot, at - week * WEEK_MS, { volume: 500, failures: 5 + week });
    }
    await env.DB.prepare(
      `INSERT INTO key_baselines (tenant_id, key_id, hour_of_week, samples, volume_mean, volume_var, failure_mean, failure_var, last_hour)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
      .bind(
        tenant.id,
        key,
        hourOfWeek(at),
        slot.samples,
        slot.volume.mean,
        slot.volume.variance,
        slot.failures.mean,
        slot.failures.variance,
        slot.lastHour,
      )
      .run();
    await addUsage([{ tenantId: tenant.id, keyId: key, start: at, valid: 450, invalid: 60 }]);
    await tick(at + 20 * 60_000);
    expect(states(await alertsOf(ruleId))).toEqual([`${key}:firing`]);
  });

  it("foldClosedHours folds each closed hour once, two hours behind; a repeated tick writes nothing", async () => {
    const tenant = await createTenant();
    const key = newId("key");
    const base = MONDAY + 6 * WEEK_MS + 5 * HOUR;
    await addUsage([
      { tenantId: tenant.id, keyId: key, bucket: "day", start: base - 7 * DAY, valid: 1 },
      { tenantId: tenant.id, keyId: key, start: base, valid: 90, invalid: 10 },
      { tenantId: tenant.id, keyId: key, start: base + HOUR, valid: 70 },
      { tenantId: tenant.id, keyId: "", start: base, invalid: 5 },
    ]);
    // At base + 2h30 only `base` is two hours behind; base + 1h is still in the rules' window.
    const first = await foldClosedHours(env, base + 2 * HOUR + 30 * 60_000);
    expect(first.hours).toContain(base);
    expect(first.hours).not.toContain(base + HOUR);
    const { results } = await env.DB.prepare(
      "SELECT hour_of_week, samples, volume_mean, failure_mean, last_hour FROM key_baselines WHERE key_id = ? ORDER BY hour_of_week",
    )
      .bind(key)
      .all();
    // The key was first used a week before: that week's hour counts as a quiet one, then 100 requests.
    const expected = foldHour(emptySlot(base, base - 7 * DAY), base, { volume: 100, failures: 10 });
    expect(results).toEqual([
      {
        hour_of_week: hourOfWeek(base),
        samples: 2,
        volume_mean: expected.volume.mean,
        failure_mean: expected.failures.mean,
        last_hour: base,
      },
    ]);
    const again = await foldClosedHours(env, base + 2 * HOUR + 40 * 60_000);
    expect(again).toMatchObject({ hours: [], folded: 0, queries: 1 });
  });
});
