import { z } from "zod";
import { basicAuthorization, FORM_CONTENT_TYPE, formBody, requireField } from "../request";
import type { ServiceDefinition } from "../types";

// developer.paypal.com/api/rest/authentication/: REST apps have a client id and a secret (80 characters
// of [A-Za-z0-9_-] in practice; PayPal documents no exact length). The values do not say sandbox or
// live, so the tenant's environment picks the host.
const TokenResponse = z.object({ access_token: z.string(), app_id: z.string().optional() });
const TokenError = z.object({ error: z.string() });

export const paypal: ServiceDefinition = {
  id: "paypal",
  name: "PayPal",
  category: "payment",
  description: "PayPal Checkout and payouts through the REST API.",
  docs_url: "https://developer.paypal.com/api/rest/authentication/",
  fields: [
    {
      name: "client_id",
      label: "Client ID",
      secret: false,
      required: true,
      pattern: "^[A-Za-z0-9_-]{40,100}$",
      example: "AbEXAMPLEclientId-aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVw",
    },
    {
      name: "client_secret",
      label: "Client secret",
      secret: true,
      required: true,
      pattern: "^[A-Za-z0-9_-]{40,100}$",
      example: "EXAMPLEsecret_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ",
    },
  ],
  generatable: [],
  recommended_rotation_days: 90,
  probe_hosts: ["api-m.sandbox.paypal.com", "api-m.paypal.com"],
  probe: {
    // The client-credentials token call is the documented way to check a client id and secret; the short-
    // lived token it returns is discarded. Sandbox for development and staging, live for production.
    request: (fields, ctx) => ({
      method: "POST",
      url: `https://${ctx.environment === "production" ? "api-m.paypal.com" : "api-m.sandbox.paypal.com"}/v1/oauth2/token`,
      headers: {
        authorization: basicAuthorization(
          requireField(fields, "client_id"),
          requireField(fields, "client_secret"),
        ),
        "content-type": FORM_CONTENT_TYPE,
        accept: "application/json",
      },
      body: formBody({ grant_type: "client_credentials" }),
    }),
    interpret: (response) => {
      const token = TokenResponse.safeParse(response.json);
      if (response.status === 200 && token.success) {
        return { status: "valid", reason: "authenticated", account: token.data.app_id ?? null };
      }
      const error = TokenError.safeParse(response.json);
      if (response.status === 400 && error.success && error.data.error === "invalid_client") {
        return { status: "invalid", reason: "invalid_client" };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
