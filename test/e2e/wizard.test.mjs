// The whole setup wizard in a real browser (Debian's Chromium through playwright-core), against an
// isolated `wrangler dev`, with provider probes answered by a local stand-in and a local webhook receiver.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { configuredCrons, fireTick } from "../../scripts/local-cron.mjs";
import { assertAccessible, DESKTOP, PHONE, shot as photograph, runScenario } from "./browser.mjs";
import {
  apiAs,
  createTenant,
  eventually,
  launchBrowser,
  randomAlnum,
  startKeywarden,
  startProviderStandIn,
  startWebhookReceiver,
  stopAll,
  totpCode,
  verifyStandardWebhook,
} from "./harness.mjs";

let kw;
let standIn;
let hook;
let browser;
let tenantA;
let tenantB;
let tenantC;
let wizardId;
let crons;

before(
  async () => {
    standIn = await startProviderStandIn();
    hook = await startWebhookReceiver();
    kw = await startKeywarden({ standInOrigin: standIn.origin });
    [tenantA, tenantB, tenantC] = [
      await createTenant(kw, "Acme (e2e)"),
      await createTenant(kw, "Other tenant (e2e)"),
      await createTenant(kw, "Rotating tenant (e2e)"),
    ];
    [browser, crons] = await Promise.all([launchBrowser(), configuredCrons()]);
  },
  { timeout: 240_000 },
);

after(
  async () => {
    await stopAll();
  },
  { timeout: 60_000 },
);

const scenario = (name, viewport, fn) => runScenario(browser, kw.origin, name, viewport, fn);

/** Every page the wizard photographs also passes axe-core with no serious or critical violation. */
async function shot(page, name) {
  await assertAccessible(page, name);
  await photograph(page, name);
}

const errorOf = async (page, control) => page.locator(`[id="${await control.getAttribute("id")}-err"]`);

async function expectStep(page, n, title) {
  await page.waitForFunction(
    (text) => document.querySelector("h1#step-title")?.textContent === text,
    `Step ${n} of 6: ${title}`,
  );
  // Focus moves to the step heading, and the indicator marks the same step.
  assert.equal(await page.evaluate(() => document.activeElement?.id), "step-title");
  const current = page.locator('nav[aria-label="Wizard steps"] [aria-current="step"]');
  assert.equal(await current.count(), 1);
  assert.match(await current.textContent(), new RegExp(`^${n}`));
}

