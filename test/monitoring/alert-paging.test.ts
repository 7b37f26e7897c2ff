import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { newId } from "../../src/crypto/random";
import { runAlertTick } from "../../src/monitoring/alert-tick";
import { hourOfWeek } from "../../src/monitoring/anomaly";
import { FOLD_LAG_HOURS, FOLD_LIMITS, foldClosedHours } from "../../src/monitoring/baselines";
import { createTenant } from "../helpers/api";
import { addRule, addUsage } from "./usage-fixtures";

/**
 * The fold and the counter rules' snapshot with more active keys than one tick's page budget (small pages
 * injected: the production budget is 24 and 60 pages of 5,000). Each tick's D1 calls stay bounded, and every key
 * is folded and evaluated within a bounded number of ticks.
 */

const HOUR = 3_600_000;
const MINUTE = 60_000;
/** Monday 2031-03-03 00:00 UTC: far from the test run's clock and from counter-rules.test.ts's hours. */
const MONDAY = Date.UTC(2031, 2, 3);

async function slotsFolded(hour: number): Promise<number> {
  const row = await env.DB.prepare(
    "SELECT count(*) AS n FROM key_baselines WHERE hour_of_week = ? AND last_hour = ?",
  )
    .bind(hourOfWeek(hour), hour)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

async function alertsOf(ruleId: string) {
  const { results } = await env.DB.prepare(
    "SELECT subject_id, state, fired_at, last_seen_at FROM alerts WHERE rule_id = ? ORDER BY fired_at",
  )
    .bind(ruleId)
    .all<{ subject_id: string; state: string; fired_at: number; last_seen_at: number }>();
  return results;
}

describe("the fold over more active keys than one tick's page budget", () => {
  const limits = { page: 4, maxPages: 2 };
  const hour = MONDAY + 10 * HOUR;
  const now = hour + FOLD_LAG_HOURS * HOUR + 20 * MINUTE;

  it("folds every slot within N ticks when the active keys exceed one tick's page budget", async () => {
    const tenant = await createTenant();
    const keys = Array.from({ length: 25 }, () => newId("key"));
    await addUsage(keys.map((keyId, i) => ({ tenantId: tenant.id, keyId, start: hour, valid: 100 + i })));
    const perTick = limits.page * limits.maxPages;
    const ticks = Math.ceil(keys.length / perTick);
    const outcomes = [];
    for (let i = 0; i < ticks; i++) {
      outcomes.push(await foldClosedHours(env, now + i * 5 * MINUTE, limits));
      expect(await slotsFolded(hour)).toBe(Math.min(keys.length, (i + 1) * perTick));
    }
    expect(outcomes.map((o) => o.complete)).toEqual([false, false, false, true]);
    expect(outcomes.at(-1)?.hours).toEqual([hour]);
    // Each tick: the probe, then at most a read and an upsert per page.
    for (const outcome of outcomes) expect(outcome.queries).toBeLessThanOrEqual(1 + 2 * limits.maxPages);
    // No row was read twice: the ticks after the first started at the first row still to fold.
    expect(outcomes.reduce((total, o) => total + o.rows, 0)).toBe(keys.length);
  });

  it("a repeat tick after a complete fold reads no already-folded rows", async () => {
    const tenant = await createTenant();
    const later = hour + 48 * HOUR;
    const keys = Array.from({ length: 10 }, () => newId("key"));
    await addUsage(keys.map((keyId) => ({ tenantId: tenant.id, keyId, start: later, valid: 100 })));
    const at = later + FOLD_LAG_HOURS * HOUR + 20 * MINUTE;
    let outcome = await foldClosedHours(env, at, limits);
    while (!outcome.complete) outcome = await foldClosedHours(env, at, limits);
    expect(await slotsFolded(later)).toBe(keys.length);
    // The probe finds the hour done: no page is read, with the test's budget or the production one.
    const again = await foldClosedHours(env, at + 10 * MINUTE, limits);
    expect(again).toMatchObject({ hours: [], folded: 0, rows: 0, queries: 1, complete: true });
    expect(await foldClosedHours(env, at + 10 * MINUTE, FOLD_LIMITS)).toMatchObject({ rows: 0, queries: 1 });
  });
});

describe("the counter rules over more active keys than one tick's snapshot budget", () => {
  const limits = { fold: { page: 4, maxPages: 2 }, counters: { page: 3, maxPages: 2 } };
  const current = MONDAY + 30 * HOUR;
  const previous = current - HOUR;
  const at = (minutes: number) => current + minutes * MINUTE;

  it("evaluates a counter rule for a key beyond the first tick's snapshot budget, on both of its hours; an alert of a key a tick did not read neither resolves nor fires twice", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "usage_threshold", { window: "hour", threshold: 150 });
    // 12 keys; the last one written is over the threshold only with both hours: 100 now + 90 x (5/6) at 10 past.
    const keys = Array.from({ length: 12 }, () => newId("key"));
    const hot = keys.at(-1) as string;
    await addUsage(keys.map((keyId) => ({ tenantId: tenant.id, keyId, start: current, valid: 10 })));
    await addUsage(keys.map((keyId) => ({ tenantId: tenant.id, keyId, start: previous, valid: 10 })));
    await addUsage([
      { tenantId: tenant.id, keyId: hot, start: current, valid: 90 },
      { tenantId: tenant.id, keyId: hot, start: previous, valid: 80 },
    ]);

    // A pass: 12 keys at 6 a tick, then an empty page of each phase. Tick 1 reads the first six keys.
    await runAlertTick(env, at(10), limits);
    expect(await alertsOf(ruleId)).toEqual([]);
    // Tick 2 reads the other six, the hot key with both of its rows.
    await runAlertTick(env, at(11), limits);
    expect(await alertsOf(ruleId)).toEqual([
      { subject_id: hot, state: "firing", fired_at: at(11), last_seen_at: at(11) },
    ]);
    // Tick 3 ends the pass (no key read), tick 4 starts the next with the first six keys: the hot key's alert
    // is outside what they looked at, so it neither resolves nor fires again.
    await runAlertTick(env, at(12), limits);
    await runAlertTick(env, at(13), limits);
    expect(await alertsOf(ruleId)).toEqual([
      { subject_id: hot, state: "firing", fired_at: at(11), last_seen_at: at(11) },
    ]);
    // Tick 5 reads it again: still true, the same alert seen again.
    await runAlertTick(env, at(14), limits);
    expect(await alertsOf(ruleId)).toEqual([
      { subject_id: hot, state: "firing", fired_at: at(11), last_seen_at: at(14) },
    ]);
  });

  it("resolves the alert of a key gone quiet while a pass spans ticks", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "usage_threshold", { window: "hour", threshold: 50 });
    const keys = Array.from({ length: 12 }, () => newId("key"));
    const start = current + 2 * HOUR;
    await addUsage(keys.map((keyId) => ({ tenantId: tenant.id, keyId, start, valid: 60 })));
    for (let minute = 10; minute < 14; minute++) await runAlertTick(env, start + minute * MINUTE, limits);
    const quiet = keys[0] as string;
    expect((await alertsOf(ruleId)).map((a) => a.subject_id).sort()).toEqual([...keys].sort());
    // Two hours later the quiet key has no usage row in the window; the others still have theirs.
    await addUsage(
      keys
        .filter((key) => key !== quiet)
        .flatMap((keyId) => [
          { tenantId: tenant.id, keyId, start: start + HOUR, valid: 60 },
          { tenantId: tenant.id, keyId, start: start + 2 * HOUR, valid: 60 },
        ]),
    );
    // One tick reads six keys of this pass, none of them the quiet one: it resolves all the same (zero counts).
    await runAlertTick(env, start + 2 * HOUR + 10 * MINUTE, limits);
    const alerts = await alertsOf(ruleId);
    expect(alerts.filter((a) => a.state === "resolved").map((a) => a.subject_id)).toEqual([quiet]);
    expect(alerts.filter((a) => a.state === "firing")).toHaveLength(keys.length - 1);
  });

  it("counts every key in a tenant-wide rule even when a tick reads only some of them", async () => {
    const tenant = await createTenant();
    const ruleId = await addRule(tenant.id, "auth_failure_burst", { threshold: 29 });
    const keys = Array.from({ length: 12 }, () => newId("key"));
    const start = current + 6 * HOUR;
    await addUsage(
      keys.map((keyId, i) => ({ tenantId: tenant.id, keyId, start, authFailed: 2 + (i === 9 ? 5 : 0) })),
    );
    // The first tick reads 6 of the 12 keys; the 29 refusals are all counted, the top key is the tenth.
    await runAlertTick(env, start + 10 * MINUTE, limits);
    const [alert] = await alertsOf(ruleId);
    expect(alert?.state).toBe("firing");
    const row = await env.DB.prepare("SELECT detail FROM alerts WHERE rule_id = ?")
      .bind(ruleId)
      .first<{ detail: string }>();
    expect(JSON.parse(row?.detail ?? "{}")).toMatchObject({
      refused: 29,
      top_key_id: keys[9],
      top_key_refused: 7,
    });
  });
});
