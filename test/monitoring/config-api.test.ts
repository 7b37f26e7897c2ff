import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { TOTP_HEADER } from "../../src/auth/step-up";
import { totpAt } from "../../src/auth/totp";
import { openValues } from "../../src/credentials/sealed-fields";
import { database } from "../../src/db/client";
import { unseal } from "../../src/vault/keyring";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { enrollTotp } from "../helpers/totp";

const SLACK = (n: number) => `https://hooks.slack.com/services/T000${n}/B000${n}/secretpart${n}`;

type ChannelView = {
  id: string;
  name: string;
  kind: string;
  config: Record<string, string>;
  secret_fields: string[];
};
type RuleView = {
  id: string;
  name: string;
  kind: string;
  settings: Record<string, unknown>;
  channel_ids: string[];
  severity: string;
  cooldown_seconds: number;
};

const api = <T = Record<string, unknown>>(
  tenant: TestTenant | string,
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
) =>
  callJson<T>(method, `/api/v1${path}`, {
    key: typeof tenant === "string" ? tenant : tenant.adminKey,
    body,
    ...(headers ? { headers } : {}),
  });

async function createChannel(tenant: TestTenant, body: Record<string, unknown>) {
  const created = await api<{ channel: ChannelView; signing_secret?: string }>(
    tenant,
    "POST",
    "/monitoring/channels",
    body,
  );
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return created.body;
}

async function storedChannel(id: string) {
  return env.DB.prepare(
    "SELECT tenant_id, sealed_secrets, dek_version, health FROM alert_channels WHERE id = ?",
  )
    .bind(id)
    .first<{ tenant_id: string; sealed_secrets: string; dek_version: number; health: string }>();
}

async function openStored(id: string) {
  const row = await storedChannel(id);
  const db = database(env.DB);
  return openValues(
    await unseal(env, db),
    db,
    { tenantId: row?.tenant_id as string, recordId: id },
    JSON.parse(row?.sealed_secrets ?? "{}"),
  );
}

async function auditOf(tenant: TestTenant, action: string) {
  const rows = await env.DB.prepare(
    "SELECT target_id, detail FROM audit_log WHERE tenant_id = ? AND action = ? ORDER BY seq",
  )
    .bind(tenant.id, action)
    .all<{ target_id: string; detail: string }>();
  return rows.results;
}

