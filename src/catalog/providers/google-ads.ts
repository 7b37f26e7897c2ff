import { z } from "zod";
import { FORM_CONTENT_TYPE, formBody, requireField } from "../request";
import type { ServiceDefinition } from "../types";

// developers.google.com/google-ads/api/docs/oauth/overview: an API call needs a developer token (22
// characters), an OAuth client (id `<digits>-<32>.apps.googleusercontent.com`, secret `GOCSPX-` + 28) and
// a refresh token (`1//...`); `login-customer-id` (10 digits) only for manager accounts.
const AdwordsScope = "https://www.googleapis.com/auth/adwords";
const TokenResponse = z.object({ access_token: z.string(), scope: z.string().optional() });
const OAuthError = z.object({ error: z.string() });
const REJECTED_GRANTS = new Set(["invalid_grant", "invalid_client", "unauthorized_client"]);

export const googleAds: ServiceDefinition = {
  id: "google-ads",
  name: "Google Ads",
  category: "marketing",
  description: "Campaign management and reporting through the Google Ads API.",
  docs_url: "https://developers.google.com/google-ads/api/docs/oauth/overview",
  fields: [
    {
      name: "developer_token",
      label: "Developer token",
      secret: true,
      required: true,
      pattern: "^[A-Za-z0-9_-]{22}$",
      example: "EXAMPLEdevTokenaBcDeFg",
    },
    {
      name: "client_id",
      label: "OAuth client ID",
      secret: false,
      required: true,
      pattern: "^[0-9]{6,20}-[a-z0-9]{32}\\.apps\\.googleusercontent\\.com$",
      example: "123456789012-exampleexampleexampleexampleexam.apps.googleusercontent.com",
    },
    {
      name: "client_secret",
      label: "OAuth client secret",
      secret: true,
      required: true,
      pattern: "^GOCSPX-[A-Za-z0-9_-]{28}$",
      example: "GOCSPX-EXAMPLEaBcDeFgHiJkLmNoPqRsTu",
    },
    {
      name: "refresh_token",
      label: "OAuth refresh token",
      secret: true,
      required: true,
      pattern: "^1//[A-Za-z0-9_-]{40,512}$",
      example: "1//0gEXAMPLErefreshTokenaBcDeFgHiJkLmNoPqRsTuVwXyZ",
    },
    {
      name: "login_customer_id",
      label: "Manager account customer ID",
      secret: false,
      required: false,
      pattern: "^[0-9]{10}$",
      example: "1234567890",
    },
  ],
  generatable: [],
  recommended_rotation_days: 180,
  probe_hosts: ["oauth2.googleapis.com"],
  probe: {
    // Refreshing an access token proves the client id, client secret and refresh token together and
    // returns the granted scopes; the hour-long token is discarded. The developer token can only be
    // exercised by an Ads API call made with that token, so it is checked for format only.
    request: (fields) => ({
      method: "POST",
      url: "https://oauth2.googleapis.com/token",
      headers: { "content-type": FORM_CONTENT_TYPE },
      body: formBody({
        grant_type: "refresh_token",
        client_id: requireField(fields, "client_id"),
        client_secret: requireField(fields, "client_secret"),
        refresh_token: requireField(fields, "refresh_token"),
      }),
    }),
    interpret: (response) => {
      const token = TokenResponse.safeParse(response.json);
      if (response.status === 200 && token.success) {
        const scopes = (token.data.scope ?? "").split(" ");
        return scopes.includes(AdwordsScope)
          ? { status: "valid", reason: "oauth_refresh_ok" }
          : { status: "invalid", reason: "missing_adwords_scope" };
      }
      // RFC 6749 §5.2: a revoked or expired refresh token is `invalid_grant`, a bad client `invalid_client`.
      const error = OAuthError.safeParse(response.json);
      if (response.status === 400 && error.success && REJECTED_GRANTS.has(error.data.error)) {
        return { status: "invalid", reason: error.data.error };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
