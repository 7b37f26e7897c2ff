/**
 * Faithful stand-ins for each provider's probe endpoint: the documented request we expect to receive and
 * the documented answers (a success, and the provider's own error body for a rejected credential).
 */
import { HttpResponse } from "msw";
import { expect } from "vitest";
import type { ProbeResult } from "../../src/catalog/run-probe";
import type { Environment } from "../../src/catalog/types";
import { toBase64, utf8 } from "../../src/crypto/encoding";
import { goodFields } from "./samples";

/** What the stand-in received, copied out of msw's request. Header names are lower case. */
export interface ReceivedRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: string;
}

export interface StandIn {
  service: string;
  /** Field values to probe with. */
  fields: Record<string, string>;
  environment?: Environment;
  method: "GET" | "POST";
  /** Scheme, host and path (msw matches without the query string). */
  url: string;
  /** Asserts that the stand-in received the documented request. */
  expectRequest(request: ReceivedRequest, fields: Record<string, string>): void;
  valid: () => Response;
  validResult: Partial<ProbeResult>;
  invalid: () => Response;
  invalidResult: Partial<ProbeResult>;
}

const basic = (user: string, password: string) => `Basic ${toBase64(utf8(`${user}:${password}`))}`;

function expectForm(body: string, expected: Record<string, string>): void {
  expect(Object.fromEntries(new URLSearchParams(body))).toEqual(expected);
}

const stripe = goodFields("stripe");
const paypal = goodFields("paypal");
const razorpay = goodFields("razorpay");
const shopify = { ...goodFields("shopify"), shop_domain: "acme-store.myshopify.com" };
const googleAds = goodFields("google-ads");
const meta = { ...goodFields("meta-ads"), app_id: "1234567890123456" };
const linkedin = goodFields("linkedin-marketing");
const openai = goodFields("openai");
const anthropic = goodFields("anthropic");
const gemini = goodFields("gemini");
const ga4 = goodFields("google-analytics");
const aws = { ...goodFields("aws-s3"), region: "eu-west-1" };
delete (aws as Record<string, string | undefined>).session_token;
const github = goodFields("github");
const twilio = goodFields("twilio");
const twilioApiKey = goodFields("twilio-api-key");
const sendgrid = goodFields("sendgrid");
const slack = goodFields("slack");

