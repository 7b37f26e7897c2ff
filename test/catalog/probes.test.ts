/**
 * Every provider probe against a stand-in of that provider's documented endpoint (MSW inside workerd), in
 * the five outcomes the issue names, plus the security properties of the shared runner.
 */
import { delay, HttpResponse, type HttpResponseResolver, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { findService, SERVICE_CATALOG } from "../../src/catalog";
import {
  ProbeHostError,
  type ProbeResult,
  type RunProbeOptions,
  runProbe,
} from "../../src/catalog/run-probe";
import type { ServiceDefinition } from "../../src/catalog/types";
import { network } from "../setup/network";
import { BASE64, goodFields, randomChars } from "./samples";
import { type ReceivedRequest, STAND_INS, type StandIn } from "./stand-ins";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

function service(id: string): ServiceDefinition {
  const found = findService(id);
  if (!found) throw new Error(`no service ${id}`);
  return found;
}

function standIn(id: string): StandIn {
  const found = STAND_INS.find((entry) => entry.service === id);
  if (!found) throw new Error(`no stand-in for ${id}`);
  return found;
}

function route(entry: StandIn, resolver: HttpResponseResolver) {
  return entry.method === "GET" ? http.get(entry.url, resolver) : http.post(entry.url, resolver);
}

async function copyRequest(request: {
  method: string;
  url: string;
  headers: { forEach(callback: (value: string, name: string) => void): void };
  arrayBuffer(): Promise<ArrayBuffer>;
}): Promise<ReceivedRequest> {
  const headers: Record<string, string> = {};
  request.headers.forEach((value, name) => {
    headers[name.toLowerCase()] = value;
  });
  return {
    method: request.method,
    url: new URL(request.url),
    headers,
    body: new TextDecoder().decode(await request.arrayBuffer()),
  };
}

function probe(entry: StandIn, options: RunProbeOptions = {}, fields = entry.fields): Promise<ProbeResult> {
  return runProbe(service(entry.service), fields, {
    environment: entry.environment ?? "production",
    timeoutMs: 2000,
    ...options,
  });
}

/** No outcome may carry a secret field's value (docs/threat-model.md: never write plaintext secrets anywhere). */
function expectNoSecrets(result: ProbeResult, entry: StandIn, fields = entry.fields): void {
  const text = JSON.stringify(result);
  for (const field of service(entry.service).fields) {
    const value = fields[field.name];
    if (field.secret && value) expect(text).not.toContain(value);
  }
}

it("has a stand-in for every catalogue entry", () => {
  const covered = STAND_INS.map((entry) => entry.service).sort();
  expect(covered).toEqual(SERVICE_CATALOG.map((entry) => entry.id).sort());
});

describe.each(STAND_INS.map((entry) => [entry.service, entry] as const))("%s probe", (_id, entry) => {
  it("sends the documented request and reports a working credential", async () => {
    let received: ReceivedRequest | undefined;
    network.use(
      route(entry, async ({ request }) => {
        received = await copyRequest(request);
        return entry.valid();
      }),
    );
    const result = await probe(entry);
    expect(result).toMatchObject({ ...entry.validResult, http_status: entry.validResult.http_status ?? 200 });
    expect(result.latency_ms).toBeGreaterThanOrEqual(0);
    if (!received) throw new Error("the stand-in received nothing");
    expect(received.method).toBe(entry.method);
    entry.expectRequest(received, entry.fields);
    expectNoSecrets(result, entry);
  });

  it("reports a credential the provider rejects (its documented error) as invalid", async () => {
    network.use(route(entry, () => entry.invalid()));
    const result = await probe(entry);
    expect(result).toMatchObject(entry.invalidResult);
    expectNoSecrets(result, entry);
  });

  it("reports 429 as unknown/rate_limited, with the provider's retry-after", async () => {
    network.use(
      route(entry, () =>
        HttpResponse.json({ error: "rate limited" }, { status: 429, headers: { "retry-after": "30" } }),
      ),
    );
    expect(await probe(entry)).toMatchObject({
      status: "unknown",
      reason: "rate_limited",
      retry_after_s: 30,
      http_status: 429,
    });
  });

  it("reports a 5xx as unknown/provider_error, never as invalid", async () => {
    network.use(route(entry, () => new HttpResponse("upstream unavailable", { status: 503 })));
    expect(await probe(entry)).toMatchObject({
      status: "unknown",
      reason: "provider_error",
      http_status: 503,
    });
  });

  it("reports a provider slower than the timeout as unknown/timeout", async () => {
    network.use(
      route(entry, async () => {
        await delay(1000);
        return entry.valid();
      }),
    );
    const result = await probe(entry, { timeoutMs: 50 });
    expect(result).toMatchObject({ status: "unknown", reason: "timeout" });
    expect(result.http_status).toBeUndefined();
  });

  it("does not follow a redirect, even to a host that would answer", async () => {
    let redirected = 0;
    network.use(
      route(
        entry,
        () =>
          new HttpResponse(null, { status: 302, headers: { location: "https://attacker.example/collect" } }),
      ),
      http.all("https://attacker.example/*", () => {
        redirected++;
        return entry.valid();
      }),
    );
    expect(await probe(entry)).toMatchObject({
      status: "unknown",
      reason: "redirect_not_followed",
      http_status: 302,
    });
    expect(redirected).toBe(0);
  });

  it("never contacts its host once that host is off the allow-list", async () => {
    const fetchSpy = vi.fn<typeof fetch>();
    const fenced: ServiceDefinition = {
      ...service(entry.service),
      probe_hosts: [],
      probe_host_pattern: undefined,
    };
    await expect(runProbe(fenced, entry.fields, { fetch: fetchSpy })).rejects.toBeInstanceOf(ProbeHostError);
    expect(fetchSpy).not.toHaveBeenCalled();
  });
});

describe("provider-specific answers", () => {
  it("reports a restricted Stripe key (403 permission_error) as valid", async () => {
    const entry = standIn("stripe");
    network.use(
      route(entry, () =>
        HttpResponse.json(
          {
            error: {
              message:
                "The provided key 'rk_test_***' does not have the required permissions for this endpoint.",
              type: "permission_error",
            },
          },
          { status: 403 },
        ),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "valid", reason: "restricted_key_authenticated" });
  });

  it("checks a production PayPal credential against the live host, not the sandbox", async () => {
    const entry = standIn("paypal");
    let sandboxHits = 0;
    network.use(
      http.post("https://api-m.paypal.com/v1/oauth2/token", () => entry.valid()),
      http.post("https://api-m.sandbox.paypal.com/v1/oauth2/token", () => {
        sandboxHits++;
        return entry.valid();
      }),
    );
    expect(await probe(entry, { environment: "production" })).toMatchObject({ status: "valid" });
    expect(sandboxHits).toBe(0);
    expect(await probe(entry, { environment: "development" })).toMatchObject({ status: "valid" });
    expect(sandboxHits).toBe(1);
  });

  it("reports a Google Ads refresh token without the adwords scope as invalid", async () => {
    const entry = standIn("google-ads");
    network.use(
      route(entry, () =>
        HttpResponse.json({
          access_token: "ya29.x",
          expires_in: 3599,
          scope: "openid email",
          token_type: "Bearer",
        }),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "missing_adwords_scope" });
  });

  it("reports a Google OAuth client Google does not know (401 invalid_client) as invalid", async () => {
    const entry = standIn("google-ads");
    network.use(
      route(entry, () =>
        HttpResponse.json(
          { error: "invalid_client", error_description: "The OAuth client was not found." },
          { status: 401 },
        ),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "unauthorized" });
  });

  it("reports a Meta token issued to another app as invalid", async () => {
    const entry = standIn("meta-ads");
    network.use(
      route(entry, () =>
        HttpResponse.json({ data: { app_id: "9999999999999999", is_valid: true, expires_at: 0 } }),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "token_of_another_app" });
  });

  it("reports a never-expiring Meta system-user token with expires_at null", async () => {
    const entry = standIn("meta-ads");
    network.use(
      route(entry, () =>
        HttpResponse.json({ data: { app_id: entry.fields.app_id, is_valid: true, expires_at: 0 } }),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "valid", expires_at: null });
  });

  it("reports a wrong Meta app secret (400 OAuthException 190) as invalid", async () => {
    const entry = standIn("meta-ads");
    network.use(
      route(entry, () =>
        HttpResponse.json(
          {
            error: {
              message: "Invalid OAuth access token signature.",
              type: "OAuthException",
              code: 190,
              fbtrace_id: "AbCdEfGhIjK",
            },
          },
          { status: 400 },
        ),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "app_credentials_rejected" });
  });

  it("reports an inactive LinkedIn token without a status as token_inactive", async () => {
    const entry = standIn("linkedin-marketing");
    network.use(route(entry, () => HttpResponse.json({ active: false })));
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "token_inactive" });
  });

  it("reports an Anthropic key without access to the models list (403 permission_error) as valid", async () => {
    const entry = standIn("anthropic");
    network.use(
      route(entry, () =>
        HttpResponse.json(
          {
            type: "error",
            error: { type: "permission_error", message: "Your API key does not have permission." },
          },
          { status: 403 },
        ),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "valid", reason: "authenticated_without_permission" });
  });

  it("reports a Gemini key whose project may not use the API (403 PERMISSION_DENIED) as invalid", async () => {
    const entry = standIn("gemini");
    network.use(
      route(entry, () =>
        HttpResponse.json(
          {
            error: {
              code: 403,
              message: "Method doesn't allow unregistered callers.",
              status: "PERMISSION_DENIED",
            },
          },
          { status: 403 },
        ),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "permission_denied" });
  });

  it("reports a GA4 validation message about the probe's own event as unknown, not invalid", async () => {
    const entry = standIn("google-analytics");
    network.use(
      route(entry, () =>
        HttpResponse.json({
          validationMessages: [
            { fieldPath: "events", description: "bad event", validationCode: "NAME_INVALID" },
          ],
        }),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "unknown", reason: "probe_event_rejected" });
  });

  it("signs AWS temporary credentials with their session token", async () => {
    const entry = standIn("aws-s3");
    const fields = {
      ...entry.fields,
      access_key_id: `ASIA${randomChars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)}`,
      session_token: randomChars(BASE64, 300),
    };
    let seen: ReceivedRequest | undefined;
    network.use(
      route(entry, async ({ request }) => {
        seen = await copyRequest(request);
        return entry.valid();
      }),
    );
    expect(await probe(entry, {}, fields)).toMatchObject({ status: "valid" });
    expect(seen?.headers["x-amz-security-token"]).toBe(fields.session_token);
    expect(seen?.headers.authorization).toContain(
      "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,",
    );
  });

  it("signs the AWS probe with the injected clock", async () => {
    const entry = standIn("aws-s3");
    let amzDate: string | null = null;
    network.use(
      route(entry, ({ request }) => {
        amzDate = request.headers.get("x-amz-date");
        return entry.valid();
      }),
    );
    await probe(entry, { now: () => Date.UTC(2026, 10, 26, 9, 30, 15) });
    expect(amzDate).toBe("20261126T093015Z");
  });

  it("reports an AWS secret that does not match its key id (SignatureDoesNotMatch) as invalid", async () => {
    const entry = standIn("aws-s3");
    network.use(
      route(
        entry,
        () =>
          new HttpResponse(
            "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error></ErrorResponse>",
            { status: 403, headers: { "content-type": "text/xml" } },
          ),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "key_rejected" });
  });

  it("reports an AWS RequestExpired as clock skew (unknown), not as a bad key", async () => {
    const entry = standIn("aws-s3");
    network.use(
      route(
        entry,
        () =>
          new HttpResponse(
            "<ErrorResponse><Error><Type>Sender</Type><Code>RequestExpired</Code><Message>Request has expired.</Message></Error></ErrorResponse>",
            { status: 400, headers: { "content-type": "text/xml" } },
          ),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "unknown", reason: "clock_skew" });
  });

  it("refuses an AWS region that would put the probe on another host", async () => {
    const fetchSpy = vi.fn<typeof fetch>();
    const fields = { ...standIn("aws-s3").fields, region: "evil.example/x" };
    await expect(runProbe(service("aws-s3"), fields, { fetch: fetchSpy })).rejects.toThrow();
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("reports GitHub's exhausted rate limit (403, x-ratelimit-remaining 0) as unknown/rate_limited", async () => {
    const entry = standIn("github");
    const now = Date.UTC(2026, 10, 26, 12, 0, 0);
    network.use(
      route(entry, () =>
        HttpResponse.json(
          { message: "API rate limit exceeded for user ID 1." },
          {
            status: 403,
            headers: { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(now / 1000 + 120) },
          },
        ),
      ),
    );
    expect(await probe(entry, { now: () => now })).toMatchObject({
      status: "unknown",
      reason: "rate_limited",
      retry_after_s: 120,
    });
  });

  it("reports a GitHub token without an expiration header as never expiring", async () => {
    const entry = standIn("github");
    network.use(route(entry, () => HttpResponse.json({ login: "octocat", id: 1 })));
    expect(await probe(entry)).toMatchObject({ status: "valid", expires_at: null, account: "octocat" });
  });

  it("reports Twilio test credentials (403, error 20008) as valid", async () => {
    const entry = standIn("twilio");
    network.use(
      route(entry, () =>
        HttpResponse.json(
          {
            code: 20008,
            message: "Resource not accessible with Test Account Credentials",
            more_info: "https://www.twilio.com/docs/errors/20008",
            status: 403,
          },
          { status: 403 },
        ),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "valid", reason: "test_credentials_authenticated" });
  });

  it("reports a suspended Twilio account as invalid", async () => {
    const entry = standIn("twilio");
    network.use(
      route(entry, () =>
        HttpResponse.json({ sid: entry.fields.account_sid, status: "suspended", type: "Full" }),
      ),
    );
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "account_suspended" });
  });

  it("reports a SendGrid 403 as unknown rather than guessing", async () => {
    const entry = standIn("sendgrid");
    network.use(
      route(entry, () => HttpResponse.json({ errors: [{ message: "access forbidden" }] }, { status: 403 })),
    );
    expect(await probe(entry)).toMatchObject({ status: "unknown", reason: "forbidden" });
  });

  it("reports a revoked Slack token as invalid and a Slack-side failure as unknown", async () => {
    const entry = standIn("slack");
    network.use(route(entry, () => HttpResponse.json({ ok: false, error: "token_revoked" })));
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "token_revoked" });
    network.use(route(entry, () => HttpResponse.json({ ok: false, error: "fatal_error" })));
    expect(await probe(entry)).toMatchObject({ status: "unknown", reason: "provider_error" });
  });

  it("reports an unknown Shopify shop (404) as invalid", async () => {
    const entry = standIn("shopify");
    network.use(route(entry, () => HttpResponse.json({ errors: "Not Found" }, { status: 404 })));
    expect(await probe(entry)).toMatchObject({ status: "invalid", reason: "shop_not_found" });
  });

  it("never sends a Shopify token to a shop domain outside myshopify.com", async () => {
    const fetchSpy = vi.fn<typeof fetch>();
    for (const shop_domain of [
      "evil.com",
      "evil.com#.myshopify.com",
      "a.myshopify.com.evil.com",
      "a.myshopify.com:8443",
    ]) {
      const fields = { ...goodFields("shopify"), shop_domain };
      await expect(runProbe(service("shopify"), fields, { fetch: fetchSpy })).rejects.toThrow();
    }
    expect(fetchSpy).not.toHaveBeenCalled();
  });
});
