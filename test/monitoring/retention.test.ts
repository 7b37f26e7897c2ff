import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  HOURLY_RETENTION_DAYS,
  pruneAuditLogs,
  purgeUsage,
  RETENTION_BUDGET,
} from "../../src/monitoring/retention";
import { SECURITY_LEVELS } from "../../src/wizard/security-levels";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";

const DAY = 86_400_000;
/** A fixed clock for the usage rows, far from the wall clock. */
const NOW = Date.UTC(2031, 5, 15, 12);

async function setLevel(tenantId: string, level: "basic" | "enhanced" | "enterprise") {
  await env.DB.prepare(
    `INSERT INTO security_policies (tenant_id, security_level, environment, rotation_policy, rotation_days, ip_allowlist,
       country_allowlist, require_2fa, compliance, wizard_id, updated_at)
     VALUES (?, ?, 'production', '90_days', 90, '[]', '[]', 0, '[]', 'test', 0)`,
  )
    .bind(tenantId, level)
    .run();
}

async function putUsage(tenantId: string, bucket: "hour" | "day", start: number) {
  await env.DB.prepare(
    "INSERT INTO usage_counts (tenant_id, key_id, bucket, start, valid) VALUES (?, 'k', ?, ?, 1)",
  )
    .bind(tenantId, bucket, start)
    .run();
}

async function starts(tenantId: string, bucket: "hour" | "day") {
  const { results } = await env.DB.prepare(
    "SELECT start FROM usage_counts WHERE tenant_id = ? AND bucket = ? ORDER BY start",
  )
    .bind(tenantId, bucket)
    .all<{ start: number }>();
  return results.map((r) => r.start);
}

interface AuditRow {
  seq: number;
  at: number;
  action: string;
  actor_type: string;
  hash: string;
  prev_hash: string;
  detail: string;
}

async function auditRows(tenant: TestTenant) {
  const { results } = await env.DB.prepare("SELECT * FROM audit_log WHERE tenant_id = ? ORDER BY seq")
    .bind(tenant.id)
    .all<AuditRow>();
  return results;
}

async function chainVerdict(tenant: TestTenant) {
  const { status, body } = await callJson<Record<string, unknown>>("GET", "/api/v1/audit/verify", {
    key: tenant.adminKey,
  });
  expect(status).toBe(200);
  return body;
}

/** A tenant with 6 audit rows (2 from its creation, 4 keys). */
async function auditedTenant(name: string) {
  const tenant = await createTenant(name);
  for (let i = 0; i < 4; i++) await createKey(tenant, { name: `k${i}` });
  return tenant;
}

const horizonOf = (tenant: TestTenant) =>
  env.DB.prepare("SELECT first_seq, prev_hash FROM audit_horizons WHERE tenant_id = ?")
    .bind(tenant.id)
    .first<{ first_seq: number; prev_hash: string }>();

describe("usage retention", () => {
  it("drops hourly rows after 35 days and daily rows after the level's usage_retention_days (basic without a policy)", async () => {
    const ids = { none: "ret-none", enhanced: "ret-enhanced", enterprise: "ret-enterprise" };
    for (const id of Object.values(ids)) {
      await env.DB.prepare("INSERT INTO tenants (id, name, key_prefix, created_at) VALUES (?, ?, 'kw', 0)")
        .bind(id, id)
        .run();
    }
    await setLevel(ids.enhanced, "enhanced");
    await setLevel(ids.enterprise, "enterprise");
    const hourKept = NOW - (HOURLY_RETENTION_DAYS - 1) * DAY;
    await putUsage(ids.none, "hour", NOW - (HOURLY_RETENTION_DAYS + 1) * DAY);
    await putUsage(ids.none, "hour", hourKept);
    const dayKept: Record<string, number> = {};
    for (const [level, id] of [
      ["basic", ids.none],
      ["enhanced", ids.enhanced],
      ["enterprise", ids.enterprise],
    ] as const) {
      const days = SECURITY_LEVELS[level].usage_retention_days;
      dayKept[id] = NOW - (days - 1) * DAY;
      await putUsage(id, "day", NOW - (days + 1) * DAY);
      await putUsage(id, "day", dayKept[id] as number);
    }

    await purgeUsage(env, NOW);

    expect(await starts(ids.none, "hour")).toEqual([hourKept]);
    for (const id of Object.values(ids)) expect(await starts(id, "day")).toEqual([dayKept[id]]);
    // The levels differ, so each tenant kept what another level would have dropped.
    expect(SECURITY_LEVELS.basic.usage_retention_days).toBeLessThan(
      SECURITY_LEVELS.enterprise.usage_retention_days,
    );
  });

  it("deletes at most chunk x rounds rows a tick and finishes the backlog on later ticks", async () => {
    // Hours of 1970: older than anything else in this database, and past retention at a clock in 1970.
    for (let hour = 0; hour < 25; hour++) await putUsage("ret-backlog", "hour", hour * 3_600_000);
    const clock = (HOURLY_RETENTION_DAYS + 5) * DAY;
    const budget = { ...RETENTION_BUDGET, usageChunk: 10, usageRounds: 2 };
    expect(await purgeUsage(env, clock, budget)).toBe(20);
    expect(await starts("ret-backlog", "hour")).toHaveLength(5);
    expect(await purgeUsage(env, clock, budget)).toBe(5);
    expect(await starts("ret-backlog", "hour")).toEqual([]);
  });
});