async function signIn(page, key) {
  await page.getByLabel("Admin key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

describe("the setup wizard in a browser", { timeout: 300_000 }, () => {
  const stripeKey = `sk_live_${randomAlnum(32)}`;
  const openaiKey = `sk-proj-${randomAlnum(56)}`;

  test("an admin walks all six steps and the commit creates the keys, credentials, policy and channel", {
    timeout: 240_000,
  }, async () => {
    await scenario("walk", DESKTOP, async ({ page }) => {
      await page.goto("/");
      await page.getByRole("heading", { name: "Sign in to the setup wizard" }).waitFor();
      await shot(page, "0-sign-in");

      // A wrong key: the problem+json detail is shown.
      await signIn(page, `kw_live_${randomAlnum(40)}`);
      await page.getByRole("alert").filter({ hasText: "missing, invalid, expired or revoked" }).waitFor();
      await signIn(page, tenantA.adminKey);

      // Step 1: the catalogue, filtered and searched.
      await expectStep(page, 1, "Choose services");
      await page.getByLabel("Search services").fill("strip");
      assert.equal(await page.locator(".svc:visible").count(), 1);
      await page.getByLabel("Stripe", { exact: true }).check();
      await page.getByLabel("Search services").fill("");
      await page.getByLabel("Category").selectOption("ai");
      assert.ok(await page.getByText("OpenAI documentation").isVisible());
      assert.equal(await page.getByText("Stripe documentation").isVisible(), false);
      await page.getByLabel("OpenAI", { exact: true }).check();
      await page.getByLabel("Category").selectOption("");
      await page.getByText("2 selected: Stripe, OpenAI").waitFor();
      await shot(page, "1-services");
      await page.getByRole("button", { name: "Continue to security" }).click();

      // Step 2: enterprise / production, 90 days, an IP allowlist; 2FA is forced on at enterprise.
      await expectStep(page, 2, "Configure security");
      wizardId = new URL(page.url()).hash.replace("#wizard=", "");
      assert.match(wizardId, /^[0-9a-f]{64}$/);
      await page.getByLabel("Enterprise", { exact: true }).check();
      await page.getByLabel("Production", { exact: true }).check();
      assert.ok(await page.getByLabel("No scheduled rotation").isDisabled());
      await page.getByLabel("Every 90 days").check();
      const twofa = page.getByLabel("Require two-factor sign-in (TOTP) for admins");
      assert.ok((await twofa.isChecked()) && (await twofa.isDisabled()));
      await page.getByLabel("SOC 2").check();
      await page.getByLabel("PCI DSS").check();
      // Without the allowlist enterprise is refused, and the error sits next to the field.
      await page.getByRole("button", { name: "Save and continue to keys" }).click();
      const ip = page.getByLabel("IP allowlist");
      await (await errorOf(page, ip)).filter({ hasText: "enterprise requires an IP allowlist" }).waitFor();
      assert.equal(await ip.getAttribute("aria-invalid"), "true");
      // 127.0.0.1 is where this browser and the API checks below come from: a commit refuses an allowlist
      // that would lock out the admin committing it.
      await ip.fill("203.0.113.0/24\n198.51.100.7\n127.0.0.1");
      await shot(page, "2-security");
      await page.getByRole("button", { name: "Save and continue to keys" }).click();

      // Step 3: a bad format is shown next to its field, as typed and on save.
      await expectStep(page, 3, "Enter or generate keys");
      const stripeCard = page.locator("form.svc-keys", {
        has: page.getByRole("heading", { name: /^Stripe/ }),
      });
      const openaiCard = page.locator("form.svc-keys", {
        has: page.getByRole("heading", { name: /^OpenAI/ }),
      });
      const stripeSecret = stripeCard.getByLabel("Secret or restricted key", { exact: true });
      await stripeSecret.fill(`sk_live_${randomAlnum(6)}`);
      const stripeErr = await errorOf(page, stripeSecret);
      await stripeErr.filter({ hasText: "does not match the Stripe format" }).waitFor();
      assert.equal(await stripeSecret.getAttribute("aria-invalid"), "true");
      await stripeCard.getByRole("button", { name: "Save Stripe credentials" }).click();
      await stripeCard.getByText("The Stripe credentials did not pass validation.").waitFor();
      assert.match(await stripeErr.textContent(), /does not match the Stripe format/);
      // A test-mode key for production: the environment check refuses it at this level.
      await stripeSecret.fill(`sk_test_${randomAlnum(32)}`);
      await stripeCard.getByText("a test Stripe credential is being stored for production").waitFor();
      await stripeSecret.fill(stripeKey);
      await stripeCard.locator(".strength:visible").filter({ hasText: "Strength: strong" }).waitFor();
      await page.waitForFunction(
        (id) => !document.querySelector(`[id="${id}"]`)?.hasAttribute("aria-invalid"),
        await stripeSecret.getAttribute("id"),
      );
      await stripeCard.getByRole("button", { name: "Save Stripe credentials" }).click();
      await page.locator("form.svc-keys").first().getByText("Saved", { exact: true }).waitFor();
      await openaiCard.getByLabel("API key", { exact: true }).fill(openaiKey);
      await openaiCard.getByRole("button", { name: "Save OpenAI credentials" }).click();
      await page.locator("form.svc-keys").nth(1).getByText("Saved", { exact: true }).waitFor();

      // A reload in the middle resumes at the same step with the same state; storage holds only the id.
      await page.reload();
      await expectStep(page, 3, "Enter or generate keys");
      assert.equal(await page.locator("form.svc-keys .badge.ok").count(), 2);
      const storage = await page.evaluate(
        () => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }),
      );
      assert.ok(storage.includes(wizardId));
      for (const secret of [stripeKey, openaiKey, tenantA.adminKey]) assert.ok(!storage.includes(secret));
      assert.ok(
        !(await page.content()).includes(stripeKey),
        "the entered key is not in the page after saving",
      );

      // The step indicator works from the keyboard: back to step 2, then forward to the furthest step reached.
      const indicator = page.getByRole("navigation", { name: "Wizard steps" });
      assert.ok(await indicator.getByRole("button", { name: /Step 4: Testing/ }).isDisabled());
      await indicator.getByRole("button", { name: /Step 2: Security/ }).focus();
      await page.keyboard.press("Enter");
      await expectStep(page, 2, "Configure security");
      assert.ok(await page.getByLabel("Enterprise", { exact: true }).isChecked());
      assert.equal(
        await page.getByLabel("IP allowlist").inputValue(),
        "203.0.113.0/24\n198.51.100.7\n127.0.0.1",
      );
      await page.getByRole("heading", { name: "Compliance checklist" }).waitFor();
      await shot(page, "2-security-checklist");
      await indicator.getByRole("button", { name: /Step 3: Keys/ }).focus();
      await page.keyboard.press("Enter");
      await expectStep(page, 3, "Enter or generate keys");

      // Generate: Keywarden keys plus the enterprise backup keys, masked until revealed, shown once.
      await page.getByRole("button", { name: "Generate keys" }).click();
      await page.getByText("Shown once.", { exact: true }).waitFor();
      const generated = {};
      for (const label of ["Stripe key", "Stripe backup key", "OpenAI key", "OpenAI backup key"]) {
        const row = page.getByRole("group", { name: label, exact: true });
        assert.match(await row.locator("code").textContent(), /•{16}$/);
        await row.getByRole("button", { name: "Reveal" }).click();
        generated[label] = await row.locator("code").textContent();
        assert.match(generated[label], /^kw_live_[0-9A-Za-z]{40,}$/);
        assert.equal(await row.getByRole("button", { name: "Hide" }).getAttribute("aria-pressed"), "true");
      }
      const copyRow = page.getByRole("group", { name: "Stripe key", exact: true });
      await copyRow.getByRole("button", { name: "Copy" }).click();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), generated["Stripe key"]);
      for (const label of Object.keys(generated)) {
        await page
          .getByRole("group", { name: label, exact: true })
          .getByRole("button", { name: "Hide" })
          .click();
      }
      await shot(page, "3-keys");
      // Shown once means once: after a reload only the masked starts remain.
      await page.reload();
      await expectStep(page, 3, "Enter or generate keys");
      await page.getByText("and a backup key").first().waitFor();
      assert.equal(await page.getByText("Shown once.", { exact: true }).count(), 0);
      const html = await page.content();
      for (const plain of Object.values(generated)) assert.ok(!html.includes(plain));
      await page.getByRole("button", { name: "Continue to testing" }).click();

      // Step 4: the OpenAI key is not known to the stand-in yet, so it fails; retry after "fixing" it.
      await expectStep(page, 4, "Test and verify");
      standIn.accept(stripeKey);
      await page.getByRole("button", { name: "Run live checks" }).click();
      await page.getByText("Done: 1 of 2 services passed their live check.").waitFor();
      const row = (name) => page.getByRole("row", { name: new RegExp(`^${name}`) });
      assert.match(await row("Stripe").textContent(), /Passed\s*authenticated\s*\d+ ms/);
      assert.match(await row("OpenAI").textContent(), /Rejected/);
      await page.getByRole("button", { name: "Continue to monitoring" }).click();
      await page
        .getByRole("alert")
        .filter({ hasText: "A provider rejected one of the credentials" })
        .waitFor();
      standIn.accept(openaiKey);
      await page.getByRole("button", { name: "Retry OpenAI" }).click();
      await page.getByText("Done: 2 of 2 services passed their live check.").waitFor();
      assert.match(await row("OpenAI").textContent(), /Passed\s*authenticated\s*\d+ ms/);
      const probes = standIn.requests.map((r) => `${r.method} ${r.path} ${r.headers.authorization}`);
      assert.ok(probes.includes(`GET /api.stripe.com/v1/balance Bearer ${stripeKey}`));
      assert.ok(probes.includes(`GET /api.openai.com/v1/models Bearer ${openaiKey}`));
      await shot(page, "4-testing");
      await page.getByRole("button", { name: "Continue to monitoring" }).click();

      // Step 5: a webhook channel to the local receiver; its test is signed per Standard Webhooks.
      await expectStep(page, 5, "Set up monitoring");
      await page.getByRole("button", { name: "Add webhook channel" }).click();
      await page.getByLabel("Channel name").fill("Pager");
      await page.getByLabel("Webhook URL (https)").fill(hook.url);
      await page.getByRole("button", { name: "Send test" }).click();
      await page.getByText("Test delivered (HTTP 204).").waitFor();
      const secretRow = page.getByRole("group", { name: "Pager signing secret" });
      await secretRow.getByRole("button", { name: "Reveal" }).click();
      const signingSecret = await secretRow.locator("code").textContent();
      assert.match(signingSecret, /^whsec_[A-Za-z0-9+/]+=*$/);
      assert.equal(hook.received.length, 1);
      const delivery = hook.received[0];
      assert.equal(delivery.method, "POST");
      assert.ok(verifyStandardWebhook(signingSecret, delivery), "the receiver verifies the signature");
      assert.ok(
        !verifyStandardWebhook(signingSecret, { ...delivery, body: `${delivery.body} ` }),
        "a changed body fails",
      );
      assert.equal(JSON.parse(delivery.body).type, "keywarden.test");
      await secretRow.getByRole("button", { name: "Hide" }).click();

      await page.getByRole("button", { name: "Add usage threshold" }).click();
      const usage = page.locator("fieldset", { has: page.locator("legend", { hasText: "Usage threshold" }) });
      await usage.getByLabel("Alert above (requests)").fill("10000");
      await usage.getByLabel("Pager").check();
      await page.getByRole("button", { name: "Add expiry warning" }).click();
      const expiry = page.locator("fieldset", { has: page.locator("legend", { hasText: "Expiry warning" }) });
      await expiry.getByLabel(/days before/).fill("14");
      await expiry.getByLabel("Pager").check();
      await shot(page, "5-monitoring");
      await page.getByRole("button", { name: "Save and continue to review" }).click();

      // Step 6: everything on one page, the honest checklist, then commit.
      await expectStep(page, 6, "Review and commit");
      const main = page.locator("main");
      for (const text of [
        "Enterprise",
        "production",
        "203.0.113.0/24, 198.51.100.7, 127.0.0.1",
        "Compliance checklist",
        "not a certification",
        "Pager — webhook",
      ]) {
        await main.getByText(text).first().waitFor();
      }
      await shot(page, "6-review");
      await page.getByRole("button", { name: "Commit setup" }).click();
      await page.getByRole("heading", { name: "Setup committed" }).waitFor();
      const committed = page.getByRole("region", { name: "Setup committed" });
      await committed.getByText("4 API keys").waitFor();
      await committed.getByText("2 credentials").waitFor();
      await committed.getByText("1 alert channel").waitFor();
      await committed.getByText("2 alert rules").waitFor();
      await shot(page, "7-committed");

      // Through the API: the wizard's commit summary, then every created thing.
      const state = await apiAs(kw, tenantA.adminKey, "GET", `/api/v1/wizard/${wizardId}`);
      assert.equal(state.status, 200);
      assert.equal(state.body.status, "committed");
      const created = state.body.commit.created;
      assert.equal(created.keys.length, 4);
      assert.equal(created.credentials.length, 2);
      assert.equal(created.channels.length, 1);
      assert.equal(created.rules.length, 2);
      assert.equal(created.policy, true);

      const keys = await apiAs(kw, tenantA.adminKey, "GET", "/api/v1/keys");
      assert.equal(keys.status, 200);
      const wizardKeys = keys.body.items.filter((k) => created.keys.includes(k.id));
      assert.equal(wizardKeys.length, 4);
      for (const k of wizardKeys) {
        assert.equal(k.security_level, "enterprise");
        assert.equal(k.environment, "live");
        assert.deepEqual(k.ip_allowlist, ["203.0.113.0/24", "198.51.100.7", "127.0.0.1"]);
        // A rotation policy schedules rotation; it is not an expiry.
        assert.equal(k.expires_at, null);
        assert.equal(k.rotation.policy_days, 90);
        assert.equal(k.rotation.state, "idle");
        const days = (Date.parse(k.rotation.next_rotation_at) - Date.now()) / 86_400_000;
        assert.ok(days > 89 && days <= 90, `rotates in ${days} days`);
      }
      assert.deepEqual(wizardKeys.map((k) => k.service_id).sort(), ["openai", "openai", "stripe", "stripe"]);
      assert.equal(wizardKeys.filter((k) => k.backup_of_id).length, 2);
      const starts = wizardKeys.map((k) => k.start);
      for (const plain of Object.values(generated)) assert.ok(starts.some((s) => plain.startsWith(s)));

      const creds = await apiAs(kw, tenantA.adminKey, "GET", "/api/v1/credentials");
      assert.equal(creds.status, 200);
      const wizardCreds = creds.body.items.filter((c) => created.credentials.includes(c.id));
      assert.deepEqual(wizardCreds.map((c) => c.service).sort(), ["openai", "stripe"]);
      for (const c of wizardCreds) assert.equal(c.environment, "production");
      assert.ok(
        !JSON.stringify(creds.body).includes(stripeKey) && !JSON.stringify(creds.body).includes(openaiKey),
      );
      // The committed enterprise policy requires 2FA: revealing now needs the admin key enrolled and a
      // fresh code, over Bearer as in a browser.
      const revealPath = `/api/v1/credentials/${wizardCreds.find((c) => c.service === "stripe").id}/reveal`;
      const refused = await apiAs(kw, tenantA.adminKey, "POST", revealPath, {});
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      const enrolled = await apiAs(kw, tenantA.adminKey, "POST", "/api/v1/auth/totp/enroll");
      assert.equal(enrolled.status, 201, JSON.stringify(enrolled.body));
      const step = Math.floor(Date.now() / 30_000);
      const confirmed = await apiAs(kw, tenantA.adminKey, "POST", "/api/v1/auth/totp/confirm", {
        code: totpCode(enrolled.body.secret, step),
      });
      assert.equal(confirmed.status, 200, JSON.stringify(confirmed.body));
      const revealed = await apiAs(kw, tenantA.adminKey, "POST", revealPath, {
        totp: totpCode(enrolled.body.secret, step + 1),
      });
      assert.equal(revealed.status, 200, JSON.stringify(revealed.body));
      assert.equal(revealed.body.fields.secret_key, stripeKey);

      // Policy and channel have no read route of their own; the audit log records both by id.
      const audit = await apiAs(kw, tenantA.adminKey, "GET", "/api/v1/audit");
      assert.equal(audit.status, 200);
      const events = audit.body.items;
      assert.ok(events.some((e) => e.action === "policy.update" && e.detail?.level === "enterprise"));
      assert.ok(events.some((e) => e.action === "channel.create" && e.target_id === created.channels[0]));
      assert.equal(events.filter((e) => e.action === "rule.create").length, 2);
      assert.deepEqual(state.body.steps.security.ip_allowlist, [
        "203.0.113.0/24",
        "198.51.100.7",
        "127.0.0.1",
      ]);
      assert.equal(state.body.steps.security.rotation_policy, "90_days");
      assert.equal(state.body.steps.monitoring.channels[0].url, hook.url);

      // Committing again is idempotent: the same summary, nothing new.
      const again = await apiAs(kw, tenantA.adminKey, "POST", `/api/v1/wizard/${wizardId}/commit`, {});
      assert.equal(again.status, 200);
      assert.deepEqual(again.body.state.commit, state.body.commit);
      assert.deepEqual(again.body.generated, {});
    });
  });

  test("a second tenant's admin cannot open the first tenant's wizard", { timeout: 60_000 }, async () => {
    assert.ok(wizardId, "the first test created a wizard");
    const api = await apiAs(kw, tenantB.adminKey, "GET", `/api/v1/wizard/${wizardId}`);
    assert.equal(api.status, 404);
    assert.equal(api.body.code, "NOT_FOUND");
    const nav = await apiAs(kw, tenantB.adminKey, "POST", `/api/v1/wizard/${wizardId}/navigate`, {
      step: "services",
    });
    assert.equal(nav.status, 404);

    await scenario("other-tenant", PHONE, async ({ page }) => {
      await page.goto(`/#wizard=${wizardId}`);
      await signIn(page, tenantB.adminKey);
      await page.getByRole("heading", { name: "Wizard not found" }).waitFor();
      await page.getByRole("alert").filter({ hasText: "belongs to another tenant" }).waitFor();
      assert.equal(new URL(page.url()).hash, "");
      await shot(page, "8-other-tenant");
      await page.getByRole("button", { name: "Start a new wizard" }).click();
      await expectStep(page, 1, "Choose services");
      assert.notEqual(new URL(page.url()).hash, `#wizard=${wizardId}`);
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByRole("heading", { name: "Sign in to the setup wizard" }).waitFor();
      await page.getByRole("alert").filter({ hasText: "You are signed out." }).waitFor();
      const after = await page.evaluate(() => fetch("/api/v1/auth/session").then((r) => r.status));
      assert.equal(after, 401);
    });
  });

  test("the seed's address /admin/wizards/api-key-management serves the same page with the same CSP", {
    timeout: 60_000,
  }, async () => {
    const [seed, root] = await Promise.all(
      ["/admin/wizards/api-key-management", "/"].map((path) =>
        fetch(`${kw.origin}${path}`, { redirect: "manual", signal: AbortSignal.timeout(10_000) }),
      ),
    );
    assert.equal(seed.status, 200);
    assert.equal(await seed.text(), await root.text());
    assert.match(seed.headers.get("content-security-policy"), /frame-ancestors 'none'/);
    assert.equal(seed.headers.get("content-security-policy"), root.headers.get("content-security-policy"));
    // In the browser its scripts load from the nested path under that CSP (a violation fails the scenario).
    await scenario("seed-path", DESKTOP, async ({ page }) => {
      await page.goto("/admin/wizards/api-key-management");
      await page.getByRole("heading", { name: "Sign in to the setup wizard" }).waitFor();
    });
  });
});

