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
});
