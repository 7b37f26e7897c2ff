import { z } from "zod";
import { bearerAuthorization, requireField } from "../request";
import type { ServiceDefinition } from "../types";

// docs.slack.dev/authentication/tokens: bot tokens are `xoxb-` + team-scoped numeric ids + a 24-character
// secret; the app's signing secret (docs.slack.dev/authentication/verifying-requests-from-slack) is 32 hex.
const AuthTest = z.object({ ok: z.boolean(), error: z.string().optional(), team_id: z.string().optional() });
/** auth.test errors that mean the token itself is refused (docs.slack.dev/reference/methods/auth.test). */
const REJECTED = new Set([
  "invalid_auth",
  "not_authed",
  "account_inactive",
  "token_revoked",
  "token_expired",
]);

export const slack: ServiceDefinition = {
  id: "slack",
  name: "Slack",
  category: "communication",
  description: "Messages and alerts into a Slack workspace through a Slack app.",
  docs_url: "https://docs.slack.dev/authentication/tokens",
  fields: [
    {
      name: "bot_token",
      label: "Bot token",
      secret: true,
      required: true,
      pattern: "^xoxb-[0-9]{8,15}-[0-9]{8,15}-[A-Za-z0-9]{24}$",
      example: "xoxb-1000000001-2000000002-EXAMPLEaBcDeFgHiJkLmNoPq",
    },
    {
      name: "signing_secret",
      label: "Signing secret",
      secret: true,
      required: false,
      pattern: "^[0-9a-f]{32}$",
      example: "0123456789abcdef0123456789abcdef",
    },
  ],
  generatable: [],
  recommended_rotation_days: 180,
  probe_hosts: ["slack.com"],
  probe: {
    // auth.test only reports who the token is (docs.slack.dev/reference/methods/auth.test).
    request: (fields) => ({
      method: "POST",
      url: "https://slack.com/api/auth.test",
      headers: { authorization: bearerAuthorization(requireField(fields, "bot_token")) },
    }),
    interpret: (response) => {
      // Slack answers 200 with `ok: false` for a bad token rather than a 4xx.
      const result = AuthTest.safeParse(response.json);
      if (response.status !== 200 || !result.success)
        return { status: "unknown", reason: "unexpected_response" };
      if (result.data.ok)
        return { status: "valid", reason: "authenticated", account: result.data.team_id ?? null };
      const error = result.data.error ?? "";
      return REJECTED.has(error)
        ? { status: "invalid", reason: error }
        : { status: "unknown", reason: "provider_error" };
    },
  },
};