export const STAND_INS: readonly StandIn[] = [
  {
    service: "stripe",
    fields: stripe,
    method: "GET",
    url: "https://api.stripe.com/v1/balance",
    expectRequest: (request, fields) => {
      expect(request.url.search).toBe("");
      expect(request.headers.authorization).toBe(`Bearer ${fields.secret_key}`);
    },
    valid: () =>
      HttpResponse.json({
        object: "balance",
        available: [{ amount: 0, currency: "usd", source_types: { card: 0 } }],
        livemode: false,
        pending: [{ amount: 0, currency: "usd", source_types: { card: 0 } }],
      }),
    validResult: { status: "valid", reason: "authenticated" },
    invalid: () =>
      HttpResponse.json(
        {
          error: {
            message: `Invalid API Key provided: ${stripe.secret_key?.slice(0, 8)}****${stripe.secret_key?.slice(-4)}`,
            type: "invalid_request_error",
          },
        },
        { status: 401 },
      ),
    invalidResult: { status: "invalid", reason: "unauthorized", http_status: 401 },
  },
  {
    service: "paypal",
    fields: paypal,
    environment: "staging",
    method: "POST",
    url: "https://api-m.sandbox.paypal.com/v1/oauth2/token",
    expectRequest: (request, fields) => {
      expect(request.headers.authorization).toBe(basic(fields.client_id ?? "", fields.client_secret ?? ""));
      expect(request.headers["content-type"]).toBe("application/x-www-form-urlencoded");
      expectForm(request.body, { grant_type: "client_credentials" });
    },
    valid: () =>
      HttpResponse.json({
        scope: "https://uri.paypal.com/services/invoicing openid",
        access_token:
          "A21AAFEpH4PsADK7qSS7pSRsgzfENtu-Q1ysgEDVDESseMHBYXVJYE8ovjj68elIDy8nF26AwPhfXTIeWAZHSLIsQkSYz9ifg",
        token_type: "Bearer",
        app_id: "APP-80W284485P519543T",
        expires_in: 31668,
        nonce: "2020-04-03T15:35:36ZaYZlGvEkV4yVSz8g6bAKFoGSEzuy3CQcz3ljhibkOHg",
      }),
    validResult: { status: "valid", reason: "authenticated", account: "APP-80W284485P519543T" },
    invalid: () =>
      HttpResponse.json(
        { error: "invalid_client", error_description: "Client Authentication failed" },
        { status: 401 },
      ),
    invalidResult: { status: "invalid", reason: "unauthorized" },
  },
  {
    service: "razorpay",
    fields: razorpay,
    method: "GET",
    url: "https://api.razorpay.com/v1/payments",
    expectRequest: (request, fields) => {
      expect(request.url.search).toBe("?count=1");
      expect(request.headers.authorization).toBe(basic(fields.key_id ?? "", fields.key_secret ?? ""));
    },
    valid: () => HttpResponse.json({ entity: "collection", count: 0, items: [] }),
    validResult: { status: "valid", reason: "authenticated" },
    invalid: () =>
      HttpResponse.json(
        {
          error: {
            code: "BAD_REQUEST_ERROR",
            description: "The api key provided is invalid",
            source: "NA",
            step: "NA",
            reason: "NA",
            metadata: {},
          },
        },
        { status: 401 },
      ),
    invalidResult: { status: "invalid", reason: "unauthorized" },
  },
  {
    service: "shopify",
    fields: shopify,
    method: "GET",
    url: "https://acme-store.myshopify.com/admin/api/2025-01/shop.json",
    expectRequest: (request, fields) => {
      expect(request.headers["x-shopify-access-token"]).toBe(fields.access_token);
      expect(request.headers.authorization).toBeUndefined();
    },
    valid: () =>
      HttpResponse.json({
        shop: {
          id: 548380009,
          name: "Acme Store",
          email: "owner@acme.example",
          domain: "shop.acme.example",
          myshopify_domain: "acme-store.myshopify.com",
          plan_name: "basic",
        },
      }),
    validResult: { status: "valid", reason: "authenticated", account: "acme-store.myshopify.com" },
    invalid: () =>
      HttpResponse.json(
        { errors: "[API] Invalid API key or access token (unrecognized login or wrong password)" },
        { status: 401 },
      ),
    invalidResult: { status: "invalid", reason: "unauthorized" },
  },
  {
    service: "google-ads",
    fields: googleAds,
    method: "POST",
    url: "https://oauth2.googleapis.com/token",
    expectRequest: (request, fields) => {
      expect(request.headers["content-type"]).toBe("application/x-www-form-urlencoded");
      expect(request.headers.authorization).toBeUndefined();
      expectForm(request.body, {
        grant_type: "refresh_token",
        client_id: fields.client_id ?? "",
        client_secret: fields.client_secret ?? "",
        refresh_token: fields.refresh_token ?? "",
      });
    },
    valid: () =>
      HttpResponse.json({
        access_token: "ya29.a0AfB_byC-stand-in-access-token",
        expires_in: 3599,
        scope: "https://www.googleapis.com/auth/adwords",
        token_type: "Bearer",
      }),
    validResult: { status: "valid", reason: "oauth_refresh_ok" },
    invalid: () =>
      HttpResponse.json(
        { error: "invalid_grant", error_description: "Token has been expired or revoked." },
        { status: 400 },
      ),
    invalidResult: { status: "invalid", reason: "invalid_grant" },
  },
  {
    service: "meta-ads",
    fields: meta,
    method: "GET",
    url: "https://graph.facebook.com/debug_token",
    expectRequest: (request, fields) => {
      const params = request.url.searchParams;
      expect(params.get("input_token")).toBe(fields.access_token);
      expect(params.get("access_token")).toBe(`${fields.app_id}|${fields.app_secret}`);
    },
    valid: () =>
      HttpResponse.json({
        data: {
          app_id: "1234567890123456",
          type: "SYSTEM_USER",
          application: "Keywarden Ads",
          data_access_expires_at: 1798761600,
          expires_at: 1798761600,
          is_valid: true,
          scopes: ["ads_read", "ads_management"],
          user_id: "100000000000002",
        },
      }),
    validResult: {
      status: "valid",
      reason: "authenticated",
      expires_at: 1798761600_000,
      account: "1234567890123456",
    },
    invalid: () =>
      HttpResponse.json({
        data: {
          app_id: "1234567890123456",
          type: "USER",
          application: "Keywarden Ads",
          error: {
            code: 190,
            message: "Error validating access token: Session has expired on Monday, 01-Jan-24 00:00:00 PST.",
            subcode: 463,
          },
          expires_at: 1704096000,
          is_valid: false,
          scopes: [],
          user_id: "100000000000002",
        },
      }),
    invalidResult: { status: "invalid", reason: "token_invalid", http_status: 200 },
  },
  {
    service: "linkedin-marketing",
    fields: linkedin,
    method: "POST",
    url: "https://www.linkedin.com/oauth/v2/introspectToken",
    expectRequest: (request, fields) => {
      expect(request.headers["content-type"]).toBe("application/x-www-form-urlencoded");
      expectForm(request.body, {
        client_id: fields.client_id ?? "",
        client_secret: fields.client_secret ?? "",
        token: fields.access_token ?? "",
      });
    },
    valid: () =>
      HttpResponse.json({
        active: true,
        client_id: linkedin.client_id,
        authorized_at: 1790000000,
        created_at: 1790000000,
        status: "active",
        expires_at: 1795184000,
        scope: "r_ads,rw_ads,r_ads_reporting",
        auth_type: "3L",
      }),
    validResult: { status: "valid", reason: "authenticated", expires_at: 1795184000_000 },
    invalid: () => HttpResponse.json({ active: false, status: "revoked" }),
    invalidResult: { status: "invalid", reason: "token_revoked" },
  },
  {
    service: "openai",
    fields: openai,
    method: "GET",
    url: "https://api.openai.com/v1/models",
    expectRequest: (request, fields) => {
      expect(request.headers.authorization).toBe(`Bearer ${fields.api_key}`);
      expect(request.headers["openai-organization"]).toBe(fields.organization_id);
      expect(request.headers["openai-project"]).toBe(fields.project_id);
    },
    valid: () =>
      HttpResponse.json({
        object: "list",
        data: [{ id: "gpt-4o-mini", object: "model", created: 1721172741, owned_by: "system" }],
      }),
    validResult: { status: "valid", reason: "authenticated" },
    invalid: () =>
      HttpResponse.json(
        {
          error: {
            message:
              "Incorrect API key provided: sk-proj-****abcd. You can find your API key at https://platform.openai.com/account/api-keys.",
            type: "invalid_request_error",
            param: null,
            code: "invalid_api_key",
          },
        },
        { status: 401 },
      ),
    invalidResult: { status: "invalid", reason: "unauthorized" },
  },
  {
    service: "anthropic",
    fields: anthropic,
    method: "GET",
    url: "https://api.anthropic.com/v1/models",
    expectRequest: (request, fields) => {
      expect(request.headers["x-api-key"]).toBe(fields.api_key);
      expect(request.headers["anthropic-version"]).toBe("2023-06-01");
      expect(request.headers.authorization).toBeUndefined();
    },
    valid: () =>
      HttpResponse.json({
        data: [
          {
            type: "model",
            id: "claude-sonnet-4-5",
            display_name: "Claude Sonnet 4.5",
            created_at: "2025-09-29T00:00:00Z",
          },
        ],
        has_more: false,
        first_id: "claude-sonnet-4-5",
        last_id: "claude-sonnet-4-5",
      }),
    validResult: { status: "valid", reason: "authenticated" },
    invalid: () =>
      HttpResponse.json(
        { type: "error", error: { type: "authentication_error", message: "invalid x-api-key" } },
        { status: 401 },
      ),
    invalidResult: { status: "invalid", reason: "unauthorized" },
  },
  {
    service: "gemini",
    fields: gemini,
    method: "GET",
    url: "https://generativelanguage.googleapis.com/v1beta/models",
    expectRequest: (request, fields) => {
      expect(request.headers["x-goog-api-key"]).toBe(fields.api_key);
      expect(request.url.searchParams.get("key")).toBeNull();
    },
    valid: () =>
      HttpResponse.json({
        models: [{ name: "models/gemini-2.5-flash", displayName: "Gemini 2.5 Flash" }],
        nextPageToken: "Ch9tb2RlbHMvZ2VtaW5p",
      }),
    validResult: { status: "valid", reason: "authenticated" },
    invalid: () =>
      HttpResponse.json(
        {
          error: {
            code: 400,
            message: "API key not valid. Please pass a valid API key.",
            status: "INVALID_ARGUMENT",
            details: [
              {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                reason: "API_KEY_INVALID",
                domain: "googleapis.com",
                metadata: { service: "generativelanguage.googleapis.com" },
              },
            ],
          },
        },
        { status: 400 },
      ),
    invalidResult: { status: "invalid", reason: "api_key_invalid" },
  },
  {
    service: "google-analytics",
    fields: ga4,
    method: "POST",
    url: "https://www.google-analytics.com/debug/mp/collect",
    expectRequest: (request, fields) => {
      const params = request.url.searchParams;
      expect(params.get("measurement_id")).toBe(fields.measurement_id);
      expect(params.get("api_secret")).toBe(fields.api_secret);
      const event = JSON.parse(request.body) as { client_id: string; events: { name: string }[] };
      expect(event.client_id).toBeTypeOf("string");
      expect(event.events).toHaveLength(1);
    },
    // Google's validation server does not check api_secret, so the best a clean answer can say is unknown.
    valid: () => HttpResponse.json({ validationMessages: [] }),
    validResult: { status: "unknown", reason: "api_secret_unverifiable" },
    invalid: () =>
      HttpResponse.json({
        validationMessages: [
          {
            fieldPath: "measurement_id",
            description: "Measurement ID is not valid.",
            validationCode: "VALUE_INVALID",
          },
        ],
      }),
    invalidResult: { status: "invalid", reason: "measurement_id_rejected" },
  },
  {
    service: "aws-s3",
    fields: aws,
    method: "POST",
    url: "https://sts.eu-west-1.amazonaws.com/",
    expectRequest: (request, fields) => {
      expect(request.body).toBe("Action=GetCallerIdentity&Version=2011-06-15");
      expect(request.headers["content-type"]).toBe("application/x-www-form-urlencoded; charset=utf-8");
      expect(request.headers["x-amz-date"]).toMatch(/^\d{8}T\d{6}Z$/);
      const date = request.headers["x-amz-date"]?.slice(0, 8);
      expect(request.headers.authorization).toMatch(
        new RegExp(
          `^AWS4-HMAC-SHA256 Credential=${fields.access_key_id}/${date}/eu-west-1/sts/aws4_request, ` +
            "SignedHeaders=content-type;host;x-amz-date, Signature=[0-9a-f]{64}$",
        ),
      );
      // The secret itself never travels.
      expect(JSON.stringify(request.headers)).not.toContain(fields.secret_access_key);
    },
    valid: () =>
      new HttpResponse(
        `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:iam::123456789012:user/keywarden-probe</Arn>
    <UserId>AIDAJQABLZS4A3QDU576Q</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>`,
        { headers: { "content-type": "text/xml" } },
      ),
    validResult: {
      status: "valid",
      reason: "authenticated",
      account: "arn:aws:iam::123456789012:user/keywarden-probe",
    },
    invalid: () =>
      new HttpResponse(
        `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>InvalidClientTokenId</Code>
    <Message>The security token included in the request is invalid.</Message>
  </Error>
  <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>
</ErrorResponse>`,
        { status: 403, headers: { "content-type": "text/xml" } },
      ),
    invalidResult: { status: "invalid", reason: "key_rejected", http_status: 403 },
  },
  {
    service: "github",
    fields: github,
    method: "GET",
    url: "https://api.github.com/user",
    expectRequest: (request, fields) => {
      expect(request.headers.authorization).toBe(`Bearer ${fields.token}`);
      expect(request.headers.accept).toBe("application/vnd.github+json");
      expect(request.headers["x-github-api-version"]).toBe("2022-11-28");
      // GitHub rejects API requests without a User-Agent.
      expect(request.headers["user-agent"]).toBeTruthy();
    },
    valid: () =>
      HttpResponse.json(
        { login: "octocat", id: 1, type: "User" },
        {
          headers: {
            "x-oauth-scopes": "repo, read:org",
            "github-authentication-token-expiration": "2026-12-31 23:59:59 UTC",
          },
        },
      ),
    validResult: {
      status: "valid",
      reason: "authenticated",
      account: "octocat",
      expires_at: Date.parse("2026-12-31T23:59:59Z"),
    },
    invalid: () =>
      HttpResponse.json(
        { message: "Bad credentials", documentation_url: "https://docs.github.com/rest", status: "401" },
        { status: 401 },
      ),
    invalidResult: { status: "invalid", reason: "unauthorized" },
  },
  {
    service: "twilio",
    fields: twilio,
    method: "GET",
    url: `https://api.twilio.com/2010-04-01/Accounts/${twilio.account_sid}.json`,
    expectRequest: (request, fields) => {
      expect(request.headers.authorization).toBe(basic(fields.account_sid ?? "", fields.auth_token ?? ""));
    },
    valid: () =>
      HttpResponse.json({
        sid: twilio.account_sid,
        friendly_name: "Acme",
        status: "active",
        type: "Full",
        date_created: "Thu, 01 Jan 2026 00:00:00 +0000",
      }),
    validResult: { status: "valid", reason: "authenticated", account: twilio.account_sid },
    invalid: () =>
      HttpResponse.json(
        {
          code: 20003,
          message: "Authenticate",
          more_info: "https://www.twilio.com/docs/errors/20003",
          status: 401,
        },
        { status: 401 },
      ),
    invalidResult: { status: "invalid", reason: "unauthorized" },
  },
  {
    service: "twilio-api-key",
    fields: twilioApiKey,
    method: "GET",
    url: `https://api.twilio.com/2010-04-01/Accounts/${twilioApiKey.account_sid}/Balance.json`,
    expectRequest: (request, fields) => {
      expect(request.headers.authorization).toBe(
        basic(fields.api_key_sid ?? "", fields.api_key_secret ?? ""),
      );
    },
    valid: () =>
      HttpResponse.json({ account_sid: twilioApiKey.account_sid, balance: "12.34", currency: "USD" }),
    validResult: { status: "valid", reason: "authenticated", account: twilioApiKey.account_sid },
    invalid: () =>
      HttpResponse.json(
        {
          code: 20003,
          message: "Authenticate",
          more_info: "https://www.twilio.com/docs/errors/20003",
          status: 401,
        },
        { status: 401 },
      ),
    invalidResult: { status: "invalid", reason: "unauthorized" },
  },
  {
    service: "sendgrid",
    fields: sendgrid,
    method: "GET",
    url: "https://api.sendgrid.com/v3/scopes",
    expectRequest: (request, fields) => {
      expect(request.headers.authorization).toBe(`Bearer ${fields.api_key}`);
    },
    valid: () => HttpResponse.json({ scopes: ["mail.send", "user.profile.read"] }),
    validResult: { status: "valid", reason: "authenticated" },
    invalid: () =>
      HttpResponse.json({ errors: [{ field: null, message: "authorization required" }] }, { status: 401 }),
    invalidResult: { status: "invalid", reason: "unauthorized" },
  },
  {
    service: "slack",
    fields: slack,
    method: "POST",
    url: "https://slack.com/api/auth.test",
    expectRequest: (request, fields) => {
      expect(request.headers.authorization).toBe(`Bearer ${fields.bot_token}`);
      // The token goes in the header, never in the form body.
      expect(request.body).not.toContain(fields.bot_token);
    },
    valid: () =>
      HttpResponse.json({
        ok: true,
        url: "https://acme.slack.com/",
        team: "Acme",
        user: "keywarden",
        team_id: "T12345678",
        user_id: "U12345678",
        bot_id: "B12345678",
        is_enterprise_install: false,
      }),
    validResult: { status: "valid", reason: "authenticated", account: "T12345678" },
    // Slack reports a bad token with HTTP 200 and ok: false.
    invalid: () => HttpResponse.json({ ok: false, error: "invalid_auth" }),
    invalidResult: { status: "invalid", reason: "invalid_auth", http_status: 200 },
  },
];
