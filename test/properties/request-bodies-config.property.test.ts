/**
 * threat model case 16 for the configuration after the wizard: alert channels, alert rules and the
 * security policy (endpoints-monitoring.ts; see request-bodies-shared.ts). Channel writes never send
 * anything (the stored channel test, which does, takes no body), so the network mock must record no
 * request at all; a generated webhook URL could not reach the network anyway.
 */
import { expect, it } from "vitest";
import { describeRequestBodyProperties } from "./request-bodies-shared";
import { OUTCOMES } from "./worker-support";

describeRequestBodyProperties([
  "POST /api/v1/monitoring/channels",
  "PATCH /api/v1/monitoring/channels/{id}",
  "POST /api/v1/monitoring/rules",
  "PATCH /api/v1/monitoring/rules/{id}",
  "PUT /api/v1/security-policy",
  "PATCH /api/v1/security-policy",
]);

it("the generated bodies reached every success path: each channel kind, mail via SendGrid, rules, policies with and without 2FA", () => {
  for (const outcome of [
    "channel created email",
    "channel created email via sendgrid",
    "channel created slack",
    "channel created webhook",
    "channel created sms",
    "channel updated email",
    "channel updated slack",
    "channel updated webhook",
    "channel updated sms",
    "rule created usage_threshold",
    "rule created expiry_warning",
    "rule updated",
    "policy written without 2FA",
    "policy written with 2FA",
  ]) {
    expect(OUTCOMES.get(outcome) ?? 0, outcome).toBeGreaterThan(0);
  }
});
