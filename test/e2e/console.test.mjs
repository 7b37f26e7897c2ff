// The operating console in a real browser (Debian's Chromium through playwright-core), against an isolated
// `wrangler dev`: every page passes axe-core and is photographed at desktop and phone size, and the journeys
// an admin makes after the wizard change what the API answers.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { assertAccessible, DESKTOP, PHONE, runScenario, shot } from "./browser.mjs";
import {
  apiAs,
  createTenant,
  launchBrowser,
  randomAlnum,
  startKeywarden,
  startProviderStandIn,
  startWebhookReceiver,
  stopAll,
  totpCode,
} from "./harness.mjs";

let kw;
let standIn;
let browser;
let tenant;
let enterprise;

before(
  async () => {
    standIn = await startProviderStandIn();
    kw = await startKeywarden({ standInOrigin: standIn.origin });
    // Every bootstrap call, sign-in and TOTP confirmation spends the per-client attempt budget (10 a minute,
    // wrangler.toml AUTH_ATTEMPT_LIMITER), and all of them come from 127.0.0.1: this file spends 8.
    tenant = await createTenant(kw, "Console tenant (e2e)");
    enterprise = await createTenant(kw, "Enterprise tenant (e2e)");
    browser = await launchBrowser();
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
/** The tenant admin's signed-in browser state, saved by the first scenario: later ones start signed in. */
let adminSession;
const asAdmin = (name, viewport, fn) => runScenario(browser, kw.origin, name, viewport, fn, adminSession);

async function signIn(page, key) {
  await page.getByLabel("Admin key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Opens a console section through its nav link and waits for the page's heading. */
async function openSection(page, link, heading) {
  await page
    .getByRole("navigation", { name: "Console" })
    .getByRole("link", { name: link, exact: true })
    .click();
  await page.getByRole("heading", { level: 1, name: heading }).waitFor();
  assert.equal(
    await page
      .getByRole("navigation", { name: "Console" })
      .getByRole("link", { name: link, exact: true })
      .getAttribute("aria-current"),
    "page",
  );
}

/** Waits until every part of the page has rendered what it fetched (no "Loading…" placeholder is left). */
async function loaded(page) {
  await page.waitForLoadState("networkidle");
  await page.waitForFunction(() => !document.getElementById("main")?.textContent?.includes("Loading…"));
}

const verify = async (key) => (await apiAs(kw, tenant.adminKey, "POST", "/api/v1/keys/verify", { key })).body;

describe("the console in a browser", { timeout: 400_000 }, () => {
  test("every page passes axe-core with no serious or critical violation, at desktop and phone size", {
    timeout: 120_000,
  }, async () => {
    // Something on every page: a key, a credential, a channel with a rule.
    const stripeKey = `sk_live_${randomAlnum(32)}`;
    standIn.accept(stripeKey);
    const stored = await apiAs(kw, tenant.adminKey, "POST", "/api/v1/credentials", {
      service: "stripe",
      environment: "production",
      name: "Tour",
      fields: { secret_key: stripeKey },
    });
    assert.equal(stored.status, 201, JSON.stringify(stored.body));
    const issued = await apiAs(kw, tenant.adminKey, "POST", "/api/v1/keys", { name: "tour key" });
    assert.equal(issued.status, 201, JSON.stringify(issued.body));
    assert.equal((await verify(issued.body.key)).valid, true);

    await scenario("tour", DESKTOP, async ({ context, page }) => {
      await page.goto("/console/");
      await page.getByRole("heading", { name: "Sign in to the console" }).waitFor();
      await assertAccessible(page, "sign-in (desktop)");
      await page.setViewportSize(PHONE);
      await assertAccessible(page, "sign-in (phone)");
      await page.setViewportSize(DESKTOP);
      await signIn(page, tenant.adminKey);
      await page.getByRole("heading", { level: 1, name: "Alerts" }).waitFor();
      adminSession = await context.storageState();
      for (const [viewport, size] of [
        [DESKTOP, "desktop"],
        [PHONE, "phone"],
      ]) {
        await page.setViewportSize(viewport);
        for (const [link, heading] of [
          ["Keys", "Keys"],
          ["Credentials", "Credentials"],
          ["Alerts", "Alerts"],
          ["Channels and rules", "Channels and rules"],
          ["Audit", "Audit log"],
          ["Security", "Security"],
        ]) {
          await openSection(page, link, heading);
          await loaded(page);
          await assertAccessible(page, `${heading} (${size})`);
          if (viewport === DESKTOP) await shot(page, `console-${link.toLowerCase().replaceAll(" ", "-")}`);
        }
        // The pages an alert message links to.
        for (const [hash, heading] of [
          [`#/keys/${issued.body.id}`, "Key tour key"],
          [`#/credentials/${stored.body.id}`, "Credential Tour"],
        ]) {
          await page.goto(`/console/${hash}`);
          await page.getByRole("heading", { level: 1, name: heading }).waitFor();
          await loaded(page);
          await assertAccessible(page, `${heading} (${size})`);
        }
      }
    });
  });

  test("an admin whose tenant requires 2FA, not yet enrolled, enrolls at sign-in and is signed in", {
    timeout: 90_000,
  }, async () => {
    const policy = await apiAs(kw, enterprise.adminKey, "PUT", "/api/v1/security-policy", {
      security_level: "enhanced",
      environment: "production",
      rotation_policy: "90_days",
      require_2fa: true,
    });
    assert.equal(policy.status, 200, JSON.stringify(policy.body));
    await scenario("totp-at-sign-in", PHONE, async ({ page }) => {
      await page.goto("/console/");
      await signIn(page, enterprise.adminKey);
      await page.getByRole("heading", { name: "Set up two-factor sign-in" }).waitFor();
      await page.getByRole("button", { name: "Set up two-factor sign-in" }).click();
      await page.getByRole("img", { name: /QR code/ }).waitFor();
      await assertAccessible(page, "enrollment at sign-in");
      await shot(page, "console-sign-in-enroll");
      const secret = (await page.locator("[data-secret]").textContent()).replaceAll(/\s/g, "");
      const step = Math.floor(Date.now() / 30_000);
      await page.getByLabel("Code from your authenticator app").fill(totpCode(secret, step));
      await page.getByRole("button", { name: "Confirm enrollment" }).click();
      // Confirmed, the offer closes and the sign-in form asks for the next code.
      await page.getByRole("heading", { name: "Set up two-factor sign-in" }).waitFor({ state: "detached" });
      await page.getByLabel("Two-factor code").fill(totpCode(secret, step + 1));
      await page.getByLabel("Admin key").fill(enterprise.adminKey);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { level: 1, name: "Alerts" }).waitFor();
    });
    const session = await apiAs(kw, enterprise.adminKey, "GET", "/api/v1/auth/session");
    assert.equal(session.body.totp_enrolled, true, JSON.stringify(session.body));
  });

  test("an admin creates, rotates and revokes a key in the console, and verify follows each step", {
    timeout: 120_000,
  }, async () => {
    await asAdmin("keys", DESKTOP, async ({ page }) => {
      await page.goto("/console/#/keys");
      await page.getByRole("heading", { level: 1, name: "Keys" }).waitFor();
      await page.getByRole("button", { name: "Create a key" }).click();
      const form = page.getByRole("form", { name: "Create a key" });
      await form.getByLabel("Name", { exact: true }).fill("checkout service");
      await form.getByLabel("Custom scopes").fill("orders:read");
      await form.getByRole("button", { name: "Create key" }).click();
      await page.getByRole("heading", { name: "Key “checkout service” created" }).waitFor();
      // Shown once: copied from the page, as an admin would.
      await page.getByRole("group", { name: "New key" }).getByRole("button", { name: "Copy" }).click();
      const first = await page.evaluate(() => navigator.clipboard.readText());
      const created = await verify(first);
      assert.equal(created.valid, true, JSON.stringify(created));
      assert.ok(created.scopes.includes("orders:read"));

      await page.getByRole("link", { name: "Open the new key" }).click();
      await page.getByRole("heading", { level: 1, name: "Key checkout service" }).waitFor();
      await page.locator("section[data-chart=usage] svg[role=img]").waitFor();
      await shot(page, "console-key");
      await page.getByRole("button", { name: "Rotate now…" }).click();
      const rotate = page.getByRole("form", { name: "Rotate the key" });
      await rotate.getByLabel("Overlap (hours)", { exact: true }).fill("1");
      await rotate.getByRole("button", { name: "Rotate key" }).click();
      await page.getByRole("heading", { name: "Key rotated" }).waitFor();
      await page.getByRole("group", { name: "New key" }).getByRole("button", { name: "Copy" }).click();
      const second = await page.evaluate(() => navigator.clipboard.readText());
      assert.notEqual(second, first);
      // During the overlap both verify; the old one names its successor.
      const [old, next] = [await verify(first), await verify(second)];
      assert.equal(old.valid, true, JSON.stringify(old));
      assert.equal(old.replaced_by, next.key_id);
      assert.equal(next.valid, true, JSON.stringify(next));

      await page.getByRole("link", { name: "Open the new key" }).click();
      await page.getByRole("button", { name: "Revoke this key" }).click();
      await page.getByRole("button", { name: "Revoke key" }).click();
      await page
        .locator("#live")
        .filter({ hasText: /revoked/i })
        .waitFor();
      const revoked = await verify(second);
      assert.equal(revoked.valid, false);
      assert.equal(revoked.code, "DISABLED");
    });
  });

  test("an admin tests a credential, sees its new version fail, and rolls it back in the console", {
    timeout: 120_000,
  }, async () => {
    const [good, bad] = [`sk_live_${randomAlnum(32)}`, `sk_live_${randomAlnum(32)}`];
    standIn.accept(good);
    const created = await apiAs(kw, tenant.adminKey, "POST", "/api/v1/credentials", {
      service: "stripe",
      environment: "production",
      name: "Payments",
      fields: { secret_key: good },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id;
    // A second version the provider does not know, as after a botched manual change.
    const current = await fetch(`${kw.origin}/api/v1/credentials/${id}`, {
      headers: { authorization: `Bearer ${tenant.adminKey}` },
    });
    const changed = await fetch(`${kw.origin}/api/v1/credentials/${id}`, {
      method: "PATCH",
      headers: {
        authorization: `Bearer ${tenant.adminKey}`,
        "content-type": "application/json",
        "if-match": current.headers.get("etag"),
      },
      body: JSON.stringify({ fields: { secret_key: bad } }),
    });
    assert.equal(changed.status, 200, await changed.text());

    await asAdmin("credentials", DESKTOP, async ({ page }) => {
      await page.goto(`/console/#/credentials/${id}`);
      await page.getByRole("heading", { level: 1, name: "Credential Payments" }).waitFor();
      await page.getByRole("button", { name: "Test now" }).click();
      await page
        .locator("#live")
        .filter({ hasText: /^Live test: invalid/ })
        .waitFor();
      await shot(page, "console-credential");
      await page.getByRole("button", { name: "Roll back to version 1" }).click();
      await page
        .locator("#live")
        .filter({ hasText: /^Rolled back/ })
        .waitFor();
      await page.getByRole("button", { name: "Test now" }).click();
      await page
        .locator("#live")
        .filter({ hasText: /^Live test: valid/ })
        .waitFor();
    });
    const revealed = await apiAs(kw, tenant.adminKey, "POST", `/api/v1/credentials/${id}/reveal`, {});
    assert.equal(revealed.body.fields.secret_key, good, "the rolled-back value is current again");
  });

  test("an admin adds a webhook channel and a rule, sends a test, and reads the delivery log, the audit chain and a compliance report", {
    timeout: 120_000,
  }, async () => {
    const hook = await startWebhookReceiver();
    await asAdmin("monitoring", DESKTOP, async ({ page }) => {
      await page.goto("/console/#/monitoring");
      await page.getByRole("heading", { level: 1, name: "Channels and rules" }).waitFor();
      await page.getByRole("button", { name: "Add channel" }).click();
      const channelForm = page.getByRole("form", { name: "New channel" });
      await channelForm.getByLabel("Kind").selectOption("webhook");
      await channelForm.getByLabel("Channel name").fill("On-call");
      await channelForm.getByLabel("Webhook URL (https)").fill(hook.url);
      await channelForm.getByRole("button", { name: "Add channel" }).click();
      await page.getByRole("group", { name: "On-call signing secret" }).waitFor();
      const channelRow = page.locator("tr[data-channel]", { hasText: "On-call" });
      await channelRow.getByRole("button", { name: "Send test to On-call" }).click();
      await channelRow.getByText("Test delivered (HTTP 204).").waitFor();
      assert.equal(hook.received.length, 1);

      await page.getByRole("button", { name: "Add rule" }).click();
      const ruleForm = page.getByRole("form", { name: "New rule" });
      await ruleForm.getByLabel("Kind").selectOption("usage_threshold");
      await ruleForm.getByLabel("Rule name").fill("Checkout volume");
      await ruleForm.getByLabel("Requests in the window").fill("100");
      await ruleForm.getByRole("group", { name: "Notify" }).getByLabel("On-call").check();
      await ruleForm.getByRole("button", { name: "Add rule" }).click();
      await page.locator("tr[data-rule]", { hasText: "Checkout volume" }).waitFor();
      await shot(page, "console-monitoring");

      await channelRow.getByRole("link", { name: "On-call" }).click();
      await page.getByRole("heading", { name: "Delivery log" }).waitFor();
      // A test send is not an alert's delivery: the log stays empty until a rule fires.
      await page.getByText("No deliveries yet.").waitFor();
      await assertAccessible(page, "channel page");
      await shot(page, "console-channel");

      await openSection(page, "Audit", "Audit log");
      await page.locator("[data-chain=ok]").waitFor();
      await page.getByLabel("Action").fill("channel");
      await page.getByRole("button", { name: "Apply filters" }).click();
      await page.locator("tr[data-seq]").first().waitFor();
      const actions = await page.locator("tr[data-seq] code").allTextContents();
      assert.ok(actions.length > 0 && actions.every((a) => a.startsWith("channel.")), actions.join(", "));

      await openSection(page, "Security", "Security");
      await page.getByLabel("Standard").selectOption("soc2");
      await page.getByRole("button", { name: "Show report" }).click();
      await page.locator("[data-report=soc2] tbody tr").first().waitFor();
      await shot(page, "console-security-report");
    });
    const rules = await apiAs(kw, tenant.adminKey, "GET", "/api/v1/monitoring/rules");
    const rule = rules.body.items.find((r) => r.name === "Checkout volume");
    const channels = await apiAs(kw, tenant.adminKey, "GET", "/api/v1/monitoring/channels");
    assert.deepEqual(rule.channel_ids, [channels.body.items.find((c) => c.name === "On-call").id]);
    assert.equal(rule.settings.threshold, 100);
  });

  // Last: from here on the tenant admin's key needs a code for every sign-in and step-up.
  test("an admin enrolls TOTP from the QR code's secret on the Security page; the next sign-in needs a code", {
    timeout: 90_000,
  }, async () => {
    await asAdmin("totp-enroll", DESKTOP, async ({ page }) => {
      await page.goto("/console/#/security");
      await page.getByRole("heading", { level: 1, name: "Security" }).waitFor();
      await page.getByRole("button", { name: "Enroll two-factor sign-in" }).click();
      await page.getByRole("img", { name: /QR code/ }).waitFor();
      const secret = (await page.locator("[data-secret]").textContent()).replaceAll(/\s/g, "");
      assert.match(secret, /^[A-Z2-7]{32,}$/);
      await assertAccessible(page, "TOTP enrollment");
      await shot(page, "console-security-enroll");
      const step = Math.floor(Date.now() / 30_000);
      await page.getByLabel("Code from your authenticator app").fill(totpCode(secret, step));
      await page.getByRole("button", { name: "Confirm enrollment" }).click();
      await page.locator("[data-totp=enrolled]").waitFor();

      const session = await apiAs(kw, tenant.adminKey, "GET", "/api/v1/auth/session");
      assert.equal(session.body.totp_enrolled, true, JSON.stringify(session.body));

      // Signed out and back in, the code of the next time step is accepted (each step is accepted once).
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.goto("/console/#/security");
      await page.getByLabel("Admin key").fill(tenant.adminKey);
      await page.getByLabel("Two-factor code").fill(totpCode(secret, step + 1));
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator("[data-totp=enrolled]").waitFor();
    });
  });
});
