import { z } from "zod";
import { basicAuthorization, requireField } from "../request";
import type { ServiceDefinition } from "../types";

// razorpay.com/docs/api/authentication/: key id `rzp_test_` or `rzp_live_` + 14 alphanumerics, and a
// 24-character key secret. The webhook secret is chosen by the merchant in the dashboard, so Keywarden
// can generate it (razorpay.com/docs/webhooks/validate-test/).
const Collection = z.object({ entity: z.literal("collection") });

export const razorpay: ServiceDefinition = {
  id: "razorpay",
  name: "Razorpay",
  category: "payment",
  description: "Payments for India: cards, UPI, netbanking.",
  docs_url: "https://razorpay.com/docs/api/authentication/",
  fields: [
    {
      name: "key_id",
      label: "Key ID",
      secret: false,
      required: true,
      pattern: "^rzp_(?:test|live)_[A-Za-z0-9]{14}$",
      example: "rzp_test_EXAMPLEaBcDeFg",
      environment_marker: { test: "^rzp_test_", live: "^rzp_live_" },
    },
    {
      name: "key_secret",
      label: "Key secret",
      secret: true,
      required: true,
      pattern: "^[A-Za-z0-9]{24}$",
      example: "EXAMPLEaBcDeFgHiJkLmNoPq",
    },
    {
      name: "webhook_secret",
      label: "Webhook secret",
      secret: true,
      required: false,
      pattern: "^[A-Za-z0-9_-]{16,128}$",
      example: "EXAMPLE_webhook_secret_aBcDeF",
    },
  ],
  generatable: [{ field: "webhook_secret", length: 43, alphabet: "base62" }],
  recommended_rotation_days: 90,
  probe_hosts: ["api.razorpay.com"],
  probe: {
    // Reading one payment (count=1) is the lightest authenticated read (razorpay.com/docs/api/payments/fetch-all-payments/).
    request: (fields) => ({
      method: "GET",
      url: "https://api.razorpay.com/v1/payments?count=1",
      headers: {
        authorization: basicAuthorization(requireField(fields, "key_id"), requireField(fields, "key_secret")),
      },
    }),
    interpret: (response) => {
      if (response.status === 200 && Collection.safeParse(response.json).success) {
        return { status: "valid", reason: "authenticated" };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
