import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { openValues } from "../../src/credentials/sealed-fields";
import { database } from "../../src/db/client";
import { unseal } from "../../src/vault/keyring";
import { callJson, createTenant, type TestTenant } from "../helpers/api";
import { network } from "../setup/network";
import { type State, stripeLiveKey, wizardCall } from "./helpers";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const BASIC = {
  security_level: "basic",
  environment: "production",
  rotation_policy: "90_days",
  compliance: ["soc2"],
};
const SLACK = "https://hooks.slack.com/services/T0001/B0001/abcdef";

/** One Stripe service at basic, walked to the monitoring step and given this monitoring. */
async function wizardWith(tenant: TestTenant, monitoring: { channels: unknown[]; rules: unknown[] }) {
  const { body: started } = await wizardCall(tenant, "POST", "/");
  const id = started.id;
  await wizardCall(tenant, "PUT", `/${id}/steps/services`, { service_ids: ["stripe"] });
  await wizardCall(tenant, "PUT", `/${id}/steps/security`, BASIC);
  await wizardCall(tenant, "POST", `/${id}/keys/stripe`, { fields: { secret_key: stripeLiveKey() } });
  await wizardCall(tenant, "PUT", `/${id}/steps/keys`, {});
  network.use(
    http.get("https://api.stripe.com/v1/balance", () =>
      HttpResponse.json({ object: "balance", available: [], pending: [], livemode: true }),
    ),
  );
  await wizardCall(tenant, "POST", `/${id}/tests`, {});
  await wizardCall(tenant, "PUT", `/${id}/steps/testing`, {});
  const saved = await wizardCall<{ state: State; signing_secrets: Record<string, string> }>(
    tenant,
    "PUT",
    `/${id}/steps/monitoring`,
    monitoring,
  );
  expect(saved.status).toBe(200);
  return { id, signingSecrets: saved.body.signing_secrets };
}

interface Change {
  name: string;
  kind: string;
  change: string;
  id: string | null;
  fields: string[];
}
type Changes = { channels: Change[]; rules: Change[]; policy: { change: string; fields: string[] } };

const byName = (list: Change[]) =>
  Object.fromEntries(list.map(({ name, change, fields }) => [name, { change, fields }]));

async function listed<T>(tenant: TestTenant, path: string) {
  const response = await callJson<{ items: T[] }>("GET", `/api/v1/monitoring/${path}`, {
    key: tenant.adminKey,
  });
  expect(response.status).toBe(200);
  return response.body.items;
}

