/**
 * The shared probe runner's mechanics, with a made-up provider and an injected fetch, so each property is
 * shown on its own: the host allow-list, no redirects, the timeout, status classification, no leaks.
 */
import { describe, expect, it, vi } from "vitest";
import {
  DEFAULT_PROBE_TIMEOUT_MS,
  MAX_PROBE_BODY_BYTES,
  ProbeHostError,
  parseRetryAfter,
  runProbe,
} from "../../src/catalog/run-probe";
import type { ProbeRequest, ProbeResponse, ServiceDefinition } from "../../src/catalog/types";

const SECRET = "s3cr3t-Value-that-must-never-leak-0123";

function fakeService(
  request: Partial<ProbeRequest> = {},
  interpret?: (r: ProbeResponse) => ReturnType<ServiceDefinition["probe"]["interpret"]>,
): ServiceDefinition {
  return {
    id: "fake",
    name: "Fake",
    category: "infrastructure",
    description: "A provider made up for runner tests.",
    docs_url: "https://docs.fake.example/",
    fields: [
      { name: "token", label: "Token", secret: true, required: true, pattern: "^.+$", example: "EXAMPLE" },
    ],
    generatable: [],
    recommended_rotation_days: 90,
    probe_hosts: ["api.fake.example"],
    probe: {
      request: (fields) => ({
        method: "GET",
        url: "https://api.fake.example/v1/me",
        headers: { authorization: `Bearer ${fields.token}` },
        ...request,
      }),
      interpret:
        interpret ??
        ((response) =>
          response.status === 200
            ? { status: "valid", reason: "authenticated" }
            : { status: "unknown", reason: "unexpected_response" }),
    },
  };
}

function answering(response: () => Response) {
  return vi.fn<typeof fetch>(async () => response());
}

const FIELDS = { token: SECRET };

