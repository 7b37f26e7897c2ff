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
  stopAll,
  totpCode,
} from "./harness.mjs";

let kw;
let standIn;
let browser;
let tenant;

before(
  async () => {
    standIn = await startProviderStandIn();
    kw = await startKeywarden({ standInOrigin: standIn.origin });
    tenant = await createTenant(kw, "Console tenant (e2e)");
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
      fields: { secret_key: stripeKey },
    });
    assert.equal(stored.status, 201, JSON.stringify(stored.body));
    const issued = await apiAs(kw, tenant.adminKey, "POST", "/api/v1/keys", { name: "tour key" });
    assert.equal(issued.status, 201, JSON.stringify(issued.body));
    assert.equal((await verify(issued.body.key)).valid, true);

    for (const viewport of [DESKTOP, PHONE]) {
      const size = viewport === DESKTOP ? "desktop" : "phone";
      await scenario(`tour-${size}`, viewport, async ({ page }) => {
        await page.goto("/console/");
        await page.getByRole("heading", { name: "Sign in to the console" }).waitFor();
        await assertAccessible(page, `sign-in (${size})`);
        await signIn(page, tenant.adminKey);
        await page.getByRole("heading", { level: 1, name: "Alerts" }).waitFor();
        for (const [link, heading] of [
          ["Keys", "Keys"],
          ["Credentials", "Credentials"],
          ["Alerts", "Alerts"],
          ["Channels and rules", "Channels and rules"],
          ["Audit", "Audit log"],
          ["Security", "Security"],
        ]) {
          await openSection(page, link, heading);
          await page.waitForLoadState("networkidle");
          await assertAccessible(page, `${heading} (${size})`);
          if (viewport === DESKTOP) await shot(page, `console-${link.toLowerCase().replaceAll(" ", "-")}`);
        }
      });
    }
  });

  test("an admin enrolls TOTP from the QR code's secret on the Security page; the next sign-in needs a code", {
    timeout: 90_000,
  }, async () => {
    const admin = await createTenant(kw, "2FA tenant (e2e)");
    await scenario("totp-enroll", DESKTOP, async ({ page }) => {
      await page.goto("/console/#/security");
      await page.getByRole("heading", { name: "Sign in to the console" }).waitFor();
      await signIn(page, admin.adminKey);
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

      // The key has a second factor now: the API refuses a sign-in without a code.
      const bare = await fetch(`${kw.origin}/api/v1/auth/session`, {
        method: "POST",
        headers: { "content-type": "application/json", origin: kw.origin },
        body: JSON.stringify({ key: admin.adminKey }),
      });
      assert.equal(bare.status, 401);

      // Signed out and back in, the code of the next time step is accepted (each step is accepted once).
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.goto("/console/#/security");
      await page.getByLabel("Admin key").fill(admin.adminKey);
      await page.getByLabel("Two-factor code").fill(totpCode(secret, step + 1));
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator("[data-totp=enrolled]").waitFor();
    });
  });

  test("an admin whose tenant requires 2FA, not yet enrolled, enrolls at sign-in and is signed in", {
    timeout: 90_000,
  }, async () => {
    const admin = await createTenant(kw, "Enterprise tenant (e2e)");
    const policy = await apiAs(kw, admin.adminKey, "PUT", "/api/v1/security-policy", {
      security_level: "enhanced",
      environment: "production",
      rotation_policy: "90_days",
      require_2fa: true,
    });
    assert.equal(policy.status, 200, JSON.stringify(policy.body));
    await scenario("totp-at-sign-in", PHONE, async ({ page }) => {
      await page.goto("/console/");
      await signIn(page, admin.adminKey);
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
      await page.getByLabel("Admin key").fill(admin.adminKey);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { level: 1, name: "Alerts" }).waitFor();
    });
    const session = await apiAs(kw, admin.adminKey, "GET", "/api/v1/auth/session");
    assert.equal(session.body.totp_enrolled, true, JSON.stringify(session.body));
  });
});
