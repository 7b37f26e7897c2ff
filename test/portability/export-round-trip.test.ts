import { describe, expect, it } from "vitest";
import { randomBase62 } from "../../src/crypto/random";
import { stripeKey } from "../credentials/samples";
import { call, callJson, createKey, createTenant, type TestTenant, verify } from "../helpers/api";
import {
  changeStripe,
  exportWith,
  importInto,
  names,
  PASSPHRASE,
  reveal,
  storeStripe,
  tenantState,
} from "./export-support";

const SLACK = `https://hooks.slack.com/services/T0EXP/B0EXP/${randomBase62(24)}`;

/** A tenant with a three-version credential, a second credential, two channels, a rule and a policy. */
async function populatedTenant(label: string) {
  const tenant = await createTenant(label);
  const secrets = [stripeKey(), stripeKey(), stripeKey()];
  const billing = await storeStripe(tenant, "Billing", secrets[0]);
  let etag = await changeStripe(tenant, billing.id, billing.etag, secrets[1] as string);
  etag = await changeStripe(tenant, billing.id, etag, secrets[2] as string);
  const payouts = await storeStripe(tenant, "Payouts");
  const slack = await callJson("POST", "/api/v1/monitoring/channels", {
    key: tenant.adminKey,
    body: { kind: "slack", name: "Team", webhook_url: SLACK },
  });
  expect(slack.status, JSON.stringify(slack.body)).toBe(201);
  const hook = await callJson<{ signing_secret: string }>("POST", "/api/v1/monitoring/channels", {
    key: tenant.adminKey,
    body: { kind: "webhook", name: "Pager", url: "https://hooks.example.com/kw" },
  });
  expect(hook.status, JSON.stringify(hook.body)).toBe(201);
  const rule = await callJson("POST", "/api/v1/monitoring/rules", {
    key: tenant.adminKey,
    body: {
      kind: "failure_rate",
      name: "Failing verifies",
      settings: { threshold_percent: 25 },
      channel_ids: [
        (slack.body.channel as { id: string }).id,
        (hook.body as unknown as { channel: { id: string } }).channel.id,
      ],
      severity: "critical",
    },
  });
  expect(rule.status, JSON.stringify(rule.body)).toBe(201);
  const policy = await callJson("PUT", "/api/v1/security-policy", {
    key: tenant.adminKey,
    body: { security_level: "basic", environment: "development", rotation_policy: "90_days" },
  });
  expect(policy.status, JSON.stringify(policy.body)).toBe(200);
  return { tenant, billing, payouts, secrets, signingSecret: hook.body.signing_secret };
}

async function credentialNamed(tenant: TestTenant, name: string) {
  const list = await callJson<{ items: { id: string; name: string }[] }>("GET", "/api/v1/credentials", {
    key: tenant.adminKey,
  });
  const found = list.body.items.find((item) => item.name === name);
  expect(found, name).toBeDefined();
  const detail = await callJson<{ versions: { version: number; stage: string | null }[] }>(
    "GET",
    `/api/v1/credentials/${found?.id}`,
    { key: tenant.adminKey },
  );
  return { id: found?.id as string, versions: detail.body.versions };
}