const DAY_MS = 86_400_000;
const verifyAs = async (adminKey, key) =>
  (await apiAs(kw, adminKey, "POST", "/api/v1/keys/verify", { key })).body;

/** The cron of wrangler.toml fired as `npm start` fires it, at a chosen (future) time. */
async function fastForwardTo(time) {
  const tick = await fireTick(kw.origin, crons[0], time);
  assert.ok(tick.ok, tick.line);
}

describe("an alert in operation: a rule fires, a signed webhook carries it, the console acknowledges it", {
  timeout: 120_000,
}, () => {
  test("a usage rule on a key fires on the cron after three verifications; the receiver verifies the webhook; an admin acknowledges the alert in the console", {
    timeout: 100_000,
  }, async () => {
    const tenant = await createTenant(kw, "Alerting tenant (e2e)");
    const channel = await apiAs(kw, tenant.adminKey, "POST", "/api/v1/monitoring/channels", {
      kind: "webhook",
      name: "On-call",
      url: hook.url,
    });
    assert.equal(channel.status, 201, JSON.stringify(channel.body));
    const signingSecret = channel.body.signing_secret;
    const issued = await apiAs(kw, tenant.adminKey, "POST", "/api/v1/keys", { name: "checkout" });
    assert.equal(issued.status, 201, JSON.stringify(issued.body));
    const rule = await apiAs(kw, tenant.adminKey, "POST", "/api/v1/monitoring/rules", {
      kind: "usage_threshold",
      name: "Checkout volume",
      settings: { window: "hour", threshold: 3, key_id: issued.body.id },
      channel_ids: [channel.body.channel.id],
      severity: "critical",
    });
    assert.equal(rule.status, 201, JSON.stringify(rule.body));
    for (let i = 0; i < 3; i++) assert.equal((await verifyAs(tenant.adminKey, issued.body.key)).valid, true);

    // The recorder flushes its counts off the response path: tick until the cron's evaluation sees them.
    const alert = await eventually(
      "the usage rule to fire on a cron tick",
      async () => {
        await fastForwardTo(Date.now());
        const list = await apiAs(kw, tenant.adminKey, "GET", "/api/v1/alerts?state=firing");
        const found = list.body.items?.find((a) => a.kind === "usage_threshold");
        return { done: Boolean(found), value: found ?? list.body };
      },
      { timeoutMs: 40_000, everyMs: 1_000 },
    );
    assert.deepEqual(alert.subject, { type: "key", id: issued.body.id });
    assert.equal(alert.severity, "critical");

    // The Queue consumer delivers it to the receiver, signed per Standard Webhooks.
    const delivery = await eventually("the alert's webhook at the receiver", async () => {
      const found = hook.received.find((r) => {
        const body = JSON.parse(r.body);
        return body.type === "alert.fired" && body.data?.alert?.id === alert.id;
      });
      return { done: Boolean(found), value: found ?? hook.received.length };
    });
    assert.ok(verifyStandardWebhook(signingSecret, delivery), "the receiver verifies the signature");
    assert.ok(
      !verifyStandardWebhook(signingSecret, { ...delivery, body: delivery.body.replace("critical", "info") }),
    );
    const payload = JSON.parse(delivery.body).data.alert;
    assert.equal(payload.url, `/console/#/alerts/${alert.id}`);
    assert.ok(!delivery.body.includes(issued.body.key), "the message carries no key material");

    await scenario("alerts", DESKTOP, async ({ page }) => {
      await page.goto(payload.url);
      await page.getByRole("heading", { name: "Sign in to the console" }).waitFor();
      await signIn(page, tenant.adminKey);
      await page.getByRole("heading", { name: payload.summary }).waitFor();
      await page.locator('[data-state="firing"]').waitFor();
      await page.getByRole("link", { name: "All alerts" }).click();
      const row = page.locator(`tr[data-alert="${alert.id}"]`);
      await row.waitFor();
      await shot(page, "10-console-alerts");
      await row.getByRole("button", { name: /^Acknowledge/ }).click();
      await page.getByText("No firing alerts.").waitFor();
      await page.getByRole("button", { name: "Acknowledged" }).click();
      await page.locator(`tr[data-alert="${alert.id}"]`).waitFor();
    });
    const acknowledged = await apiAs(kw, tenant.adminKey, "GET", `/api/v1/alerts/${alert.id}`);
    assert.equal(acknowledged.body.state, "acknowledged");
    assert.ok(acknowledged.body.acknowledged_at);
  });
});

