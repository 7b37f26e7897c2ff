import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";

const HOUR = 3_600_000;
/** Monday 2030-01-07 00:00 UTC: far from the clock, so nothing the recorder writes now lands in range. */
const T0 = Date.UTC(2030, 0, 7);
const iso = (ms: number) => new Date(ms).toISOString();

interface Counts {
  valid?: number;
  not_found?: number;
  expired?: number;
  rate_limited?: number;
  auth_failed?: number;
}

async function put(
  tenantId: string,
  keyId: string,
  serviceId: string | null,
  bucket: "hour" | "day",
  start: number,
  counts: Counts,
) {
  const failures = (counts.not_found ?? 0) + (counts.expired ?? 0) + (counts.rate_limited ?? 0);
  await env.DB.prepare(
    `INSERT INTO usage_counts (tenant_id, key_id, service_id, bucket, start, valid, invalid, not_found, expired, rate_limited, auth_failed)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  )
    .bind(
      tenantId,
      keyId,
      serviceId,
      bucket,
      start,
      counts.valid ?? 0,
      failures,
      counts.not_found ?? 0,
      counts.expired ?? 0,
      counts.rate_limited ?? 0,
      counts.auth_failed ?? 0,
    )
    .run();
}

interface Report {
  groups: {
    key_id?: string | null;
    service_id?: string | null;
    totals: Record<string, number>;
    series: ({ start: string } & Record<string, number>)[];
  }[];
  from: string;
  to: string;
}

const report = (tenant: TestTenant, query: string) =>
  callJson<Report>("GET", `/api/v1/usage?${query}`, { key: tenant.adminKey });

describe("GET /api/v1/usage", () => {
  let tenant: TestTenant;
  let busy: string;
  let failing: string;
  let quiet: string;

  beforeAll(async () => {
    tenant = await createTenant("usage reports");
    [busy, failing, quiet] = (
      await Promise.all([createKey(tenant), createKey(tenant), createKey(tenant)])
    ).map((k) => k.id) as [string, string, string];
    await put(tenant.id, busy, "billing", "hour", T0, { valid: 40, expired: 1 });
    await put(tenant.id, busy, "billing", "hour", T0 + 2 * HOUR, { valid: 60 });
    await put(tenant.id, failing, "billing", "hour", T0 + HOUR, {
      valid: 5,
      rate_limited: 20,
      auth_failed: 3,
    });
    await put(tenant.id, quiet, null, "hour", T0, { valid: 2 });
    await put(tenant.id, "", null, "hour", T0 + HOUR, { not_found: 7 });
    // Outside the range: the hour before and the hour at `to`.
    await put(tenant.id, busy, "billing", "hour", T0 - HOUR, { valid: 1000 });
    await put(tenant.id, busy, "billing", "hour", T0 + 3 * HOUR, { valid: 1000 });
    await put(tenant.id, busy, "billing", "day", T0, { valid: 100, expired: 1 });
    await put(tenant.id, failing, "billing", "day", T0, { valid: 5, rate_limited: 20, auth_failed: 3 });
    // Another tenant's rows, with the same key id and service: never counted here.
    await put("someone-else", busy, "billing", "hour", T0, { valid: 999 });
  });

  const range = `from=${iso(T0)}&to=${iso(T0 + 3 * HOUR)}`;

  it("reports each key's per-code totals and its non-empty hours, oldest first, in [from, to)", async () => {
    const { status, body } = await report(tenant, `granularity=hour&group_by=key&${range}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ from: iso(T0), to: iso(T0 + 3 * HOUR) });
    expect(body.groups.map((g) => g.key_id)).toEqual([busy, failing, null, quiet]);
    const [first, second, anonymous] = body.groups;
    expect(first?.totals).toMatchObject({ requests: 101, valid: 100, invalid: 1, expired: 1, not_found: 0 });
    expect(first?.series.map((p) => [p.start, p.requests])).toEqual([
      [iso(T0), 41],
      [iso(T0 + 2 * HOUR), 60],
    ]);
    expect(second?.totals).toMatchObject({ requests: 25, rate_limited: 20, auth_failed: 3 });
    expect(anonymous?.totals).toMatchObject({ requests: 7, not_found: 7, valid: 0 });
    // Every counter is in the answer, zero or not.
    expect(Object.keys(first?.totals ?? {}).sort()).toEqual(
      [
        "auth_failed",
        "disabled",
        "expired",
        "forbidden",
        "insufficient_scopes",
        "invalid",
        "invalid_format",
        "not_found",
        "rate_limited",
        "requests",
        "usage_exceeded",
        "valid",
      ].sort(),
    );
  });

  it("orders the top N by failures when asked, and cuts the list at N", async () => {
    const byFailures = await report(tenant, `granularity=hour&group_by=key&order_by=failures&top=2&${range}`);
    expect(byFailures.body.groups.map((g) => g.key_id)).toEqual([failing, null]);
    const byRequests = await report(tenant, `granularity=hour&group_by=key&top=1&${range}`);
    expect(byRequests.body.groups.map((g) => g.key_id)).toEqual([busy]);
  });

  it("adds up by service and by tenant", async () => {
    const services = await report(tenant, `granularity=hour&group_by=service&${range}`);
    expect(services.body.groups.map((g) => [g.service_id, g.totals.requests])).toEqual([
      ["billing", 126],
      [null, 9],
    ]);
    const whole = await report(tenant, `granularity=hour&${range}`);
    expect(whole.body.groups).toHaveLength(1);
    expect(whole.body.groups[0]).not.toHaveProperty("key_id");
    expect(whole.body.groups[0]?.totals).toMatchObject({ requests: 135, valid: 107, invalid: 28 });
    expect(whole.body.groups[0]?.series.map((p) => p.requests)).toEqual([43, 32, 60]);
  });

  it("filters by key or service, and reads daily rows for granularity=day", async () => {
    const oneKey = await report(tenant, `granularity=hour&group_by=key&key_id=${failing}&${range}`);
    expect(oneKey.body.groups.map((g) => g.key_id)).toEqual([failing]);
    const oneService = await report(tenant, `granularity=hour&service_id=billing&${range}`);
    expect(oneService.body.groups[0]?.totals.requests).toBe(126);
    const days = await report(
      tenant,
      `granularity=day&group_by=key&from=${iso(T0)}&to=${iso(T0 + 86_400_000)}`,
    );
    expect(days.body.groups.map((g) => [g.key_id, g.totals.requests, g.series.length])).toEqual([
      [busy, 101, 1],
      [failing, 25, 1],
    ]);
  });

  it("accepts Unix seconds as well as RFC 3339, and rounds `from` down to its bucket", async () => {
    const seconds = await report(
      tenant,
      `granularity=hour&group_by=key&from=${(T0 + 30 * 60_000) / 1000}&to=${(T0 + 3 * HOUR) / 1000}`,
    );
    expect(seconds.status).toBe(200);
    expect(seconds.body.from).toBe(iso(T0));
    expect(seconds.body.groups[0]?.totals.requests).toBe(101);
  });

  it("answers 404 for another tenant's key, as for one that never existed (never 403)", async () => {
    const other = await createTenant("usage stranger");
    const theirs = await createKey(other);
    for (const keyId of [theirs.id, "key_does_not_exist"]) {
      const { status, body } = await report(tenant, `group_by=key&key_id=${keyId}`);
      expect(status).toBe(404);
      expect(body).toMatchObject({ code: "NOT_FOUND" });
    }
  });

  it("refuses with 422 a range past its cap, `from` not before `to`, malformed times and an oversized top", async () => {
    for (const query of [
      `granularity=hour&from=${iso(T0)}&to=${iso(T0 + 32 * 86_400_000)}`,
      `granularity=day&from=${iso(T0)}&to=${iso(T0 + 800 * 86_400_000)}`,
      `from=${iso(T0 + HOUR)}&to=${iso(T0)}`,
      "from=yesterday",
      "from=2030-01-07",
      "top=101",
      "group_by=planet",
      "granularity=minute",
    ]) {
      const { status, body } = await report(tenant, query);
      expect({ query, status }).toEqual({ query, status: 422 });
      expect(body).toMatchObject({ code: "VALIDATION_FAILED" });
    }
  });

  it("needs keys:read", async () => {
    const verifier = await createKey(tenant, { scopes: ["keys:verify"] });
    const { status, body } = await callJson("GET", "/api/v1/usage", { key: verifier.key });
    expect(status).toBe(403);
    expect(body).toMatchObject({ code: "FORBIDDEN" });
  });

  it("shows verifications the recorder wrote in the current hour", async () => {
    const fresh = await createTenant("usage live");
    const key = await createKey(fresh);
    await verify(fresh, key.key);
    await verify(fresh, key.key, { scopes: ["nope"] });
    await vi.waitFor(
      async () => {
        const { body } = await report(fresh, `granularity=hour&group_by=key&key_id=${key.id}`);
        expect(body.groups[0]?.totals).toMatchObject({ requests: 2, valid: 1, insufficient_scopes: 1 });
      },
      { timeout: 20_000, interval: 100 },
    );
  });
});
