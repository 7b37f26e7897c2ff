import { z } from "zod";
import { requireField, secondsToMs } from "../request";
import type { ServiceDefinition } from "../types";

// developers.facebook.com/docs/facebook-login/guides/access-tokens: a Marketing API access token (`EAA...`),
// the app id (digits) and the app secret (32 hex). The webhook verify token is chosen by the developer
// (developers.facebook.com/docs/graph-api/webhooks/getting-started), so Keywarden can generate it.
const DebugToken = z.object({
  data: z.object({
    app_id: z.string().optional(),
    is_valid: z.boolean(),
    expires_at: z.number().optional(),
    user_id: z.string().optional(),
  }),
});
const GraphError = z.object({ error: z.object({ code: z.number() }) });
/** Graph API error 190: invalid or expired OAuth access token (the app token, here). */
const INVALID_TOKEN_CODE = 190;

export const metaAds: ServiceDefinition = {
  id: "meta-ads",
  name: "Meta Ads",
  category: "marketing",
  description: "Facebook and Instagram advertising through the Marketing API.",
  docs_url: "https://developers.facebook.com/docs/marketing-apis/overview/authentication",
  fields: [
    {
      name: "app_id",
      label: "App ID",
      secret: false,
      required: true,
      pattern: "^[0-9]{15,17}$",
      example: "100000000000001",
    },
    {
      name: "app_secret",
      label: "App secret",
      secret: true,
      required: true,
      pattern: "^[a-f0-9]{32}$",
      example: "0123456789abcdef0123456789abcdef",
    },
    {
      name: "access_token",
      label: "Access token",
      secret: true,
      required: true,
      pattern: "^EAA[A-Za-z0-9]{40,512}$",
      example: "EAAEXAMPLEaBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgHiJkLmNoPq",
    },
    {
      name: "ad_account_id",
      label: "Ad account ID",
      secret: false,
      required: false,
      pattern: "^act_[0-9]{1,20}$",
      example: "act_1000000001",
    },
    {
      name: "webhook_verify_token",
      label: "Webhook verify token",
      secret: true,
      required: false,
      pattern: "^[A-Za-z0-9_-]{16,128}$",
      example: "EXAMPLE_verify_token_aBcDeF",
    },
  ],
  generatable: [{ field: "webhook_verify_token", length: 32, alphabet: "base62" }],
  recommended_rotation_days: 60,
  probe_hosts: ["graph.facebook.com"],
  probe: {
    // debug_token inspects a token without acting with it; the caller authenticates with the app token
    // `{app-id}|{app-secret}` (developers.facebook.com/docs/graph-api/reference/debug_token/).
    request: (fields) => {
      const params = new URLSearchParams({
        input_token: requireField(fields, "access_token"),
        access_token: `${requireField(fields, "app_id")}|${requireField(fields, "app_secret")}`,
      });
      return { method: "GET", url: `https://graph.facebook.com/debug_token?${params}`, headers: {} };
    },
    interpret: (response, fields) => {
      const debug = DebugToken.safeParse(response.json);
      if (response.status === 200 && debug.success) {
        const { data } = debug.data;
        if (!data.is_valid) return { status: "invalid", reason: "token_invalid" };
        if (data.app_id !== undefined && data.app_id !== fields.app_id) {
          return { status: "invalid", reason: "token_of_another_app" };
        }
        // expires_at 0 means a token that does not expire (system-user tokens).
        const expires =
          data.expires_at === undefined || data.expires_at === 0 ? null : secondsToMs(data.expires_at);
        return {
          status: "valid",
          reason: "authenticated",
          expires_at: expires,
          account: data.app_id ?? null,
        };
      }
      const error = GraphError.safeParse(response.json);
      if (response.status === 400 && error.success && error.data.error.code === INVALID_TOKEN_CODE) {
        return { status: "invalid", reason: "app_credentials_rejected" };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
