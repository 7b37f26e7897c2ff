import { z } from "zod";
import { bearerAuthorization, requireField } from "../request";
import type { ServiceDefinition } from "../types";

// docs.stripe.com/keys: secret `sk_`, restricted `rk_` and publishable `pk_` keys, each `test_` or `live_`,
// followed by alphanumerics (24 in old keys, ~99 in current ones; Stripe allows up to 255 in total).
// Webhook signing secrets are `whsec_` + base64-ish text and are created by Stripe, not by us.
const StripeError = z.object({ error: z.object({ type: z.string() }) });

export const stripe: ServiceDefinition = {
  id: "stripe",
  name: "Stripe",
  category: "payment",
  description: "Payments, subscriptions and invoicing.",
  docs_url: "https://docs.stripe.com/keys",
  fields: [
    {
      name: "secret_key",
      label: "Secret or restricted key",
      secret: true,
      required: true,
      pattern: "^(?:sk|rk)_(?:test|live)_[0-9A-Za-z]{24,247}$",
      example: "sk_test_51EXAMPLEKEYaBcDeFgHiJkLmNoPqRsTuVwXyZ",
      environment_marker: { test: "^(?:sk|rk)_test_", live: "^(?:sk|rk)_live_" },
    },
    {
      name: "publishable_key",
      label: "Publishable key",
      secret: false,
      required: false,
      pattern: "^pk_(?:test|live)_[0-9A-Za-z]{24,247}$",
      example: "pk_test_51EXAMPLEKEYaBcDeFgHiJkLmNoPqRsTuVwXyZ",
      environment_marker: { test: "^pk_test_", live: "^pk_live_" },
    },
    {
      name: "webhook_secret",
      label: "Webhook signing secret",
      secret: true,
      required: false,
      pattern: "^whsec_[A-Za-z0-9+/=]{24,128}$",
      example: "whsec_EXAMPLEaBcDeFgHiJkLmNoPqRsTuVwXyZ0123",
    },
  ],
  generatable: [],
  recommended_rotation_days: 90,
  probe_hosts: ["api.stripe.com"],
  probe: {
    // GET /v1/balance reads, spends nothing, and needs only the key (docs.stripe.com/api/balance/balance_retrieve).
    request: (fields) => ({
      method: "GET",
      url: "https://api.stripe.com/v1/balance",
      headers: { authorization: bearerAuthorization(requireField(fields, "secret_key")) },
    }),
    interpret: (response) => {
      if (response.status === 200) return { status: "valid", reason: "authenticated" };
      // A restricted key without balance read access is still a key Stripe recognised
      // (docs.stripe.com/keys#limit-access: "permission_error" on 403).
      const error = StripeError.safeParse(response.json);
      if (response.status === 403 && error.success && error.data.error.type === "permission_error") {
        return { status: "valid", reason: "restricted_key_authenticated" };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