describe("a wizard commit reconciles with the tenant's monitoring instead of appending", () => {
  it("updates same-named channels in place, adds and removes the rest, and its review lists every change before the commit", async () => {
    const tenant = await createTenant("reconcile twice");
    const first = await wizardWith(tenant, {
      channels: [
        { kind: "email", name: "Ops", to: "ops@example.com" },
        { kind: "webhook", name: "Pager", url: "https://hooks.example.com/a" },
        { kind: "slack", name: "Old", webhook_url: SLACK },
      ],
      rules: [
        { kind: "expiry_warning", days_before: 14, channel_names: ["Ops"] },
        { kind: "usage_threshold", service_id: "stripe", threshold: 1000, channel_names: ["Ops", "Old"] },
      ],
    });
    const firstChanges = await wizardCall<Changes>(tenant, "GET", `/${first.id}/changes`);
    expect(firstChanges.status).toBe(200);
    expect(firstChanges.body.channels.map((c) => c.change)).toEqual(["added", "added", "added"]);
    expect(firstChanges.body.policy).toEqual({ change: "added", fields: [] });
    expect((await wizardCall(tenant, "POST", `/${first.id}/commit`, {})).status).toBe(200);
    const before = await listed<{ id: string; name: string }>(tenant, "channels");
    const idOf = Object.fromEntries(before.map((c) => [c.name, c.id]));

    const second = await wizardWith(tenant, {
      channels: [
        { kind: "email", name: "Ops", to: "ops@example.com" },
        { kind: "webhook", name: "Pager", url: "https://hooks.example.com/b" },
        { kind: "email", name: "New", to: "new@example.com" },
      ],
      rules: [
        { kind: "expiry_warning", days_before: 7, channel_names: ["Ops", "New"] },
        { kind: "failure_rate", service_id: "stripe", threshold_percent: 5, channel_names: ["Pager"] },
      ],
    });
    const review = await wizardCall<Changes>(tenant, "GET", `/${second.id}/changes`);
    expect(review.status).toBe(200);
    expect(byName(review.body.channels)).toEqual({
      Ops: { change: "unchanged", fields: [] },
      // A new wizard gives a webhook a new signing secret: the receiver needs the one shown in step 5.
      Pager: { change: "changed", fields: ["signing_secret", "url"] },
      New: { change: "added", fields: [] },
      Old: { change: "removed", fields: [] },
    });
    expect(byName(review.body.rules)).toEqual({
      expiry_warning: { change: "changed", fields: ["settings", "channels"] },
      "failure_rate:stripe": { change: "added", fields: [] },
      "usage_threshold:stripe:day": { change: "removed", fields: [] },
    });
    expect(review.body.policy).toEqual({ change: "unchanged", fields: [] });
    // Names, kinds and field names only: no value of any setting is in the review.
    expect(JSON.stringify(review.body)).not.toMatch(/hooks\.|example\.com|whsec_/);

    const committed = await wizardCall<{ state: State & { commit: { changes: Changes } } }>(
      tenant,
      "POST",
      `/${second.id}/commit`,
      {},
    );
    expect(committed.status).toBe(200);
    expect(committed.body.state.commit.changes).toEqual(review.body);

    const after = await listed<{ id: string; name: string; config: Record<string, string> }>(
      tenant,
      "channels",
    );
    expect(Object.fromEntries(after.map((c) => [c.name, c.id]))).toEqual({
      Ops: idOf.Ops,
      Pager: idOf.Pager,
      New: expect.stringMatching(/^chan_/),
    });
    expect(after.find((c) => c.name === "Pager")?.config).toEqual({ url: "https://hooks.example.com/b" });

    const rules = await listed<{
      id: string;
      name: string;
      settings: Record<string, unknown>;
      channel_ids: string[];
    }>(tenant, "rules");
    const newId = after.find((c) => c.name === "New")?.id;
    expect(rules.map((r) => r.name).sort()).toEqual(["expiry_warning", "failure_rate:stripe"]);
    const expiry = rules.find((r) => r.name === "expiry_warning");
    expect(expiry?.settings.days_before).toEqual([7]);
    expect(expiry?.channel_ids.sort()).toEqual([idOf.Ops, newId].sort());
    expect(rules.find((r) => r.name === "failure_rate:stripe")?.channel_ids).toEqual([idOf.Pager]);

    // The changed channel's secret was sealed again: it opens to the secret the second wizard showed.
    const db = database(env.DB);
    const row = await env.DB.prepare("SELECT sealed_secrets FROM alert_channels WHERE id = ?")
      .bind(idOf.Pager)
      .first<{ sealed_secrets: string }>();
    const opened = await openValues(
      await unseal(env, db),
      db,
      { tenantId: tenant.id, recordId: idOf.Pager as string },
      JSON.parse(row?.sealed_secrets ?? "{}"),
    );
    expect(opened.signing_secret).toBe(second.signingSecrets.Pager);

    const audit = await env.DB.prepare(
      "SELECT action, target_id FROM audit_log WHERE tenant_id = ? AND (action LIKE 'channel.%' OR action LIKE 'rule.%') ORDER BY seq",
    )
      .bind(tenant.id)
      .all<{ action: string; target_id: string }>();
    const secondRound = audit.results.slice(5).map((r) => r.action);
    expect(secondRound.sort()).toEqual(
      [
        "channel.delete",
        "channel.update",
        "channel.create",
        "rule.update",
        "rule.create",
        "rule.delete",
      ].sort(),
    );
  });

  it("commits a second wizard with identical monitoring as all unchanged, writing no channel or rule", async () => {
    const tenant = await createTenant("reconcile unchanged");
    const monitoring = {
      channels: [{ kind: "email", name: "Ops", to: "ops@example.com" }],
      rules: [{ kind: "expiry_warning", days_before: 14, channel_names: ["Ops"] }],
    };
    const first = await wizardWith(tenant, monitoring);
    expect((await wizardCall(tenant, "POST", `/${first.id}/commit`, {})).status).toBe(200);
    const second = await wizardWith(tenant, monitoring);
    const done = await wizardCall<{ state: State & { commit: { changes: Changes } } }>(
      tenant,
      "POST",
      `/${second.id}/commit`,
      {},
    );
    expect(done.status).toBe(200);
    const { changes } = done.body.state.commit;
    expect([...changes.channels, ...changes.rules].map((c) => c.change)).toEqual(["unchanged", "unchanged"]);
    const count = await env.DB.prepare(
      "SELECT count(*) AS n FROM audit_log WHERE tenant_id = ? AND (action LIKE 'channel.%' OR action LIKE 'rule.%')",
    )
      .bind(tenant.id)
      .first<{ n: number }>();
    expect(count?.n).toBe(2);
  });

  it("refuses two wizard rules watching the same thing, and shows no changes before the review step", async () => {
    const tenant = await createTenant("reconcile duplicate rules");
    const { body: started } = await wizardCall(tenant, "POST", "/");
    expect((await wizardCall(tenant, "GET", `/${started.id}/changes`)).status).toBe(409);
    const walked = await wizardWith(tenant, { channels: [], rules: [] });
    const refused = await wizardCall<{ errors: { path: string }[] }>(
      tenant,
      "PUT",
      `/${walked.id}/steps/monitoring`,
      {
        channels: [{ kind: "email", name: "Ops", to: "ops@example.com" }],
        rules: [
          { kind: "usage_threshold", service_id: "stripe", threshold: 10, channel_names: ["Ops"] },
          { kind: "usage_threshold", service_id: "stripe", threshold: 99, channel_names: ["Ops"] },
        ],
      },
    );
    expect(refused.status).toBe(422);
    expect(refused.body.errors.map((e) => e.path)).toEqual(["rules.1"]);
  });
});
