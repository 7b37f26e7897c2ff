import { z } from "zod";
import { FORM_CONTENT_TYPE, formBody, requireField, secondsToMs } from "../request";
import type { ServiceDefinition } from "../types";

// learn.microsoft.com/linkedin/shared/authentication/token-introspection: apps have a client id and
// secret (16 alphanumerics, or the newer `WPL_AP1.` form); member access tokens start `AQ`.
const Introspection = z.object({
  active: z.boolean(),
  status: z.string().optional(),
  expires_at: z.number().optional(),
  client_id: z.string().optional(),
});
const OAuthError = z.object({ error: z.string() });

export const linkedin: ServiceDefinition = {
  id: "linkedin-marketing",
  name: "LinkedIn Marketing",
  category: "marketing",
  description: "LinkedIn campaign management and reporting through the Marketing API.",
  docs_url: "https://learn.microsoft.com/en-us/linkedin/shared/authentication/token-introspection",
  fields: [
    {
      name: "client_id",
      label: "Client ID",
      secret: false,
      required: true,
      pattern: "^[A-Za-z0-9]{12,20}$",
      example: "86example7xq2",
    },
    {
      name: "client_secret",
      label: "Client secret",
      secret: true,
      required: true,
      pattern: "^(?:[A-Za-z0-9]{16}|WPL_AP[0-9]\\.[A-Za-z0-9._+/=-]{16,128})$",
      example: "WPL_AP1.EXAMPLEaBcDeFgHiJk.aBcDe==",
    },
    {
      name: "access_token",
      label: "Access token",
      secret: true,
      required: true,
      pattern: "^AQ[A-Za-z0-9_-]{100,1000}$",
      example: `AQEXAMPLE${"aBcDeFgHiJkLmNoPqRsTuVwXyZ".repeat(4)}`,
    },
  ],
  generatable: [],
  recommended_rotation_days: 60,
  probe_hosts: ["www.linkedin.com"],
  probe: {
    // Introspection reads a token's state and expiry without calling any member API.
    request: (fields) => ({
      method: "POST",
      url: "https://www.linkedin.com/oauth/v2/introspectToken",
      headers: { "content-type": FORM_CONTENT_TYPE },
      body: formBody({
        client_id: requireField(fields, "client_id"),
        client_secret: requireField(fields, "client_secret"),
        token: requireField(fields, "access_token"),
      }),
    }),
    interpret: (response) => {
      const result = Introspection.safeParse(response.json);
      if (response.status === 200 && result.success) {
        const { active, status, expires_at } = result.data;
        if (!active)
          return { status: "invalid", reason: status === "revoked" ? "token_revoked" : "token_inactive" };
        return {
          status: "valid",
          reason: "authenticated",
          expires_at: expires_at === undefined ? null : secondsToMs(expires_at),
        };
      }
      const error = OAuthError.safeParse(response.json);
      if (response.status === 400 && error.success && error.data.error === "invalid_client") {
        return { status: "invalid", reason: "invalid_client" };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
