import { z } from "zod";
import { bearerAuthorization, requireField } from "../request";
import type { ServiceDefinition } from "../types";

// github.blog/engineering/platform-security/behind-githubs-new-authentication-token-formats/: classic personal
// access tokens are `ghp_` + 36 base62 (30 random + 6 checksum); fine-grained ones `github_pat_` + 22 + `_` + 59.
// Webhook secrets are chosen by the repository owner (docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries).
const User = z.object({ login: z.string() });
/** `2026-01-31 12:00:00 UTC` (or with a numeric offset) in github-authentication-token-expiration. */
const EXPIRATION = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) (UTC|[+-]\d{2}:?\d{2})$/;

function parseExpiration(header: string | null): number | null {
  const match = header === null ? null : EXPIRATION.exec(header.trim());
  if (!match) return null;
  const [, day, time, zone] = match;
  const offset = zone === "UTC" ? "Z" : `${zone?.slice(0, 3)}:${zone?.slice(-2)}`;
  const ms = Date.parse(`${day}T${time}${offset}`);
  return Number.isNaN(ms) ? null : ms;
}

export const github: ServiceDefinition = {
  id: "github",
  name: "GitHub",
  category: "infrastructure",
  description: "Repositories, issues and deployments through a personal access token.",
  docs_url:
    "https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/managing-your-personal-access-tokens",
  fields: [
    {
      name: "token",
      label: "Personal access token",
      secret: true,
      required: true,
      pattern: "^(?:ghp_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})$",
      example:
        "github_pat_EXAMPLEaBcDeFgHiJkLmNo_EXAMPLEaBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgHiJkLmNoPqRsTuVwXyZ",
    },
    {
      name: "webhook_secret",
      label: "Webhook secret",
      secret: true,
      required: false,
      pattern: "^[A-Za-z0-9_-]{20,256}$",
      example: "EXAMPLE_webhook_secret_aBcDeF",
    },
  ],
  generatable: [{ field: "webhook_secret", length: 64, alphabet: "hex" }],
  recommended_rotation_days: 90,
  probe_hosts: ["api.github.com"],
  probe: {
    // GET /user reads the token's own user; classic tokens report their scopes in x-oauth-scopes and expiring
    // tokens their end in github-authentication-token-expiration (docs.github.com/rest/users/users).
    request: (fields) => ({
      method: "GET",
      url: "https://api.github.com/user",
      headers: {
        authorization: bearerAuthorization(requireField(fields, "token")),
        accept: "application/vnd.github+json",
        "x-github-api-version": "2022-11-28",
      },
    }),
    interpret: (response, _fields, ctx) => {
      const user = User.safeParse(response.json);
      if (response.status === 200 && user.success) {
        return {
          status: "valid",
          reason: "authenticated",
          account: user.data.login,
          expires_at: parseExpiration(response.headers.get("github-authentication-token-expiration")),
        };
      }
      // GitHub signals an exhausted primary rate limit with 403 and x-ratelimit-remaining: 0
      // (docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api).
      if (response.status === 403 && response.headers.get("x-ratelimit-remaining") === "0") {
        const reset = Number(response.headers.get("x-ratelimit-reset"));
        return Number.isFinite(reset) && reset > 0
          ? {
              status: "unknown",
              reason: "rate_limited",
              retry_after_s: Math.max(0, Math.ceil(reset - ctx.now() / 1000)),
            }
          : { status: "unknown", reason: "rate_limited" };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
