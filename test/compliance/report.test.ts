import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { TOTP_HEADER } from "../../src/auth/step-up";
import { totpAt } from "../../src/auth/totp";
import { call, callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { enrollTotp } from "../helpers/totp";

type Report = {
  standard: string;
  generated_at: string;
  summary: Record<string, number>;
  controls: { id: string; title: string; status: string; evidence: { source: string; summary: string }[] }[];
};

const DAY = 86_400_000;

async function report(tenant: TestTenant, standard: string) {
  const response = await callJson<Report>("GET", `/api/v1/compliance/report?standard=${standard}`, {
    key: tenant.adminKey,
  });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body;
}

const statuses = (body: Report) => Object.fromEntries(body.controls.map((c) => [c.id, c.status]));

async function sql(query: string, ...params: unknown[]) {
  await env.DB.prepare(query)
    .bind(...params)
    .run();
}

describe("compliance report from live state", () => {
  it("marks every control met for a tenant that meets them: 2FA enrolled and required, an IP fence, young keys, a healthy channel that delivered, an intact audit chain, enterprise retention", async () => {
    const tenant = await createTenant("compliant");
    const { secret, step } = await enrollTotp(tenant.adminKey);
    const policy = await callJson("PUT", "/api/v1/security-policy", {
      key: tenant.adminKey,
      // test/helpers/api.ts sends every request from 100.64.0.0/10.
      body: {
        security_level: "enterprise",
        environment: "production",
        rotation_policy: "90_days",
        ip_allowlist: ["100.64.0.0/10"],
        require_2fa: true,
      },
      headers: { [TOTP_HEADER]: await totpAt(secret, step + 1) },
    });
    expect(policy.status).toBe(200);
    const channel = await callJson<{ channel: { id: string } }>("POST", "/api/v1/monitoring/channels", {
      key: tenant.adminKey,
      body: { kind: "email", name: "Ops", to: "ops@example.com" },
    });
    expect(channel.status).toBe(201);
    const now = Date.now();
    await sql(
      "INSERT INTO alert_deliveries (id, tenant_id, alert_id, channel_id, transition, state, attempts, created_at, updated_at, delivered_at) VALUES (?, ?, 'alert_ok', ?, 'fired', 'delivered', 1, ?, ?, ?)",
      `dlv_${tenant.id}`,
      tenant.id,
      channel.body.channel.id,
      now - DAY,
      now - DAY,
      now - DAY,
    );

    for (const standard of ["soc2", "hipaa", "pci_dss"]) {
      const body = await report(tenant, standard);
      expect(body.standard).toBe(standard);
      expect(
        body.controls.filter((c) => c.status !== "met").map((c) => c.id),
        standard,
      ).toEqual([]);
      expect(body.summary.met).toBe(body.controls.length);
    }
    const soc2 = await report(tenant, "soc2");
    const evidence = (id: string) =>
      soc2.controls.find((c) => c.id === id)?.evidence.map((e) => e.summary) ?? [];
    expect(evidence("CC6.1-mfa")).toContain("1 of 1 active admin key enrolled in 2FA");
    expect(evidence("CC7.2")).toContain("last 30 days: 1 notification delivered, 0 given up");
    expect(evidence("CC8.1").some((line) => /rows? verified/.test(line))).toBe(true);
  });

  it("names each unmet control of a tenant that does not meet them: no policy, then no 2FA, an overdue key, a failed rotation, a failing channel, short retention and a tampered audit row", async () => {
    const tenant = await createTenant("non-compliant");
    const bare = statuses(await report(tenant, "pci_dss"));
    expect(bare).toMatchObject({ "3.7.4": "not_met", "8.4": "not_met", "1.4": "not_met", "10.7": "not_met" });
    expect(bare["3.5-3.6"]).toBe("met");

    const policy = await callJson("PUT", "/api/v1/security-policy", {
      key: tenant.adminKey,
      body: { security_level: "basic", environment: "production", rotation_policy: "90_days" },
    });
    expect(policy.status).toBe(200);
    const old = await createKey(tenant, { name: "old key" });
    await sql("UPDATE api_keys SET created_at = ? WHERE id = ?", Date.now() - 200 * DAY, old.id);
    await sql(
      "INSERT INTO rotation_runs (id, tenant_id, subject_type, subject_id, trigger, state, step, error, started_at, updated_at, finished_at) VALUES (?, ?, 'key', ?, 'schedule', 'failed', 'mint', 'provider_error', ?, ?, ?)",
      `run_${tenant.id}`,
      tenant.id,
      old.id,
      Date.now() - DAY,
      Date.now() - DAY,
      Date.now() - DAY,
    );
    const channel = await callJson<{ channel: { id: string } }>("POST", "/api/v1/monitoring/channels", {
      key: tenant.adminKey,
      body: { kind: "email", name: "Ops", to: "ops@example.com" },
    });
    await sql("UPDATE alert_channels SET health = 'failing' WHERE id = ?", channel.body.channel.id);

    const pci = await report(tenant, "pci_dss");
    expect(statuses(pci)).toEqual({
      "3.5-3.6": "met",
      "3.7.4": "not_met",
      "8.4": "not_met",
      "1.4": "not_met",
      "10.2": "met",
      "10.5.1": "not_met",
      "10.7": "partial",
      "6.5.5": "partial",
    });
    const rotation = pci.controls.find((c) => c.id === "3.7.4")?.evidence.map((e) => e.summary);
    expect(rotation).toContain("1 of 2 active keys older than 90 days");
    expect(rotation).toContain("last 90 days: 0 rotations completed, 1 failed");
    expect(statuses(await report(tenant, "hipaa"))["164.316(b)(2)(i)"]).toBe("not_met");

    // A forged row after the chain's head: the verifier names it, and the audit controls fail.
    const head = await env.DB.prepare("SELECT max(seq) AS seq FROM audit_log WHERE tenant_id = ?")
      .bind(tenant.id)
      .first<{ seq: number }>();
    await sql(
      "INSERT INTO audit_log (tenant_id, seq, at, actor_type, actor_id, action, target_type, target_id, request_id, detail, prev_hash, hash) VALUES (?, ?, ?, 'key', 'forged', 'policy.update', 'tenant', ?, 'req', '{}', 'x', 'y')",
      tenant.id,
      (head?.seq ?? 0) + 1,
      Date.now(),
      tenant.id,
    );
    const tampered = await report(tenant, "soc2");
    expect(statuses(tampered)["CC8.1"]).toBe("not_met");
    expect(tampered.controls.find((c) => c.id === "CC8.1")?.evidence[1]?.summary).toMatch(
      new RegExp(`^broken at seq ${(head?.seq ?? 0) + 1}`),
    );
  });

  it("states GDPR Art. 17 erasure and Art. 20 portability as met for every tenant, naming crypto-shredding and the encrypted export", async () => {
    const tenant = await createTenant("gdpr rights");
    const body = await report(tenant, "gdpr");
    const control = (id: string) => body.controls.find((c) => c.id === id);
    expect(control("art17")?.status).toBe("met");
    expect(
      control("art17")
        ?.evidence.map((e) => e.summary)
        .join(" "),
    ).toContain("crypto-shredding");
    expect(control("art20")?.status).toBe("met");
    expect(
      control("art20")
        ?.evidence.map((e) => e.summary)
        .join(" "),
    ).toContain("POST /api/v1/export");
  });

  it("serves a printable HTML page with every value escaped and no-store, on format=html or Accept: text/html", async () => {
    const tenant = await createTenant('<script>alert("x")</script> & Co');
    for (const [path, headers] of [
      ["/api/v1/compliance/report?standard=gdpr&format=html", {}],
      ["/api/v1/compliance/report?standard=gdpr", { accept: "text/html" }],
    ] as const) {
      const response = await call("GET", path, { key: tenant.adminKey, headers });
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toMatch(/^text\/html/);
      expect(response.headers.get("cache-control")).toBe("no-store");
      const html = await response.text();
      expect(html).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co");
      expect(html).not.toContain("<script");
      expect(html).toContain("Art. 32(1)(a) Encryption of personal data");
    }
  });

  it("refuses an unknown standard (422) and a key without audit:read (403)", async () => {
    const tenant = await createTenant("report refusals");
    const unknown = await callJson("GET", "/api/v1/compliance/report?standard=iso27001", {
      key: tenant.adminKey,
    });
    expect(unknown.status).toBe(422);
    const writer = await createKey(tenant, { scopes: ["monitoring:read"] });
    const refused = await callJson("GET", "/api/v1/compliance/report?standard=soc2", { key: writer.key });
    expect(refused.status).toBe(403);
  });
});
