import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { SEED_WIZARD_PATH } from "../../src/routes/seed-pages";
import { BASE, call } from "../helpers/api";

describe("the seed's wizard address /admin/wizards/api-key-management", () => {
  it("answers 200 with the wizard page itself, byte for byte the page served at /, not a redirect", async () => {
    const response = await call("GET", SEED_WIZARD_PATH);
    expect(response.status).toBe(200);
    expect(response.headers.get("location")).toBeNull();
    expect(response.headers.get("content-type")).toMatch(/^text\/html\b/);
    const html = await response.text();
    expect(html).toContain("<title>Keywarden setup wizard</title>");
    // Absolute asset references, so the page loads its script and styles from this nested path too.
    expect(html).toContain('<script type="module" src="/app/main.js"></script>');
    expect(html).toContain('<link rel="stylesheet" href="/app/app.css">');
    const root = await env.ASSETS.fetch(new Request(`${BASE}/`));
    expect(html).toBe(await root.text());
  });

  it("carries the app's CSP with frame-ancestors 'none' and the other security headers (clickjacking)", async () => {
    const page = await call("GET", SEED_WIZARD_PATH);
    const csp = page.headers.get("content-security-policy");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("object-src 'none'");
    // The same policy the worker sets on its own answers.
    const health = await call("GET", "/healthz");
    expect(csp).toBe(health.headers.get("content-security-policy"));
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    expect(page.headers.get("referrer-policy")).toBe("no-referrer");
    expect(page.headers.get("strict-transport-security")).toBe("max-age=63072000; includeSubDomains");
  });
});
