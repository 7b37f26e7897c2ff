import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { issueSessionToken } from "../../src/auth/session-token";
import { STEP_UP_WINDOW_MS, TOTP_HEADER } from "../../src/auth/step-up";
import { stepAt, totpAt } from "../../src/auth/totp";
import { credentialRecordId, openValues } from "../../src/credentials/sealed-fields";
import { parseKey } from "../../src/crypto/keys";
import { randomBase62 } from "../../src/crypto/random";
import { database } from "../../src/db/client";
import { unseal } from "../../src/vault/keyring";
import { purposeKey } from "../../src/vault/system-keys";
import { BASE, call, callJson, createTenant, type TestTenant, verify } from "../helpers/api";
import { countRows, dumpDatabase } from "../helpers/db";
import { enrollTotp } from "../helpers/totp";
import { network } from "../setup/network";
import {
  ALLOWLISTED,
  ENTERPRISE_SECURITY,
  openaiKey,
  providersAnswerValid,
  type State,
  stripeLiveKey,
  walkToMonitoring,
  walkToReview,
  walkToTesting,
  wizardCall,
} from "./helpers";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

describe("wizard state machine", () => {
  let tenant: TestTenant;
  beforeAll(async () => {
    tenant = await createTenant("wizard");
  });

  it("starts at services and refuses to skip ahead", async () => {
    const { status, body } = await wizardCall(tenant, "POST", "/");
    expect(status).toBe(201);
    expect(body).toMatchObject({ current_step: "services", furthest_step: "services", status: "open" });
    const skip = await wizardCall(tenant, "PUT", `/${body.id}/steps/security`, ENTERPRISE_SECURITY);
    expect(skip.status).toBe(409);
    const navigate = await wizardCall(tenant, "POST", `/${body.id}/navigate`, { step: "review" });
    expect(navigate.status).toBe(409);
  });

  it("validates each step's input and reports the failing fields", async () => {
    const { body } = await wizardCall(tenant, "POST", "/");
    const unknown = await wizardCall<{ errors: { path: string }[] }>(
      tenant,
      "PUT",
      `/${body.id}/steps/services`,
      {
        service_ids: ["stripe", "nope"],
      },
    );
    expect(unknown.status).toBe(422);
    expect(unknown.body.errors[0]?.path).toBe("service_ids.1");
    await wizardCall(tenant, "PUT", `/${body.id}/steps/services`, { service_ids: ["stripe"] });
    const weak = await wizardCall<{ errors: { path: string }[] }>(
      tenant,
      "PUT",
      `/${body.id}/steps/security`,
      {
        ...ENTERPRISE_SECURITY,
        require_2fa: false,
        ip_allowlist: [],
      },
    );
    expect(weak.status).toBe(422);
    expect(weak.body.errors.map((e) => e.path).sort()).toEqual(["ip_allowlist", "require_2fa"]);
  });

  it("shows a bad key format next to its field and stores nothing", async () => {
    const { id } = await walkToTesting(tenant);
    const bad = await wizardCall<{ errors: { path: string; message: string }[] }>(
      tenant,
      "POST",
      `/${id}/keys/stripe`,
      {
        fields: { secret_key: "sk_live_tooShort" },
      },
    );
    expect(bad.status).toBe(422);
    expect(bad.body.errors.map((e) => e.path)).toContain("fields.secret_key");
    expect(JSON.stringify(bad.body)).not.toContain("sk_live_tooShort");
  });

  it("refuses a test key for production at the enterprise level", async () => {
    const { id } = await walkToTesting(tenant);
    const mismatch = await wizardCall(tenant, "POST", `/${id}/keys/stripe`, {
      fields: { secret_key: `sk_test_${"a1B2".repeat(8)}` },
    });
    expect(mismatch.status).toBe(422);
  });

  it("generates a Keywarden key per service (and a backup at enterprise), shown once and never stored in the state", async () => {
    const { id } = await walkToTesting(tenant);
    const generated = await wizardCall<{
      state: State;
      generated: Record<string, { key: string; backup_key?: string; secrets: Record<string, string> }>;
    }>(tenant, "POST", `/${id}/keys/generate`, {});
    expect(generated.status).toBe(200);
    expect(generated.headers.get("cache-control")).toBe("no-store");
    expect(Object.keys(generated.body.generated).sort()).toEqual(["openai", "stripe"]);
    expect(generated.body.generated.stripe?.key).toMatch(/^kw_live_/);
    expect(generated.body.generated.stripe?.backup_key).toMatch(/^kw_live_/);
    expect(generated.body.state.steps.keys.issued_keys.stripe?.key_id).toMatch(/^key_/);
    const reloaded = await wizardCall(tenant, "GET", `/${id}`);
    expect(JSON.stringify(reloaded.body)).not.toContain(generated.body.generated.stripe?.key as string);
    // Not usable before the commit: the rows are only staged in the wizard.
    expect(await verify(tenant, generated.body.generated.stripe?.key as string)).toMatchObject({
      code: "NOT_FOUND",
    });
  });

  it("returns the whole state so a reload resumes exactly where the admin was, masked", async () => {
    const { id, secrets } = await walkToTesting(tenant);
    const { body } = await wizardCall(tenant, "GET", `/${id}`);
    expect(body.current_step).toBe("keys");
    expect(body.steps.keys.services.stripe?.complete).toBe(true);
    expect(JSON.stringify(body)).not.toContain(secrets.stripe);
    expect(body.compliance_checklist.some((item) => item.standard === "pci_dss" && item.met)).toBe(true);
  });

  it("lets the admin go back, and moves on only when each step is complete", async () => {
    const { id } = await walkToTesting(tenant);
    const back = await wizardCall(tenant, "POST", `/${id}/navigate`, { step: "services" });
    expect(back.body).toMatchObject({ current_step: "services", furthest_step: "keys" });
    const confirmTestingEarly = await wizardCall(tenant, "PUT", `/${id}/steps/testing`, {});
    expect(confirmTestingEarly.status).toBe(409);
    await wizardCall(tenant, "PUT", `/${id}/steps/keys`, {});
    const untested = await wizardCall(tenant, "PUT", `/${id}/steps/testing`, {});
    expect(untested.status).toBe(409);
    network.use(
      http.get("https://api.stripe.com/v1/balance", () =>
        HttpResponse.json(
          { error: { type: "invalid_request_error", message: "Invalid API Key provided" } },
          { status: 401 },
        ),
      ),
      http.get("https://api.openai.com/v1/models", () => HttpResponse.json({ object: "list", data: [] })),
    );
    const tests = await wizardCall<{ results: Record<string, { status: string }> }>(
      tenant,
      "POST",
      `/${id}/tests`,
      {},
    );
    expect(tests.body.results.stripe?.status).toBe("invalid");
    expect(tests.body.results.openai?.status).toBe("valid");
    expect((await wizardCall(tenant, "PUT", `/${id}/steps/testing`, {})).status).toBe(409);
  });

  it("answers 404 for another tenant's wizard and for malformed ids", async () => {
    const { id } = await walkToTesting(tenant);
    const other = await createTenant("wizard intruder");
    for (const [method, path, body] of [
      ["GET", "", undefined],
      ["PUT", "/steps/services", { service_ids: ["stripe"] }],
      ["POST", "/tests", {}],
      ["POST", "/commit", {}],
      ["DELETE", "", undefined],
    ] as const) {
      const foreign = await wizardCall<Record<string, unknown>>(other, method, `/${id}${path}`, body);
      expect(foreign.status, `${method} ${path}`).toBe(404);
    }
    const malformed = await wizardCall(other, "GET", "/not-an-id");
    expect(malformed.status).toBe(404);
    expect((await wizardCall(tenant, "GET", `/${id}`)).status).toBe(200);
  });
});