describe("scheduled rotation of a wizard-issued key, fast-forwarded by the cron", {
  timeout: 120_000,
}, () => {
  test("an admin chooses every 30 days; 31 days on the key has rotated, and after the overlap the old key stops", {
    timeout: 90_000,
  }, async () => {
    const providerKey = `sk-proj-${randomAlnum(56)}`;
    let oldKey;
    let committedAt;
    let wizard;
    await scenario("rotation", DESKTOP, async ({ page }) => {
      await page.goto("/");
      await signIn(page, tenantC.adminKey);
      await expectStep(page, 1, "Choose services");
      await page.getByLabel("OpenAI", { exact: true }).check();
      await page.getByRole("button", { name: "Continue to security" }).click();

      await expectStep(page, 2, "Configure security");
      wizard = new URL(page.url()).hash.replace("#wizard=", "");
      assert.ok(await page.getByLabel("Enhanced", { exact: true }).isChecked());
      await page.getByLabel("Every 30 days").check();
      await page.getByRole("button", { name: "Save and continue to keys" }).click();

      await expectStep(page, 3, "Enter or generate keys");
      await page.getByLabel("API key", { exact: true }).fill(providerKey);
      await page.getByRole("button", { name: "Save OpenAI credentials" }).click();
      await page.locator("form.svc-keys").getByText("Saved", { exact: true }).waitFor();
      await page.getByRole("button", { name: "Continue to testing" }).click();

      await expectStep(page, 4, "Test and verify");
      standIn.accept(providerKey);
      await page.getByRole("button", { name: "Run live checks" }).click();
      await page.getByText("Done: 1 of 1 services passed their live check.").waitFor();
      await page.getByRole("button", { name: "Continue to monitoring" }).click();

      await expectStep(page, 5, "Set up monitoring");
      await page.getByRole("button", { name: "Save and continue to review" }).click();

      // The review states the schedule; the key itself is issued by the commit and shown once there.
      await expectStep(page, 6, "Review and commit");
      const security = page.getByRole("region", { name: "Security" });
      await security.locator("dd", { hasText: /^30 days$/ }).waitFor();
      committedAt = Date.now();
      await page.getByRole("button", { name: "Commit setup" }).click();
      await page.getByRole("heading", { name: "Setup committed" }).waitFor();
      const row = page.getByRole("group", { name: "OpenAI key", exact: true });
      await row.getByRole("button", { name: "Reveal" }).click();
      oldKey = await row.locator("code").textContent();
      assert.match(oldKey, /^kw_test_[0-9A-Za-z]{32,}$/);
      await shot(page, "9-rotation-committed");
    });

    // Committed: one key, on a 30-day schedule and without an expiry, that verifies.
    const state = await apiAs(kw, tenantC.adminKey, "GET", `/api/v1/wizard/${wizard}`);
    assert.equal(state.body.steps.security.rotation_policy, "30_days");
    const [oldId] = state.body.commit.created.keys;
    assert.equal(state.body.commit.created.keys.length, 1);
    const getKey = async (id) => {
      const res = await apiAs(kw, tenantC.adminKey, "GET", `/api/v1/keys/${id}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body;
    };
    const issued = await getKey(oldId);
    assert.equal(issued.expires_at, null);
    assert.equal(issued.rotation.policy_days, 30);
    assert.equal(issued.rotation.state, "idle");
    const dueAt = Date.parse(issued.rotation.next_rotation_at);
    assert.ok(dueAt >= committedAt + 30 * DAY_MS - 60_000 && dueAt <= Date.now() + 30 * DAY_MS);
    assert.equal((await verifyAs(tenantC.adminKey, oldKey)).valid, true);

    // Fast-forward 31 days: the tick claims the due key and its Workflow creates, tests and promotes the
    // successor, then waits out the overlap.
    const rotatedAt = Date.now() + 31 * DAY_MS;
    await fastForwardTo(rotatedAt);
    const rotating = await eventually(
      "the old key promoted to its successor and in its overlap",
      async () => {
        const key = await getKey(oldId);
        return {
          done: Boolean(key.rotated_to_id) && key.rotation.in_progress?.step === "overlap",
          value: key,
        };
      },
    );
    const successorId = rotating.rotated_to_id;
    assert.equal(rotating.rotation.state, "in_progress");
    const overlapEndsAt = Date.parse(rotating.rotation.in_progress.overlap_ends_at);
    assert.equal(overlapEndsAt, rotatedAt + DAY_MS, "the default overlap is one day of the cron's clock");
    const replaced = await eventually("verify to report replaced_by for the old key", async () => {
      const verdict = await verifyAs(tenantC.adminKey, oldKey);
      return { done: verdict.replaced_by === successorId, value: verdict };
    });
    assert.equal(replaced.valid, true, "the old key still verifies during the overlap");

    // The successor: same service scope, a fresh 30-day period from the rotation, no expiry.
    const successor = await getKey(successorId);
    assert.deepEqual(successor.scopes, issued.scopes);
    assert.equal(successor.expires_at, null);
    assert.equal(successor.rotation.policy_days, 30);
    assert.equal(Date.parse(successor.rotation.next_rotation_at), rotatedAt + 30 * DAY_MS);

    // No delivery endpoint: the successor waits sealed for one pickup, which the admin makes.
    const pickup = await apiAs(kw, tenantC.adminKey, "POST", `/api/v1/keys/${successorId}/pickup`);
    assert.equal(pickup.status, 200, JSON.stringify(pickup.body));
    assert.equal(pickup.body.key_id, successorId);
    const newKey = pickup.body.key;
    assert.match(newKey, /^kw_test_[0-9A-Za-z]{32,}$/);
    assert.notEqual(newKey, oldKey);
    const again = await apiAs(kw, tenantC.adminKey, "POST", `/api/v1/keys/${successorId}/pickup`);
    assert.equal(again.status, 404, "a pickup is once only");
    const fresh = await verifyAs(tenantC.adminKey, newKey);
    assert.equal(fresh.valid, true);
    assert.equal(fresh.key_id, successorId);

    // Fast-forward past the overlap: the tick ends it, the Workflow retires the old key.
    await fastForwardTo(overlapEndsAt);
    const stopped = await eventually("the old key to stop verifying", async () => {
      const verdict = await verifyAs(tenantC.adminKey, oldKey);
      return { done: verdict.valid === false, value: verdict };
    });
    assert.equal(stopped.code, "DISABLED");
    const retired = await eventually("the rotation run to complete", async () => {
      const key = await getKey(oldId);
      return { done: key.rotation.state === "idle", value: key };
    });
    assert.equal(retired.rotation.in_progress, undefined);
    assert.equal(retired.rotation.next_rotation_at, null, "a retired key is not scheduled again");
    const still = await verifyAs(tenantC.adminKey, newKey);
    assert.equal(still.valid, true, "the successor keeps verifying");
    assert.equal(still.replaced_by, undefined);

    // The tenant's event stream tells the story for the alerting engine.
    const events = await apiAs(kw, tenantC.adminKey, "GET", `/api/v1/events?subject_id=${oldId}`);
    assert.equal(events.status, 200, JSON.stringify(events.body));
    const kinds = events.body.items.map((e) => e.kind);
    assert.ok(kinds.includes("rotation.started") && kinds.includes("rotation.completed"), kinds.join(", "));
  });
});
