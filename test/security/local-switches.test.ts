import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { providerFetch } from "../../src/credentials/provider-fetch";
import { assertDeliverableUrl } from "../../src/monitoring/outbound-url";

describe("local-only switches are off in the production configuration", () => {
  it("leaves PROVIDER_STANDIN_ORIGIN and ALLOW_LOOPBACK_WEBHOOKS unset in wrangler.toml's environment", () => {
    // The test environment is wrangler.toml's, plus only the test secrets vitest.config.ts adds.
    const bindings = env as unknown as Record<string, unknown>;
    expect(bindings.PROVIDER_STANDIN_ORIGIN).toBeUndefined();
    expect(bindings.ALLOW_LOOPBACK_WEBHOOKS).toBeUndefined();
  });

  it("sends provider probes to the real provider host when no stand-in is configured", async () => {
    const spy = vi.spyOn(globalThis, "fetch").mockResolvedValue(new Response("{}"));
    await providerFetch({})("https://api.stripe.com/v1/balance", { method: "GET" });
    expect(String(spy.mock.calls[0]?.[0])).toBe("https://api.stripe.com/v1/balance");
    spy.mockRestore();
  });

  it("routes probes to the stand-in only when it is set, and only to loopback", async () => {
    const spy = vi.spyOn(globalThis, "fetch").mockResolvedValue(new Response("{}"));
    await providerFetch({ PROVIDER_STANDIN_ORIGIN: "http://127.0.0.1:9999" })(
      "https://api.stripe.com/v1/balance?x=1",
    );
    expect(String(spy.mock.calls[0]?.[0])).toBe("http://127.0.0.1:9999/api.stripe.com/v1/balance?x=1");
    spy.mockRestore();
    expect(() => providerFetch({ PROVIDER_STANDIN_ORIGIN: "https://attacker.example" })).toThrow(/loopback/);
  });

  it("refuses loopback webhooks unless the local switch is on", () => {
    expect(() => assertDeliverableUrl("http://127.0.0.1:8080/hook", false)).toThrow();
    expect(assertDeliverableUrl("http://127.0.0.1:8080/hook", true).host).toBe("127.0.0.1:8080");
    expect(() => assertDeliverableUrl("http://10.0.0.1/hook", true)).toThrow();
  });
});