describe("the probe host allow-list (SSRF guard)", () => {
  const rejected = [
    ["a host outside the list", "https://attacker.example/v1/me"],
    ["a look-alike suffix", "https://api.fake.example.attacker.example/v1/me"],
    ["plain http", "http://api.fake.example/v1/me"],
    ["an explicit port", "https://api.fake.example:8443/v1/me"],
    ["userinfo in the URL", "https://user:pass@api.fake.example/v1/me"],
    ["an IP literal", "https://169.254.169.254/latest/meta-data"],
    ["not a URL at all", "api.fake.example/v1/me"],
  ] as const;

  it.each(rejected)("throws before fetching for %s", async (_what, url) => {
    const fetchSpy = answering(() => new Response("{}"));
    await expect(runProbe(fakeService({ url }), FIELDS, { fetch: fetchSpy })).rejects.toBeInstanceOf(
      ProbeHostError,
    );
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("never names the credential in the error it throws", async () => {
    const service = fakeService({ url: `https://attacker.example/?t=${SECRET}` });
    const error = await runProbe(service, FIELDS, { fetch: answering(() => new Response()) }).catch(
      (e: unknown) => e,
    );
    expect(String(error)).not.toContain(SECRET);
  });

  it("accepts a per-customer host only when it matches the service's pattern", async () => {
    const service = {
      ...fakeService({ url: "https://shop-1.fake-shops.example/x" }),
      probe_hosts: [],
      probe_host_pattern: "^[a-z0-9-]+\\.fake-shops\\.example$",
    };
    expect(await runProbe(service, FIELDS, { fetch: answering(() => new Response("{}")) })).toMatchObject({
      status: "valid",
    });
    const evil = {
      ...service,
      probe: {
        ...service.probe,
        request: () => ({
          method: "GET" as const,
          url: "https://a.b.fake-shops.example.evil/x",
          headers: {},
        }),
      },
    };
    await expect(runProbe(evil, FIELDS, { fetch: answering(() => new Response()) })).rejects.toBeInstanceOf(
      ProbeHostError,
    );
  });
});

describe("running a probe", () => {
  it("asks fetch not to follow redirects and to give up after the timeout", async () => {
    const fetchSpy = answering(() => new Response("{}"));
    await runProbe(fakeService(), FIELDS, { fetch: fetchSpy });
    const init = fetchSpy.mock.calls[0]?.[1];
    expect(init?.redirect).toBe("manual");
    expect(init?.signal).toBeInstanceOf(AbortSignal);
    expect(DEFAULT_PROBE_TIMEOUT_MS).toBe(5000);
  });

  it.each([301, 302, 303, 307, 308])("reports a %i redirect as unknown", async (status) => {
    const fetchSpy = answering(
      () => new Response(null, { status, headers: { location: "https://attacker.example/" } }),
    );
    expect(await runProbe(fakeService(), FIELDS, { fetch: fetchSpy })).toMatchObject({
      status: "unknown",
      reason: "redirect_not_followed",
    });
    expect(fetchSpy).toHaveBeenCalledTimes(1);
  });

  it("reports 401 as invalid without asking the provider file", async () => {
    const interpret = vi.fn(() => ({ status: "valid" as const, reason: "never" }));
    const result = await runProbe(fakeService({}, interpret), FIELDS, {
      fetch: answering(() => new Response("{}", { status: 401 })),
    });
    expect(result).toMatchObject({ status: "invalid", reason: "unauthorized", http_status: 401 });
    expect(interpret).not.toHaveBeenCalled();
  });

  it("reads an HTTP-date Retry-After relative to the injected clock", async () => {
    const now = Date.UTC(2026, 0, 1, 0, 0, 0);
    const retryAt = new Date(now + 90_000).toUTCString();
    const result = await runProbe(fakeService(), FIELDS, {
      fetch: answering(() => new Response(null, { status: 429, headers: { "retry-after": retryAt } })),
      now: () => now,
    });
    expect(result).toMatchObject({ status: "unknown", reason: "rate_limited", retry_after_s: 90 });
  });

  it("omits retry_after_s when a 429 carries no usable Retry-After", async () => {
    const result = await runProbe(fakeService(), FIELDS, {
      fetch: answering(() => new Response(null, { status: 429, headers: { "retry-after": "soon" } })),
    });
    expect(result).not.toHaveProperty("retry_after_s");
    expect(parseRetryAfter(null, 0)).toBeUndefined();
    expect(parseRetryAfter(" 12 ", 0)).toBe(12);
  });

  it("reports a network failure as unknown/network_error", async () => {
    const fetchSpy = vi.fn<typeof fetch>(async () => {
      throw new TypeError("Network connection lost.");
    });
    expect(await runProbe(fakeService(), FIELDS, { fetch: fetchSpy })).toMatchObject({
      status: "unknown",
      reason: "network_error",
    });
  });

  it("reports an abort from the timeout signal as unknown/timeout", async () => {
    const fetchSpy = vi.fn<typeof fetch>(
      (_input, init) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
        }),
    );
    expect(await runProbe(fakeService(), FIELDS, { fetch: fetchSpy, timeoutMs: 20 })).toMatchObject({
      status: "unknown",
      reason: "timeout",
    });
  });

  it("reports an interpreter that cannot read the answer as unknown", async () => {
    const service = fakeService({}, () => {
      throw new Error(`boom ${SECRET}`);
    });
    const result = await runProbe(service, FIELDS, { fetch: answering(() => new Response("not json")) });
    expect(result).toMatchObject({ status: "unknown", reason: "unexpected_response" });
    expect(JSON.stringify(result)).not.toContain(SECRET);
  });

  it("drops an account identity that echoes the submitted secret", async () => {
    const service = fakeService({}, () => ({
      status: "valid",
      reason: "authenticated",
      account: `user:${SECRET}`,
    }));
    const result = await runProbe(service, FIELDS, { fetch: answering(() => new Response("{}")) });
    expect(result.account).toBeNull();
    expect(JSON.stringify(result)).not.toContain(SECRET);
  });

  it("hands the interpreter at most 64 KiB of body, however much the provider sends", async () => {
    let seen = -1;
    const service = fakeService({}, (response) => {
      seen = response.text.length;
      return { status: "valid", reason: "authenticated" };
    });
    const huge = "a".repeat(MAX_PROBE_BODY_BYTES * 8);
    await runProbe(service, FIELDS, { fetch: answering(() => new Response(huge)) });
    expect(seen).toBe(MAX_PROBE_BODY_BYTES);
  });

  it("parses JSON bodies for the interpreter and leaves other bodies as text", async () => {
    const seen: unknown[] = [];
    const service = fakeService({}, (response) => {
      seen.push(response.json);
      return { status: "valid", reason: "authenticated" };
    });
    await runProbe(service, FIELDS, { fetch: answering(() => new Response('{"ok":true}')) });
    await runProbe(service, FIELDS, { fetch: answering(() => new Response("<xml/>")) });
    expect(seen).toEqual([{ ok: true }, undefined]);
  });

  it("measures latency with the injected clock", async () => {
    const times = [1_000, 1_250];
    const now = () => times.shift() ?? 1_250;
    const result = await runProbe(fakeService(), FIELDS, { fetch: answering(() => new Response("{}")), now });
    expect(result.latency_ms).toBe(250);
  });
});