describe("alert channels after the wizard", () => {
  it("creates a webhook channel, shows its signing secret once, and never returns a secret again", async () => {
    const tenant = await createTenant("channel create");
    const created = await createChannel(tenant, {
      kind: "webhook",
      name: "Pager",
      url: "https://hooks.example.com/kw",
    });
    expect(created.signing_secret).toMatch(/^whsec_/);
    expect(created.channel).toMatchObject({
      kind: "webhook",
      config: { url: "https://hooks.example.com/kw" },
    });
    expect(created.channel.secret_fields).toEqual(["signing_secret"]);

    const read = await api(tenant, "GET", `/monitoring/channels/${created.channel.id}`);
    const listed = await api(tenant, "GET", "/monitoring/channels");
    for (const body of [read.body, listed.body])
      expect(JSON.stringify(body)).not.toContain(created.signing_secret);
    const row = await storedChannel(created.channel.id);
    expect(row?.sealed_secrets).not.toContain(created.signing_secret);
    expect((await openStored(created.channel.id)).signing_secret).toBe(created.signing_secret);
    expect(await auditOf(tenant, "channel.create")).toHaveLength(1);
  });

  it("seals a channel's secrets again on every update, keeps the signing secret unless rotated, and audits field names only", async () => {
    const tenant = await createTenant("channel update");
    const { channel } = await createChannel(tenant, { kind: "slack", name: "Team", webhook_url: SLACK(1) });
    const before = await storedChannel(channel.id);

    const renamed = await api<{ channel: ChannelView }>(
      tenant,
      "PATCH",
      `/monitoring/channels/${channel.id}`,
      {
        name: "Team alerts",
      },
    );
    expect(renamed.status).toBe(200);
    expect(renamed.body.channel.name).toBe("Team alerts");
    const afterRename = await storedChannel(channel.id);
    // A fresh IV: the blob is new even though the URL is the same.
    expect(afterRename?.sealed_secrets).not.toBe(before?.sealed_secrets);
    expect((await openStored(channel.id)).webhook_url).toBe(SLACK(1));

    const moved = await api(tenant, "PATCH", `/monitoring/channels/${channel.id}`, { webhook_url: SLACK(2) });
    expect(moved.status).toBe(200);
    expect(JSON.stringify(moved.body)).not.toContain("secretpart");
    expect((await openStored(channel.id)).webhook_url).toBe(SLACK(2));
    const updates = await auditOf(tenant, "channel.update");
    expect(updates.map((row) => JSON.parse(row.detail).changed)).toEqual([["name"], ["webhook_url"]]);
    expect(JSON.stringify(updates)).not.toContain("hooks.slack.com");

    const hook = await createChannel(tenant, {
      kind: "webhook",
      name: "Hook",
      url: "https://hooks.example.com/a",
    });
    const kept = await api<{ signing_secret?: string }>(
      tenant,
      "PATCH",
      `/monitoring/channels/${hook.channel.id}`,
      {
        url: "https://hooks.example.com/b",
      },
    );
    expect(kept.body.signing_secret).toBeUndefined();
    expect((await openStored(hook.channel.id)).signing_secret).toBe(hook.signing_secret);
    const rotated = await api<{ signing_secret?: string }>(
      tenant,
      "PATCH",
      `/monitoring/channels/${hook.channel.id}`,
      {
        rotate_signing_secret: true,
      },
    );
    expect(rotated.body.signing_secret).toMatch(/^whsec_/);
    expect(rotated.body.signing_secret).not.toBe(hook.signing_secret);
    expect((await openStored(hook.channel.id)).signing_secret).toBe(rotated.body.signing_secret);
  });

  it("refuses a second channel of the same name (409), a field of another kind and a webhook to a private address (422)", async () => {
    const tenant = await createTenant("channel refusals");
    const { channel } = await createChannel(tenant, { kind: "email", name: "Ops", to: "ops@example.com" });
    const duplicate = await api(tenant, "POST", "/monitoring/channels", {
      kind: "email",
      name: "Ops",
      to: "x@example.com",
    });
    expect(duplicate.status).toBe(409);
    const foreignField = await api(tenant, "PATCH", `/monitoring/channels/${channel.id}`, {
      url: "https://a.example",
    });
    expect(foreignField.status).toBe(422);
    for (const url of [
      "https://127.0.0.1/x",
      "https://169.254.169.254/latest",
      "http://hooks.example.com/x",
    ]) {
      const refused = await api(tenant, "POST", "/monitoring/channels", { kind: "webhook", name: url, url });
      expect(refused.status, url).toBe(422);
    }
    const sendgrid = await api<{ errors: { path: string }[] }>(tenant, "POST", "/monitoring/channels", {
      kind: "email",
      name: "Via SendGrid",
      to: "ops@example.com",
      via: "sendgrid",
      credential_id: "cred_missing",
    });
    expect(sendgrid.status).toBe(422);
    expect(sendgrid.body.errors.map((e) => e.path)).toEqual(["credential_id"]);
    const senderWithoutSendgrid = await api<{ errors: { path: string }[] }>(
      tenant,
      "POST",
      "/monitoring/channels",
      {
        kind: "email",
        name: "Binding with a sender",
        to: "ops@example.com",
        from: "alerts@example.com",
      },
    );
    expect(senderWithoutSendgrid.status).toBe(422);
    expect(senderWithoutSendgrid.body.errors.map((e) => e.path)).toEqual(["from"]);
    const count = await env.DB.prepare("SELECT count(*) AS n FROM alert_channels WHERE tenant_id = ?")
      .bind(tenant.id)
      .first<{ n: number }>();
    expect(count?.n).toBe(1);
  });

  it("takes a deleted channel out of every rule in the same batch, and closes its waiting notifications", async () => {
    const tenant = await createTenant("channel delete");
    const a = await createChannel(tenant, { kind: "email", name: "A", to: "a@example.com" });
    const b = await createChannel(tenant, { kind: "email", name: "B", to: "b@example.com" });
    const rule = await api<RuleView>(tenant, "POST", "/monitoring/rules", {
      name: "expiry",
      kind: "expiry_warning",
      channel_ids: [a.channel.id, b.channel.id],
    });
    expect(rule.status).toBe(201);
    await env.DB.prepare(
      "INSERT INTO alert_deliveries (id, tenant_id, alert_id, channel_id, transition, state, created_at, updated_at) VALUES ('dlv_wait', ?, 'alert_x', ?, 'fired', 'pending', 1, 1)",
    )
      .bind(tenant.id, a.channel.id)
      .run();

    const deleted = await api(tenant, "DELETE", `/monitoring/channels/${a.channel.id}`);
    expect(deleted.status).toBe(204);
    const after = await api<RuleView>(tenant, "GET", `/monitoring/rules/${rule.body.id}`);
    expect(after.body.channel_ids).toEqual([b.channel.id]);
    expect((await api(tenant, "GET", `/monitoring/channels/${a.channel.id}`)).status).toBe(404);
    const delivery = await env.DB.prepare(
      "SELECT state, last_error FROM alert_deliveries WHERE id = 'dlv_wait'",
    ).first();
    expect(delivery).toEqual({ state: "dead", last_error: "channel_deleted" });
    expect((await auditOf(tenant, "channel.delete")).map((row) => row.target_id)).toEqual([a.channel.id]);
  });

  it("answers 404 for another tenant's channel and rule on every route, and refuses a rule naming its channel (threat model case 1)", async () => {
    const owner = await createTenant("channel owner");
    const other = await createTenant("channel intruder");
    const { channel } = await createChannel(owner, { kind: "slack", name: "Owner", webhook_url: SLACK(3) });
    const rule = await api<RuleView>(owner, "POST", "/monitoring/rules", {
      name: "r",
      kind: "retest_failing",
    });
    const attempts: [string, string, unknown?][] = [
      ["GET", `/monitoring/channels/${channel.id}`],
      ["PATCH", `/monitoring/channels/${channel.id}`, { name: "mine" }],
      ["DELETE", `/monitoring/channels/${channel.id}`],
      ["POST", `/monitoring/channels/${channel.id}/test`],
      ["GET", `/monitoring/rules/${rule.body.id}`],
      ["PATCH", `/monitoring/rules/${rule.body.id}`, { enabled: false }],
      ["DELETE", `/monitoring/rules/${rule.body.id}`],
    ];
    for (const [method, path, body] of attempts) {
      const response = await api(other, method, path, body);
      expect(response.status, `${method} ${path}`).toBe(404);
    }
    const borrowing = await api(other, "POST", "/monitoring/rules", {
      name: "borrow",
      kind: "retest_failing",
      channel_ids: [channel.id],
    });
    expect(borrowing.status).toBe(422);
    expect((await api(owner, "GET", `/monitoring/channels/${channel.id}`)).body).toMatchObject({
      name: "Owner",
    });
    expect((await api<RuleView>(owner, "GET", `/monitoring/rules/${rule.body.id}`)).body.channel_ids).toEqual(
      [],
    );
  });

  it("refuses a read-only key every monitoring write with 403, changing nothing (threat model case 13)", async () => {
    const tenant = await createTenant("monitoring read only");
    const { channel } = await createChannel(tenant, { kind: "email", name: "Ops", to: "ops@example.com" });
    const reader = await createKey(tenant, { scopes: ["monitoring:read"] });
    const attempts: [string, string, unknown?][] = [
      ["POST", "/monitoring/channels", { kind: "email", name: "X", to: "x@example.com" }],
      ["PATCH", `/monitoring/channels/${channel.id}`, { name: "Y" }],
      ["DELETE", `/monitoring/channels/${channel.id}`],
      ["POST", "/monitoring/rules", { name: "r", kind: "retest_failing" }],
      [
        "PUT",
        "/security-policy",
        { security_level: "basic", environment: "development", rotation_policy: "none" },
      ],
    ];
    for (const [method, path, body] of attempts) {
      expect((await api(reader.key, method, path, body)).status, `${method} ${path}`).toBe(403);
    }
    expect(
      (await api<{ items: ChannelView[] }>(reader.key, "GET", "/monitoring/channels")).body.items,
    ).toHaveLength(1);
  });
});

