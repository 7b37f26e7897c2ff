/**
 * The SSRF guard's tightening for alert delivery (threat model case 31). test/security/outbound-urls.test.ts
 * holds the full list of refused spellings; this file adds the ranges and names this round refuses, the
 * port rule as it applies to channels, and what `deliver` does with a redirect and a receiver that hangs.
 */
import { delay, HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { assertDeliverableUrl, DELIVERY_TIMEOUT_MS, deliver } from "../../src/monitoring/outbound-url";
import { network } from "../setup/network";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

describe("outbound URLs refuse every literal spelling of internal addresses (threat model case 31)", () => {
  it.each([
    // SIIT IPv4-translated form (::ffff:0:a.b.c.d) of loopback, metadata and a private address
    "https://[::ffff:0:127.0.0.1]/hook",
    "https://[::ffff:0:7f00:1]/hook",
    "https://[::ffff:0:a9fe:a9fe]/latest/meta-data/",
    "https://[::ffff:0:10.1.2.3]/hook",
    // 6to4 relay anycast, SRv6 segment identifiers
    "https://192.88.99.1/hook",
    "https://[5f00::1]/hook",
    // decimal, octal and hex spellings of loopback and metadata, and the IPv4-mapped IPv6 forms
    "https://2130706433/hook",
    "https://0177.0.0.01/hook",
    "https://0x7f.0x0.0x0.0x1/hook",
    "https://0xA9FEA9FE/latest/meta-data/",
    "https://[::ffff:169.254.169.254]/latest/meta-data/",
    // Oracle Cloud's metadata address
    "https://192.0.0.192/opc/v2/instance/",
    // names that only resolve inside a network
    "https://printer.lan/hook",
    "https://wiki.intranet/hook",
    "https://build.corp/hook",
    "https://nas.home/hook",
    "https://vault.private/hook",
    "https://hidden.onion/hook",
    "https://hooks.example.invalid/hook",
  ])("refuses %s", (url) => {
    expect(() => assertDeliverableUrl(url, false)).toThrow();
  });

  it("allows https on 8443 and refuses 8080, with or without the local loopback switch", () => {
    expect(assertDeliverableUrl("https://hooks.example.com:8443/x", false).port).toBe("8443");
    expect(() => assertDeliverableUrl("https://hooks.example.com:8080/x", false)).toThrow(
      "must use port 443 or 8443",
    );
    expect(() => assertDeliverableUrl("https://hooks.example.com:8080/x", true)).toThrow();
  });

  it("still accepts public names whose labels merely look internal", () => {
    for (const url of [
      "https://lan.example.com/x",
      "https://corp.example.org/x",
      "https://home.depot.com/x",
    ]) {
      expect(assertDeliverableUrl(url, false).hostname).toBe(new URL(url).hostname);
    }
  });
});

describe("deliver: no redirects, bounded time, the answer never read", () => {
  it("does not follow a redirect: the attempt fails and the redirect target is never called", async () => {
    let targetCalled = false;
    network.use(
      http.post(
        "https://hooks.example.com/moved",
        () =>
          new HttpResponse(null, { status: 307, headers: { location: "https://169.254.169.254/latest/" } }),
      ),
      http.post("https://169.254.169.254/latest/", () => {
        targetCalled = true;
        return new HttpResponse(null, { status: 204 });
      }),
    );

    const result = await deliver(new URL("https://hooks.example.com/moved"), { body: "{}" });

    expect(result).toEqual({ delivered: false, status: 307, reason: "redirect_not_followed" });
    expect(targetCalled).toBe(false);
  });

  it(`gives up on a receiver that never answers (default ${DELIVERY_TIMEOUT_MS} ms; shortened here)`, async () => {
    network.use(http.post("https://hooks.example.com/hangs", async () => delay("infinite")));

    const result = await deliver(
      new URL("https://hooks.example.com/hangs"),
      { body: "{}" },
      { timeoutMs: 20 },
    );

    expect(result).toEqual({ delivered: false, reason: "timeout" });
  });

  it("keeps a rejection's status and a fixed reason, not the answer's text", async () => {
    network.use(
      http.post(
        "https://hooks.example.com/no",
        () => new HttpResponse("token=abc123 rejected", { status: 401 }),
      ),
    );

    const result = await deliver(new URL("https://hooks.example.com/no"), { body: "{}" });

    expect(result).toEqual({ delivered: false, status: 401, reason: "rejected" });
  });
});