describe("audit retention (threat model case 19)", () => {
  it("moves the horizon past rows older than the level's audit retention and deletes them in one audited batch; the chain verifies from the horizon", async () => {
    const tenant = await auditedTenant("retention partial");
    const before = await auditRows(tenant);
    // The first row written later than row 1: everything before it is past retention at this clock.
    const k = before.findIndex((row) => row.at > (before[0] as AuditRow).at);
    expect(k).toBeGreaterThan(0);
    const clock = (before[k] as AuditRow).at + SECURITY_LEVELS.basic.audit_retention_days * DAY;

    expect(await pruneAuditLogs(env, clock)).toBeGreaterThanOrEqual(k);

    const after = await auditRows(tenant);
    expect(after.map((row) => row.seq)).toEqual([
      ...before.slice(k).map((row) => row.seq),
      before.length + 1,
    ]);
    const retention = after.at(-1) as AuditRow;
    expect(retention).toMatchObject({ action: "audit.retention", actor_type: "system" });
    expect(JSON.parse(retention.detail)).toEqual({
      first_seq: k + 1,
      prev_hash: before[k - 1]?.hash,
      deleted: k,
      retention_days: 90,
    });
    expect(await horizonOf(tenant)).toEqual({ first_seq: k + 1, prev_hash: before[k - 1]?.hash });
    expect(await chainVerdict(tenant)).toEqual({
      ok: true,
      rows: before.length - k + 1,
      horizon: { first_seq: k + 1, moved_at: new Date(clock).toISOString() },
    });
  });

  it("prunes every row of a quiet tenant, and later writes chain on from the horizon", async () => {
    const tenant = await auditedTenant("retention quiet");
    await pruneAuditLogs(env, Date.now() + 91 * DAY);
    expect((await auditRows(tenant)).map((row) => row.seq)).toEqual([7]);
    expect(await horizonOf(tenant)).toMatchObject({ first_seq: 7 });
    await createKey(tenant, { name: "after retention" });
    expect(await chainVerdict(tenant)).toMatchObject({ ok: true, rows: 2, horizon: { first_seq: 7 } });
  });

  it("keeps the audit rows of an enterprise tenant that a basic tenant loses at the same clock", async () => {
    const basic = await auditedTenant("retention basic");
    const enterprise = await auditedTenant("retention enterprise");
    await setLevel(enterprise.id, "enterprise");
    const kept = await auditRows(enterprise);
    await pruneAuditLogs(env, Date.now() + 100 * DAY);
    expect(await auditRows(enterprise)).toEqual(kept);
    expect(await horizonOf(enterprise)).toBeNull();
    expect((await auditRows(basic)).map((row) => row.action)).toEqual(["audit.retention"]);
  });

  it("refuses deleting rows at or above the horizon, moving it back, or deleting it (database triggers)", async () => {
    const tenant = await auditedTenant("retention triggers");
    await pruneAuditLogs(env, Date.now() + 91 * DAY);
    const horizon = (await horizonOf(tenant)) as { first_seq: number };
    await expect(
      env.DB.prepare("DELETE FROM audit_log WHERE tenant_id = ? AND seq = ?")
        .bind(tenant.id, horizon.first_seq)
        .run(),
    ).rejects.toThrow(/append-only above the retention horizon/);
    await expect(
      env.DB.prepare("UPDATE audit_horizons SET first_seq = 1 WHERE tenant_id = ?").bind(tenant.id).run(),
    ).rejects.toThrow(/only moves forward/);
    await expect(
      env.DB.prepare("DELETE FROM audit_horizons WHERE tenant_id = ?").bind(tenant.id).run(),
    ).rejects.toThrow(/only moves forward/);
    expect(await chainVerdict(tenant)).toMatchObject({ ok: true });
  });
});