describe("alert rules after the wizard", () => {
  it("stores a rule with its kind's defaults applied and names each invalid setting", async () => {
    const tenant = await createTenant("rule create");
    const created = await api<RuleView>(tenant, "POST", "/monitoring/rules", {
      name: "Volume spikes",
      kind: "anomaly_volume",
      settings: { z_threshold: 5 },
      severity: "critical",
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      kind: "anomaly_volume",
      settings: { z_threshold: 5, min_count: 50 },
      severity: "critical",
      cooldown_seconds: 3600,
      enabled: true,
    });
    const invalid = await api<{ errors: { path: string }[] }>(tenant, "POST", "/monitoring/rules", {
      name: "Bad",
      kind: "usage_threshold",
      settings: { threshold: 10, percent_of_limit: 50 },
    });
    expect(invalid.status).toBe(422);
    expect(invalid.body.errors[0]?.path).toMatch(/^settings/);
    const negative = await api<{ errors: { path: string }[] }>(tenant, "POST", "/monitoring/rules", {
      name: "Bad rate",
      kind: "failure_rate",
      settings: { threshold_percent: -1 },
    });
    expect(negative.body.errors.map((e) => e.path)).toEqual(["settings.threshold_percent"]);
    const unknownService = await api(tenant, "POST", "/monitoring/rules", {
      name: "Nowhere",
      kind: "failure_rate",
      service_id: "not-a-service",
      settings: { threshold_percent: 5 },
    });
    expect(unknownService.status).toBe(422);
    const duplicate = await api(tenant, "POST", "/monitoring/rules", {
      name: "Volume spikes",
      kind: "new_origin",
    });
    expect(duplicate.status).toBe(409);
  });

  it("changes a rule's settings, channels and switch with PATCH, keeps its kind fixed, and audits each change", async () => {
    const tenant = await createTenant("rule update");
    const { channel } = await createChannel(tenant, { kind: "email", name: "Ops", to: "ops@example.com" });
    const rule = await api<RuleView>(tenant, "POST", "/monitoring/rules", {
      name: "Expiry",
      kind: "expiry_warning",
    });
    expect(rule.body.settings).toEqual({ days_before: [30, 7, 1], subjects: ["key", "credential"] });
    const repeated = await api(tenant, "PATCH", `/monitoring/rules/${rule.body.id}`, {
      settings: { days_before: [7, 7] },
    });
    expect(repeated.status).toBe(422);
    const patched = await api<RuleView>(tenant, "PATCH", `/monitoring/rules/${rule.body.id}`, {
      settings: { days_before: [14] },
      channel_ids: [channel.id],
      enabled: false,
      cooldown_seconds: 600,
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      settings: { days_before: [14], subjects: ["key", "credential"] },
      channel_ids: [channel.id],
      enabled: false,
      cooldown_seconds: 600,
    });
    expect(
      (await api(tenant, "PATCH", `/monitoring/rules/${rule.body.id}`, { kind: "rotation" })).status,
    ).toBe(422);
    const deleted = await api(tenant, "DELETE", `/monitoring/rules/${rule.body.id}`);
    expect(deleted.status).toBe(204);
    expect((await auditOf(tenant, "rule.create")).length).toBe(1);
    expect((await auditOf(tenant, "rule.update")).length).toBe(1);
    expect((await auditOf(tenant, "rule.delete")).length).toBe(1);
  });
});