describe("export then import into another tenant", () => {
  it("brings every credential version back byte-identical with its stage label, plus channels, rules and policy", async () => {
    const source = await populatedTenant("export source");
    const target = await createTenant("import target");
    const jwe = await exportWith(source.tenant);

    const imported = await importInto(target, { jwe, passphrase: PASSPHRASE });
    expect(imported.status, JSON.stringify(imported.body)).toBe(200);
    expect(imported.body.dry_run).toBe(false);
    expect(names(imported.body.plan.credentials.create)).toEqual(["Billing", "Payouts"]);
    expect(names(imported.body.plan.channels.create)).toEqual(["Pager", "Team"]);
    expect(names(imported.body.plan.rules.create)).toEqual(["Failing verifies"]);
    expect(imported.body.plan.policy.create).toHaveLength(1);

    const billing = await credentialNamed(target, "Billing");
    expect(billing.id).not.toBe(source.billing.id);
    expect(billing.versions.map((v) => [v.version, v.stage])).toEqual([
      [3, "current"],
      [2, "previous"],
      [1, null],
    ]);
    for (const [index, secret] of source.secrets.entries()) {
      expect((await reveal(target, billing.id, index + 1)).secret_key).toBe(secret);
    }
    const payouts = await credentialNamed(target, "Payouts");
    expect((await reveal(target, payouts.id)).secret_key).toBe(
      (await reveal(source.tenant, source.payouts.id)).secret_key,
    );

    const channels = await callJson<{ items: { id: string; name: string; kind: string }[] }>(
      "GET",
      "/api/v1/monitoring/channels",
      { key: target.adminKey },
    );
    const rules = await callJson<{
      items: { name: string; channel_ids: string[]; severity: string; settings: Record<string, unknown> }[];
    }>("GET", "/api/v1/monitoring/rules", { key: target.adminKey });
    expect(rules.body.items).toHaveLength(1);
    // The rule names the importing tenant's own channels, not the source's ids.
    expect([...(rules.body.items[0]?.channel_ids ?? [])].sort()).toEqual(
      channels.body.items.map((c) => c.id).sort(),
    );
    expect(rules.body.items[0]).toMatchObject({ severity: "critical", settings: { threshold_percent: 25 } });
    const policy = await callJson("GET", "/api/v1/security-policy", { key: target.adminKey });
    expect(policy.body).toMatchObject({ security_level: "basic", rotation_policy: "90_days" });
  });

  it("a dry run lists the plan and writes nothing, not even an audit row", async () => {
    const source = await populatedTenant("dry-run source");
    const target = await createTenant("dry-run target");
    const jwe = await exportWith(source.tenant);
    const before = await tenantState(target.id, true);
    const planned = await importInto(target, { jwe, passphrase: PASSPHRASE, dry_run: true });
    expect(planned.status).toBe(200);
    expect(planned.body.dry_run).toBe(true);
    expect(names(planned.body.plan.credentials.create)).toEqual(["Billing", "Payouts"]);
    expect(await tenantState(target.id, true)).toBe(before);
    // The plan names things and never carries a value.
    expect(JSON.stringify(planned.body)).not.toContain(source.secrets[2]);
    expect(JSON.stringify(planned.body)).not.toContain(SLACK);
  });

  it("importing the same export a second time changes nothing", async () => {
    const source = await populatedTenant("idempotent source");
    const target = await createTenant("idempotent target");
    const jwe = await exportWith(source.tenant);
    expect((await importInto(target, { jwe, passphrase: PASSPHRASE })).status).toBe(200);
    const after = await tenantState(target.id);
    const again = await importInto(target, { jwe, passphrase: PASSPHRASE });
    expect(again.status).toBe(200);
    for (const kind of ["credentials", "channels", "rules", "policy"] as const) {
      expect(again.body.plan[kind].create, kind).toEqual([]);
      expect(again.body.plan[kind].update, kind).toEqual([]);
      expect(again.body.plan[kind].conflicts, kind).toEqual([]);
    }
    expect(await tenantState(target.id)).toBe(after);
  });

  it("updates a credential whose value differs as a new current version, keeping the old one as previous", async () => {
    const source = await createTenant("update source");
    const target = await createTenant("update target");
    const shared = stripeKey();
    await storeStripe(source, "Shop", shared);
    const theirs = await storeStripe(target, "Shop");
    const imported = await importInto(target, { jwe: await exportWith(source), passphrase: PASSPHRASE });
    expect(imported.body.plan.credentials.update.map((e) => e.name)).toEqual(["Shop"]);
    expect((await reveal(target, theirs.id)).secret_key).toBe(shared);
    expect((await reveal(target, theirs.id, 1)).secret_key).toBe(theirs.secret);
  });

  it("an imported key keeps verifying, now in the importing tenant, once it is gone from its source", async () => {
    const source = await createTenant("key source");
    const target = await createTenant("key target");
    const key = await createKey(source, { name: "checkout", scopes: ["orders:read"] });
    const jwe = await exportWith(source);
    expect((await call("DELETE", `/api/v1/keys/${key.id}`, { key: source.adminKey })).status).toBe(204);
    expect((await verify(target, key.key)).valid).toBe(false);

    const imported = await importInto(target, { jwe, passphrase: PASSPHRASE });
    expect(names(imported.body.plan.keys.create)).toContain("checkout");
    const verdict = await verify(target, key.key, { scopes: ["orders:read"] });
    expect(verdict.valid).toBe(true);
    expect(verdict.code).toBe("VALID");
    // The importing tenant's own row: a new id, the same hash.
    expect(verdict.key_id).toMatch(/^key_/);
    expect(verdict.key_id).not.toBe(key.id);
    expect(verdict.name).toBe("checkout");
  });

  it("a key still registered in another tenant is a conflict, and the importing tenant gets no copy of it", async () => {
    const source = await createTenant("held key source");
    const target = await createTenant("held key target");
    const key = await createKey(source, { name: "still here" });
    const imported = await importInto(target, { jwe: await exportWith(source), passphrase: PASSPHRASE });
    const conflict = imported.body.plan.keys.conflicts.find((entry) => entry.name === "still here");
    expect(conflict?.reason).toMatch(/another tenant/);
    expect((await verify(source, key.key)).valid).toBe(true);
    expect((await verify(target, key.key)).valid).toBe(false);
  });
});
