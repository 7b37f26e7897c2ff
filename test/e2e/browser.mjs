// Browser plumbing shared by the e2e files: a page that fails its test on a script error, a CSP violation or
// any request that leaves 127.0.0.1; screenshots at desktop and phone size; axe-core's accessibility check.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, SHOTS } from "./harness.mjs";

export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };
// Evaluated through the DevTools protocol: the page's CSP (script-src 'self') refuses an injected <script>.
const AXE_SOURCE = readFileSync(join(ROOT, "node_modules", "axe-core", "axe.min.js"), "utf8");

/**
 * A browser context on Keywarden's origin that records every problem the page runs into. `storageState`
 * (from `context.storageState()`) starts it signed in, without spending the per-client sign-in budget again.
 */
export async function openPage(browser, origin, viewport = DESKTOP, storageState = undefined) {
  const context = await browser.newContext({ viewport, baseURL: origin, storageState });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A 4xx/5xx answer is logged by Chromium as "Failed to load resource"; the tests provoke some on purpose.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
  });
  // Anything outside 127.0.0.1 would be a CDN or a leak: refuse it and remember it.
  await context.route(/^(?!http:\/\/127\.0\.0\.1[:/]).*/, (route) => {
    problems.push(`outside request: ${route.request().url()}`);
    return route.abort();
  });
  return { context, page, problems };
}

/** Runs a browser scenario; on failure it keeps a screenshot and the page's text for the report. */
export async function runScenario(browser, origin, name, viewport, fn, storageState = undefined) {
  const opened = await openPage(browser, origin, viewport, storageState);
  try {
    await fn(opened);
    assert.deepEqual(opened.problems, []);
  } catch (error) {
    await opened.page.screenshot({ path: join(SHOTS, `FAILED-${name}.png`), fullPage: true }).catch(() => {});
    const text = await opened.page
      .locator("body")
      .textContent()
      .catch(() => "");
    error.message += `\n--- page text ---\n${text.slice(0, 3000)}\n--- console ---\n${opened.problems.join("\n")}`;
    throw error;
  } finally {
    await opened.context.close();
  }
}

/** A full-page screenshot at the current size and at phone size, into test-results/e2e/. */
export async function shot(page, name) {
  const size = page.viewportSize();
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: join(SHOTS, `${name}.phone.png`), fullPage: true });
  await page.setViewportSize(size);
}

/**
 * axe-core (WCAG 2.x A and AA rules) on the page as it is now: fails with each serious or critical
 * violation and the elements it names. axe is loaded from node_modules, never from a CDN.
 */
export async function assertAccessible(page, what) {
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
      resultTypes: ["violations"],
    });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  assert.deepEqual(violations, [], `axe on ${what}`);
}