const BASIC = { security_level: "basic", environment: "development", rotation_policy: "90_days" };

describe("the security policy after the wizard", () => {
  it("is replaced with PUT and changed with PATCH by an admin, each audited, keeping unnamed settings", async () => {
    const tenant = await createTenant("policy write");
    expect((await api(tenant, "GET", "/security-policy")).status).toBe(404);
    expect((await api(tenant, "PATCH", "/security-policy", { require_2fa: true })).status).toBe(404);
    const put = await api(tenant, "PUT", "/security-policy", { ...BASIC, compliance: ["gdpr"] });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({
      security_level: "basic",
      rotation_days: 90,
      wizard_id: "",
      compliance: ["gdpr"],
    });
    const patched = await api(tenant, "PATCH", "/security-policy", {
      security_level: "enhanced",
      rotation_policy: "custom",
      custom_rotation_days: 30,
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      security_level: "enhanced",
      rotation_policy: "custom",
      rotation_days: 30,
      environment: "development",
      compliance: ["gdpr"],
    });
    const audited = await auditOf(tenant, "policy.update");
    expect(audited.map((row) => JSON.parse(row.detail).changed)).toEqual([
      [],
      ["security_level", "rotation_policy", "rotation_days"],
    ]);
  });

  it("refuses settings below the level (422), an allowlist that excludes the caller (409) and a key without the admin scope (403), writing nothing", async () => {
    const tenant = await createTenant("policy refusals");
    const enterpriseWithout2fa = await api<{ errors: { path: string }[] }>(
      tenant,
      "PUT",
      "/security-policy",
      {
        ...BASIC,
        security_level: "enterprise",
      },
    );
    expect(enterpriseWithout2fa.status).toBe(422);
    expect(enterpriseWithout2fa.body.errors.map((e) => e.path).sort()).toEqual([
      "ip_allowlist",
      "require_2fa",
    ]);
    const lockout = await api(tenant, "PUT", "/security-policy", {
      ...BASIC,
      ip_allowlist: ["198.51.100.0/24"],
    });
    expect(lockout.status).toBe(409);
    const writer = await createKey(tenant, { scopes: ["monitoring:read", "monitoring:write"] });
    expect((await api(writer.key, "PUT", "/security-policy", BASIC)).status).toBe(403);
    expect((await api(tenant, "GET", "/security-policy")).status).toBe(404);
  });

  it("needs a current 2FA code from an admin key that enrolled 2FA (step-up, threat model case 26)", async () => {
    const tenant = await createTenant("policy step-up");
    const { secret, step } = await enrollTotp(tenant.adminKey);
    expect((await api(tenant, "PUT", "/security-policy", BASIC)).status).toBe(401);
    const code = await totpAt(secret, step + 1);
    const allowed = await api(tenant, "PUT", "/security-policy", BASIC, { [TOTP_HEADER]: code });
    expect(allowed.status).toBe(200);
  });
});