describe("audit retention against someone with database write access (threat model case 28)", () => {
  it("still names a row edited above the horizon after pruning", async () => {
    const tenant = await auditedTenant("retention tamper above");
    await pruneAuditLogs(env, Date.now() + 91 * DAY);
    await createKey(tenant, { name: "after retention" });
    await env.DB.prepare("DROP TRIGGER IF EXISTS audit_log_no_update").run();
    await env.DB.prepare("UPDATE audit_log SET action = 'key.read' WHERE tenant_id = ? AND seq = 8")
      .bind(tenant.id)
      .run();
    expect(await chainVerdict(tenant)).toMatchObject({
      ok: false,
      broken_at_seq: 8,
      reason: "row content altered",
    });
  });

  it("refuses a horizon no retention row attests: moving it up to delete history is reported", async () => {
    const tenant = await auditedTenant("retention forged horizon");
    const rows = await auditRows(tenant);
    // The writer copies a real link, so the first retained row chains from the forged horizon.
    await env.DB.prepare(
      "INSERT INTO audit_horizons (tenant_id, first_seq, prev_hash, moved_at) VALUES (?, 4, ?, 0)",
    )
      .bind(tenant.id, rows[2]?.hash)
      .run();
    await env.DB.prepare("DELETE FROM audit_log WHERE tenant_id = ? AND seq < 4").bind(tenant.id).run();
    expect(await chainVerdict(tenant)).toMatchObject({
      ok: false,
      broken_at_seq: 4,
      reason: "retention horizon not attested by the chain",
    });
  });

  it("refuses a real horizon moved further forward than its retention row says", async () => {
    const tenant = await auditedTenant("retention moved horizon");
    await pruneAuditLogs(env, Date.now() + 91 * DAY);
    for (let i = 0; i < 3; i++) await createKey(tenant, { name: `later ${i}` });
    const rows = await auditRows(tenant);
    await env.DB.prepare("UPDATE audit_horizons SET first_seq = 9, prev_hash = ? WHERE tenant_id = ?")
      .bind(rows.find((row) => row.seq === 8)?.hash, tenant.id)
      .run();
    await env.DB.prepare("DELETE FROM audit_log WHERE tenant_id = ? AND seq < 9").bind(tenant.id).run();
    expect(await chainVerdict(tenant)).toMatchObject({
      ok: false,
      broken_at_seq: 9,
      reason: "retention horizon not attested by the chain",
    });
  });

  it("stops pruning in front of a tampered row: retention never erases the evidence", async () => {
    const tenant = await auditedTenant("retention tamper below");
    await env.DB.prepare("DROP TRIGGER IF EXISTS audit_log_no_update").run();
    await env.DB.prepare("UPDATE audit_log SET action = 'key.read' WHERE tenant_id = ? AND seq = 3")
      .bind(tenant.id)
      .run();
    await pruneAuditLogs(env, Date.now() + 91 * DAY);
    expect((await auditRows(tenant)).map((row) => row.seq)).toEqual([3, 4, 5, 6, 7]);
    expect(await horizonOf(tenant)).toMatchObject({ first_seq: 3 });
    expect(await chainVerdict(tenant)).toMatchObject({
      ok: false,
      broken_at_seq: 3,
      reason: "row content altered",
    });
  });
});
