import { HttpResponse, http } from "msw";
import { randomBase62 } from "../../src/crypto/random";
import { callJson, type TestTenant } from "../helpers/api";
import { network } from "../setup/network";

export type State = {
  id: string;
  status: string;
  current_step: string;
  furthest_step: string;
  steps: Record<string, unknown> & {
    keys: {
      services: Record<string, { fields: Record<string, string>; complete: boolean }>;
      issued_keys: Record<string, { key_id: string }>;
    };
  };
  compliance_checklist: { standard: string; id: string; status: string; met: boolean }[];
  commit: { created: { keys: string[]; credentials: string[]; channels: string[]; rules: string[] } } | null;
};

export const openaiKey = () => `sk-proj-${randomBase62(48)}T3BlbkFJ${randomBase62(48)}`;
export const stripeLiveKey = () => `sk_live_${randomBase62(32)}`;

export function wizardCall<T = State>(
  tenant: TestTenant,
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
) {
  return callJson<T>(method, `/api/v1/wizard${path === "/" ? "" : path}`, {
    key: tenant.adminKey,
    body,
    ...(headers ? { headers } : {}),
  });
}

/** An address inside ENTERPRISE_SECURITY's allowlist, for calls made once that policy is in force. */
export const ALLOWLISTED = { "cf-connecting-ip": "203.0.113.9" };

/**
 * The allowlist also holds 100.64.0.0/10, where test/helpers/api.ts puts every request that names no address
 * of its own: a commit refuses a policy that would lock out the address committing it.
 */
export const ENTERPRISE_SECURITY = {
  security_level: "enterprise",
  environment: "production",
  rotation_policy: "90_days",
  ip_allowlist: ["203.0.113.0/24", "100.64.0.0/10"],
  require_2fa: true,
  compliance: ["pci_dss", "soc2"],
};

/** Walks a wizard to the review step with Stripe and OpenAI, answering no live checks (tests stay offline). */
export async function walkToTesting(tenant: TestTenant) {
  const { body: started } = await wizardCall(tenant, "POST", "/");
  const id = started.id;
  await wizardCall(tenant, "PUT", `/${id}/steps/services`, { service_ids: ["stripe", "openai"] });
  await wizardCall(tenant, "PUT", `/${id}/steps/security`, ENTERPRISE_SECURITY);
  const secrets = { stripe: stripeLiveKey(), openai: openaiKey() };
  await wizardCall(tenant, "POST", `/${id}/keys/stripe`, { fields: { secret_key: secrets.stripe } });
  await wizardCall(tenant, "POST", `/${id}/keys/openai`, { fields: { api_key: secrets.openai } });
  return { id, secrets };
}

/** Stripe's and OpenAI's live checks answer that the key is valid (the file enables `network`). */
export const providersAnswerValid = () =>
  network.use(
    http.get("https://api.stripe.com/v1/balance", () =>
      HttpResponse.json({ object: "balance", available: [], pending: [], livemode: true }),
    ),
    http.get("https://api.openai.com/v1/models", () =>
      HttpResponse.json({ object: "list", data: [{ id: "gpt-4o", object: "model" }] }),
    ),
  );

/** `walkToTesting`, then the keys confirmed and both services tested valid: the wizard at its monitoring step. */
export async function walkToMonitoring(tenant: TestTenant) {
  const walked = await walkToTesting(tenant);
  await wizardCall(tenant, "PUT", `/${walked.id}/steps/keys`, {});
  providersAnswerValid();
  await wizardCall(tenant, "POST", `/${walked.id}/tests`, {});
  await wizardCall(tenant, "PUT", `/${walked.id}/steps/testing`, {});
  return walked;
}

/** `walkToMonitoring`, then an email channel "Ops" and an expiry reminder to it: the wizard at its review step. */
export async function walkToReview(tenant: TestTenant) {
  const walked = await walkToMonitoring(tenant);
  await wizardCall(tenant, "PUT", `/${walked.id}/steps/monitoring`, {
    channels: [{ kind: "email", name: "Ops", to: "ops@example.com" }],
    rules: [{ kind: "expiry_warning", days_before: 14, channel_names: ["Ops"] }],
  });
  return walked;
}