// Each commit test has its own tenant: a commit puts a policy in force (2FA required, an IP allowlist)
// that would change how the tenant's next commit is judged.
describe("wizard commit", () => {
  it("writes keys, credentials, policy, channels and rules in one batch and wipes the wizard's secrets", async () => {
    const tenant = await createTenant("commit");
    const { id, secrets } = await walkToReview(tenant);
    const committed = await wizardCall<{
      state: State;
      generated: Record<string, { key: string; backup_key?: string }>;
    }>(tenant, "POST", `/${id}/commit`, {});
    expect(committed.status).toBe(200);
    const created = committed.body.state.commit?.created;
    expect(created?.credentials).toHaveLength(2);
    expect(created?.keys).toHaveLength(4); // enterprise: a backup key per service
    expect(created?.channels).toHaveLength(1);
    expect(created?.rules).toHaveLength(1);
    const stripeKey = committed.body.generated.stripe?.key as string;
    expect(await verify(tenant, stripeKey, {}, { "cf-connecting-ip": "203.0.113.9" })).toMatchObject({
      valid: true,
    });
    expect(await verify(tenant, stripeKey, {}, { "cf-connecting-ip": "198.51.100.1" })).toMatchObject({
      code: "FORBIDDEN",
    });
    // Revealing is a step-up the now-committed policy (2FA required) refuses this key: read the sealed row.
    const version = await env.DB.prepare(
      "SELECT sealed_fields FROM credential_versions WHERE credential_id = ? AND version = 1",
    )
      .bind(created?.credentials[0])
      .first<{ sealed_fields: string }>();
    const opened = await openValues(
      await unseal(env, database(env.DB)),
      database(env.DB),
      { tenantId: tenant.id, recordId: credentialRecordId(created?.credentials[0] as string, 1) },
      JSON.parse(version?.sealed_fields ?? "{}") as Record<string, string>,
    );
    expect(opened).toEqual({ secret_key: secrets.stripe });
    const policy = await env.DB.prepare(
      "SELECT security_level, require_2fa FROM security_policies WHERE tenant_id = ?",
    )
      .bind(tenant.id)
      .first();
    expect(policy).toEqual({ security_level: "enterprise", require_2fa: 1 });
    const channels = await callJson<{
      items: { id: string; kind: string; config: Record<string, string> }[];
    }>("GET", "/api/v1/monitoring/channels", { key: tenant.adminKey, headers: ALLOWLISTED });
    expect(channels.body.items.map((ch) => ch.id)).toEqual(created?.channels);
    expect(channels.body.items[0]?.config).toEqual({ to: "ops@example.com" });
    const rules = await callJson<{ items: { channel_ids: string[] }[] }>("GET", "/api/v1/monitoring/rules", {
      key: tenant.adminKey,
      headers: ALLOWLISTED,
    });
    expect(rules.body.items[0]?.channel_ids).toEqual(created?.channels);
    const policyView = await callJson("GET", "/api/v1/security-policy", {
      key: tenant.adminKey,
      headers: ALLOWLISTED,
    });
    expect(policyView.body).toMatchObject({
      security_level: "enterprise",
      ip_allowlist: ENTERPRISE_SECURITY.ip_allowlist,
      rotation_days: 90,
    });
    const stub = env.WIZARD_SESSION.get(env.WIZARD_SESSION.idFromString(id));
    expect(await stub.sealed(tenant.id)).toEqual({ ok: true, value: {} });
    expect(await dumpDatabase()).not.toContain(secrets.openai);
  });

  it("is idempotent: a second commit returns the same summary, creates nothing, and needs no step-up", async () => {
    const tenant = await createTenant("commit twice");
    const { id } = await walkToReview(tenant);
    const first = await wizardCall<{ state: State }>(tenant, "POST", `/${id}/commit`, {});
    const keys = await countRows("api_keys");
    const creds = await countRows("credentials");
    // The committed policy requires 2FA, which this key has not enrolled: a retry that changes nothing
    // still answers.
    const second = await wizardCall<{ state: State; generated: Record<string, unknown> }>(
      tenant,
      "POST",
      `/${id}/commit`,
      {},
      ALLOWLISTED,
    );
    expect(second.status).toBe(200);
    expect(second.body.state.commit).toEqual(first.body.state.commit);
    expect(second.body.generated).toEqual({});
    expect(await countRows("api_keys")).toBe(keys);
    expect(await countRows("credentials")).toBe(creds);
  });

  it("lets only one of two concurrent commits succeed", async () => {
    const tenant = await createTenant("commit race");
    const { id } = await walkToReview(tenant);
    const credsBefore = await countRows("credentials");
    const [a, b] = await Promise.all([
      wizardCall(tenant, "POST", `/${id}/commit`, {}),
      wizardCall(tenant, "POST", `/${id}/commit`, {}),
    ]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    expect(await countRows("credentials")).toBe(credsBefore + 2);
  });

  it("finishes a commit that landed in D1 but crashed before the wizard heard of it, creating nothing twice", async () => {
    const tenant = await createTenant("commit crash");
    const { id } = await walkToReview(tenant);
    const stub = env.WIZARD_SESSION.get(env.WIZARD_SESSION.idFromString(id));
    // Simulate the crash: the batch lands, finishCommit never runs, the lease lapses.
    const first = await wizardCall<{ state: State }>(tenant, "POST", `/${id}/commit`, {});
    const summary = first.body.state.commit;
    await env.DB.prepare("SELECT 1").run();
    const { runInDurableObject } = await import("cloudflare:test");
    await runInDurableObject(stub, (_instance, state) => {
      const current = state.storage.kv.get<State>("state") as State;
      state.storage.kv.put("state", { ...current, status: "open", commit: null });
    });
    const creds = await countRows("credentials");
    const retried = await wizardCall<{ state: State }>(tenant, "POST", `/${id}/commit`, {}, ALLOWLISTED);
    expect(retried.status).toBe(200);
    expect(retried.body.state.commit).toEqual(summary);
    expect(await countRows("credentials")).toBe(creds);
  });
});

describe("monitoring channels", () => {
  it("signs a webhook test per the Standard Webhooks spec and shows the signing secret once", async () => {
    const tenant = await createTenant("hooks");
    const { id } = await walkToMonitoring(tenant);
    let received: { headers: Headers; body: string } | undefined;
    network.use(
      http.post("https://hooks.example.com/keywarden", async ({ request }) => {
        received = { headers: new Headers(request.headers), body: await request.text() };
        return new HttpResponse(null, { status: 204 });
      }),
    );
    const channel = { kind: "webhook", name: "Pager", url: "https://hooks.example.com/keywarden" };
    const test = await wizardCall<{ delivered: boolean; signing_secret: string }>(
      tenant,
      "POST",
      `/${id}/monitoring/test`,
      { channel },
    );
    expect(test.body.delivered).toBe(true);
    expect(test.body.signing_secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const headers = received?.headers as Headers;
    const body = received?.body;
    const key = await crypto.subtle.importKey(
      "raw",
      Uint8Array.from(atob(test.body.signing_secret.slice(6)), (ch) => ch.charCodeAt(0)),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const expected = await crypto.subtle.sign(
      "HMAC",
      key,
      new TextEncoder().encode(`${headers.get("webhook-id")}.${headers.get("webhook-timestamp")}.${body}`),
    );
    expect(headers.get("webhook-signature")).toBe(
      `v1,${btoa(String.fromCharCode(...new Uint8Array(expected)))}`,
    );
    const again = await wizardCall<{ signing_secret?: string }>(tenant, "POST", `/${id}/monitoring/test`, {
      channel,
    });
    expect(again.body.signing_secret).toBeUndefined();
    const saved = await wizardCall<{ signing_secrets: Record<string, string>; state: State }>(
      tenant,
      "PUT",
      `/${id}/steps/monitoring`,
      {
        channels: [channel],
        rules: [],
      },
    );
    expect(saved.body.signing_secrets).toEqual({});
    expect(JSON.stringify(saved.body.state)).not.toContain(test.body.signing_secret);
  });

  it("refuses webhook URLs to private, loopback or plain-http hosts", async () => {
    const tenant = await createTenant("ssrf");
    const { id } = await walkToMonitoring(tenant);
    for (const url of [
      "http://hooks.example.com/x",
      "https://127.0.0.1/x",
      "https://10.0.0.5/x",
      "https://localhost/x",
      "https://[::1]/x",
      "https://user:pw@example.com/x",
    ]) {
      const response = await wizardCall(tenant, "POST", `/${id}/monitoring/test`, {
        channel: { kind: "webhook", name: "x", url },
      });
      expect(response.status, url).toBe(422);
    }
  });

  it("does not follow a redirect from a webhook receiver", async () => {
    const tenant = await createTenant("redirect");
    const { id } = await walkToMonitoring(tenant);
    network.use(
      http.post(
        "https://hooks.example.com/redirect",
        () => new HttpResponse(null, { status: 302, headers: { location: "http://169.254.169.254/" } }),
      ),
    );
    const response = await wizardCall<{ delivered: boolean; reason: string }>(
      tenant,
      "POST",
      `/${id}/monitoring/test`,
      {
        channel: { kind: "webhook", name: "r", url: "https://hooks.example.com/redirect" },
      },
    );
    expect(response.body).toMatchObject({ delivered: false, reason: "redirect_not_followed" });
  });
});

const BASIC_SECURITY = {
  security_level: "basic",
  environment: "production",
  rotation_policy: "none",
  require_2fa: false,
};

type Generated = Record<string, { key: string; backup_key?: string }>;

/** The wizard keys of a tenant as D1 holds them (service keys only, not the tenant's admin key). */
async function committedServiceKeys(tenant: TestTenant) {
  const { results } = await env.DB.prepare(
    "SELECT id, service_id, security_level, ip_allowlist, backup_of_id FROM api_keys WHERE tenant_id = ? AND service_id IS NOT NULL ORDER BY id",
  )
    .bind(tenant.id)
    .all<{
      id: string;
      service_id: string;
      security_level: string;
      ip_allowlist: string | null;
      backup_of_id: string | null;
    }>();
  return results;
}

const entropyBits = (key: string) => (parseKey(key)?.randomPart.length ?? 0) * Math.log2(62);

/** From the review step back to it: keys confirmed, Stripe tested, no monitoring. */
async function walkBackToReview(tenant: TestTenant, id: string) {
  expect((await wizardCall(tenant, "PUT", `/${id}/steps/keys`, {})).status).toBe(200);
  providersAnswerValid();
  await wizardCall(tenant, "POST", `/${id}/tests`, {});
  expect((await wizardCall(tenant, "PUT", `/${id}/steps/testing`, {})).status).toBe(200);
  const review = await wizardCall(tenant, "PUT", `/${id}/steps/monitoring`, { channels: [], rules: [] });
  expect((review.body as unknown as { state: State }).state.furthest_step).toBe("review");
}

describe("keys generated in the wizard are committed only under the settings in force at commit", () => {
  it("generates keys at basic, then enterprise with an IP allowlist is chosen and a service deselected: the commit carries enterprise keys with 256-bit entropy and the allowlist, and none for the deselected service", async () => {
    const tenant = await createTenant("stale keys");
    const { body: started } = await wizardCall(tenant, "POST", "/");
    const id = started.id;
    await wizardCall(tenant, "PUT", `/${id}/steps/services`, { service_ids: ["stripe", "openai"] });
    await wizardCall(tenant, "PUT", `/${id}/steps/security`, BASIC_SECURITY);
    await wizardCall(tenant, "POST", `/${id}/keys/stripe`, { fields: { secret_key: stripeLiveKey() } });
    await wizardCall(tenant, "POST", `/${id}/keys/openai`, { fields: { api_key: openaiKey() } });
    const basic = await wizardCall<{ state: State; generated: Generated }>(
      tenant,
      "POST",
      `/${id}/keys/generate`,
      {},
    );
    expect(basic.status).toBe(200);
    expect(entropyBits(basic.body.generated.stripe?.key as string)).toBeLessThan(256);

    // Step 1 again: OpenAI deselected. Its staged key goes with it.
    await wizardCall(tenant, "POST", `/${id}/navigate`, { step: "services" });
    const deselected = await wizardCall(tenant, "PUT", `/${id}/steps/services`, { service_ids: ["stripe"] });
    expect(Object.keys(deselected.body.steps.keys.issued_keys)).toEqual(["stripe"]);
    // Step 2 again: enterprise with an allowlist. The basic key no longer applies.
    const enterprise = await wizardCall(tenant, "PUT", `/${id}/steps/security`, ENTERPRISE_SECURITY);
    expect(enterprise.status).toBe(200);
    expect(enterprise.body.steps.keys.issued_keys).toEqual({});
    expect(enterprise.body.furthest_step).toBe("keys");

    await walkBackToReview(tenant, id);
    // The review shows no issued key: the commit issues it (as the UI says, "issued at commit").
    const review = await wizardCall(tenant, "GET", `/${id}`);
    expect(review.body.steps.keys.issued_keys).toEqual({});

    const committed = await wizardCall<{ state: State; generated: Generated }>(
      tenant,
      "POST",
      `/${id}/commit`,
      {},
    );
    expect(committed.status).toBe(200);
    const rows = await committedServiceKeys(tenant);
    expect(rows.map((row) => row.id).sort()).toEqual(
      [...(committed.body.state.commit?.created.keys ?? [])].sort(),
    );
    expect(rows).toHaveLength(2); // Stripe's key and its enterprise backup; nothing for OpenAI
    for (const row of rows) {
      expect(row).toMatchObject({ service_id: "stripe", security_level: "enterprise" });
      expect(JSON.parse(row.ip_allowlist ?? "null")).toEqual(ENTERPRISE_SECURITY.ip_allowlist);
    }
    expect(rows.filter((row) => row.backup_of_id)).toHaveLength(1);
    const { key, backup_key } = committed.body.generated.stripe ?? { key: "" };
    expect(entropyBits(key)).toBeGreaterThanOrEqual(256);
    expect(entropyBits(backup_key as string)).toBeGreaterThanOrEqual(256);
    // The keys shown at basic were never committed, OpenAI's included.
    for (const stale of [basic.body.generated.stripe?.key, basic.body.generated.openai?.key]) {
      expect(await verify(tenant, stale as string, {}, ALLOWLISTED)).toMatchObject({ code: "NOT_FOUND" });
    }
    expect(await verify(tenant, key, {}, ALLOWLISTED)).toMatchObject({ valid: true });
  });

  it("refuses to commit credentials entered under settings that no longer accept them, until they are entered again", async () => {
    const tenant = await createTenant("stale credentials");
    const { body: started } = await wizardCall(tenant, "POST", "/");
    const id = started.id;
    await wizardCall(tenant, "PUT", `/${id}/steps/services`, { service_ids: ["stripe"] });
    await wizardCall(tenant, "PUT", `/${id}/steps/security`, BASIC_SECURITY);
    // Basic only warns about a test-mode key in production ...
    const entered = await wizardCall(tenant, "POST", `/${id}/keys/stripe`, {
      fields: { secret_key: `sk_test_${randomBase62(32)}` },
    });
    expect(entered.status).toBe(200);
    // ... enterprise refuses one.
    await wizardCall(tenant, "PUT", `/${id}/steps/security`, ENTERPRISE_SECURITY);
    await walkBackToReview(tenant, id);
    const refused = await wizardCall<{ code: string; errors: { path: string }[] }>(
      tenant,
      "POST",
      `/${id}/commit`,
      {},
    );
    expect(refused.status).toBe(422);
    expect(refused.body.errors.map((error) => error.path)).toEqual(["steps.keys.services.stripe"]);
    expect(await committedServiceKeys(tenant)).toEqual([]);
    expect(
      await env.DB.prepare("SELECT 1 FROM credentials WHERE tenant_id = ?").bind(tenant.id).first(),
    ).toBeNull();

    await wizardCall(tenant, "POST", `/${id}/keys/stripe`, { fields: { secret_key: stripeLiveKey() } });
    await walkBackToReview(tenant, id);
    expect((await wizardCall(tenant, "POST", `/${id}/commit`, {})).status).toBe(200);
  });

  it("commits the very keys it showed when the settings did not change, and still drops a deselected service's", async () => {
    const tenant = await createTenant("kept keys");
    const { id } = await walkToTesting(tenant);
    const shown = await wizardCall<{ state: State; generated: Generated }>(
      tenant,
      "POST",
      `/${id}/keys/generate`,
      {},
    );
    await wizardCall(tenant, "POST", `/${id}/navigate`, { step: "services" });
    await wizardCall(tenant, "PUT", `/${id}/steps/services`, { service_ids: ["stripe"] });
    // The same settings saved again change nothing.
    const same = await wizardCall(tenant, "PUT", `/${id}/steps/security`, ENTERPRISE_SECURITY);
    expect(same.body.steps.keys.issued_keys.stripe).toEqual(shown.body.state.steps.keys.issued_keys.stripe);
    await walkBackToReview(tenant, id);
    const committed = await wizardCall<{ state: State; generated: Generated }>(
      tenant,
      "POST",
      `/${id}/commit`,
      {},
    );
    expect(committed.body.generated).toEqual({});
    expect((await committedServiceKeys(tenant)).map((row) => row.service_id)).toEqual(["stripe", "stripe"]);
    expect(await verify(tenant, shown.body.generated.stripe?.key as string, {}, ALLOWLISTED)).toMatchObject({
      valid: true,
    });
    expect(await verify(tenant, shown.body.generated.openai?.key as string, {}, ALLOWLISTED)).toMatchObject({
      code: "NOT_FOUND",
    });
  });

  it("refuses to commit a service added after the keys step until its credentials are entered", async () => {
    const tenant = await createTenant("added service");
    const { id } = await walkToReview(tenant);
    await wizardCall(tenant, "POST", `/${id}/navigate`, { step: "services" });
    const added = await wizardCall(tenant, "PUT", `/${id}/steps/services`, {
      service_ids: ["stripe", "openai", "github"],
    });
    expect(added.body.furthest_step).toBe("security");
    const credentials = await countRows("credentials");
    const refused = await wizardCall<{ code: string }>(tenant, "POST", `/${id}/commit`, {});
    expect(refused.status).toBe(409);
    expect(await countRows("credentials")).toBe(credentials);
  });
});

describe("channel secrets stay with their own channel", () => {
  it('keeps "ops" and "ops.slack" apart: each committed channel holds exactly its own webhook URL', async () => {
    const tenant = await createTenant("dotted channels");
    const { id } = await walkToMonitoring(tenant);
    const urls = {
      ops: "https://hooks.slack.com/services/T0PS/B0PS/opsOnly",
      "ops.slack": "https://hooks.slack.com/services/T0PS/BSLACK/slackOnly",
      "ops.slack.webhook_url": "https://hooks.slack.com/services/T0PS/BURL/urlOnly",
    };
    const saved = await wizardCall(tenant, "PUT", `/${id}/steps/monitoring`, {
      channels: Object.entries(urls).map(([name, webhook_url]) => ({ kind: "slack", name, webhook_url })),
      rules: [],
    });
    expect(saved.status).toBe(200);
    const committed = await wizardCall<{ state: State }>(tenant, "POST", `/${id}/commit`, {});
    expect(committed.status).toBe(200);

    const db = database(env.DB);
    const keys = await unseal(env, db);
    const { results } = await env.DB.prepare(
      "SELECT id, name, sealed_secrets FROM alert_channels WHERE tenant_id = ?",
    )
      .bind(tenant.id)
      .all<{ id: string; name: string; sealed_secrets: string }>();
    expect(results.map((row) => row.name).sort()).toEqual(Object.keys(urls).sort());
    for (const row of results) {
      const opened = await openValues(
        keys,
        db,
        { tenantId: tenant.id, recordId: row.id },
        JSON.parse(row.sealed_secrets) as Record<string, string>,
      );
      expect(opened, row.name).toEqual({ webhook_url: urls[row.name as keyof typeof urls] });
    }
    const listed = await callJson<{ items: { name: string; secret_fields: string[] }[] }>(
      "GET",
      "/api/v1/monitoring/channels",
      { key: tenant.adminKey, headers: ALLOWLISTED },
    );
    for (const channel of listed.body.items)
      expect(channel.secret_fields, channel.name).toEqual(["webhook_url"]);
  });
});

async function sessionHeaders(tenant: TestTenant, signedInAt: number) {
  const key = await purposeKey(await unseal(env, database(env.DB)), database(env.DB), "session-jwt");
  const token = await issueSessionToken(key, { tenantId: tenant.id, keyId: tenant.adminKeyId }, signedInAt);
  return { cookie: `__Host-kw_session=${token}`, origin: BASE };
}

async function policyRow(tenant: TestTenant) {
  return env.DB.prepare("SELECT security_level FROM security_policies WHERE tenant_id = ?")
    .bind(tenant.id)
    .first();
}

describe("committing the wizard changes the security policy: a step-up", () => {
  it("commits from a browser session signed in within 5 minutes, with no 2FA enrolled", async () => {
    const tenant = await createTenant("session commit");
    const { id } = await walkToReview(tenant);
    const response = await call("POST", `/api/v1/wizard/${id}/commit`, {
      body: {},
      headers: await sessionHeaders(tenant, Date.now() - 60_000),
    });
    expect(response.status).toBe(200);
    expect(await policyRow(tenant)).toEqual({ security_level: "enterprise" });
  });

  it("refuses a browser session signed in more than 5 minutes ago, writing nothing", async () => {
    const tenant = await createTenant("stale session commit");
    const { id } = await walkToReview(tenant);
    const keys = await countRows("api_keys");
    const stale = await call("POST", `/api/v1/wizard/${id}/commit`, {
      body: {},
      headers: await sessionHeaders(tenant, Date.now() - STEP_UP_WINDOW_MS - 60_000),
    });
    expect(stale.status).toBe(401);
    expect(await policyRow(tenant)).toBeNull();
    expect(await countRows("api_keys")).toBe(keys);
    // The refusal held no commit lease: signing in again commits at once.
    const fresh = await call("POST", `/api/v1/wizard/${id}/commit`, {
      body: {},
      headers: await sessionHeaders(tenant, Date.now()),
    });
    expect(fresh.status).toBe(200);
  });

  it("needs a current 2FA code, in the body or the x-keywarden-totp header, once the committing key has enrolled", async () => {
    const tenant = await createTenant("2fa commit");
    const { secret } = await enrollTotp(tenant.adminKey);
    const { id } = await walkToReview(tenant);
    const without = await wizardCall<{ errors: { path: string }[] }>(tenant, "POST", `/${id}/commit`, {});
    expect(without.status).toBe(401);
    expect(without.body.errors[0]?.path).toBe("totp");
    const wrong = await wizardCall(tenant, "POST", `/${id}/commit`, { totp: "000000" });
    expect(wrong.status).toBe(401);
    expect(await policyRow(tenant)).toBeNull();
    const withHeader = await wizardCall(
      tenant,
      "POST",
      `/${id}/commit`,
      {},
      {
        [TOTP_HEADER]: await totpAt(secret, stepAt(Date.now()) + 1),
      },
    );
    expect(withHeader.status).toBe(200);
    expect(await policyRow(tenant)).toEqual({ security_level: "enterprise" });
  });

  it("refuses a policy whose IP allowlist leaves out the address committing it, writing nothing", async () => {
    const tenant = await createTenant("wizard lockout");
    const { id } = await walkToReview(tenant);
    const outside = await wizardCall<{ code: string }>(
      tenant,
      "POST",
      `/${id}/commit`,
      {},
      {
        "cf-connecting-ip": "198.51.100.20",
      },
    );
    expect(outside.status).toBe(409);
    expect(outside.body.code).toBe("CONFLICT");
    expect(
      await env.DB.prepare("SELECT 1 FROM security_policies WHERE tenant_id = ?").bind(tenant.id).first(),
    ).toBeNull();
    const inside = await wizardCall(tenant, "POST", `/${id}/commit`, {}, ALLOWLISTED);
    expect(inside.status).toBe(200);
  });

  it("refuses a key without 2FA from replacing a policy that requires 2FA", async () => {
    const tenant = await createTenant("2fa required");
    const first = await walkToReview(tenant);
    expect((await wizardCall(tenant, "POST", `/${first.id}/commit`, {})).status).toBe(200);
    const { body: second } = await wizardCall(tenant, "POST", "/", undefined, ALLOWLISTED);
    await wizardCall(tenant, "PUT", `/${second.id}/steps/services`, { service_ids: ["stripe"] }, ALLOWLISTED);
    await wizardCall(tenant, "PUT", `/${second.id}/steps/security`, BASIC_SECURITY, ALLOWLISTED);
    await wizardCall(
      tenant,
      "POST",
      `/${second.id}/keys/stripe`,
      { fields: { secret_key: stripeLiveKey() } },
      ALLOWLISTED,
    );
    await wizardCall(tenant, "PUT", `/${second.id}/steps/keys`, {}, ALLOWLISTED);
    providersAnswerValid();
    await wizardCall(tenant, "POST", `/${second.id}/tests`, {}, ALLOWLISTED);
    await wizardCall(tenant, "PUT", `/${second.id}/steps/testing`, {}, ALLOWLISTED);
    await wizardCall(tenant, "PUT", `/${second.id}/steps/monitoring`, {}, ALLOWLISTED);
    const refused = await wizardCall(tenant, "POST", `/${second.id}/commit`, {}, ALLOWLISTED);
    expect(refused.status).toBe(403);
    expect(await policyRow(tenant)).toEqual({ security_level: "enterprise" });
  });
});
