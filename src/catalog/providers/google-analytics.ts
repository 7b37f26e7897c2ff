import { z } from "zod";
import { requireField } from "../request";
import type { ServiceDefinition } from "../types";

// developers.google.com/analytics/devguides/collection/protocol/ga4/sending-events: a web stream's
// measurement id (`G-` + upper-case alphanumerics) and a Measurement Protocol API secret created under the
// stream (Admin > Data streams > Measurement Protocol API secrets).
const Validation = z.object({
  validationMessages: z.array(
    z.object({ fieldPath: z.string().optional(), validationCode: z.string().optional() }),
  ),
});

export const googleAnalytics: ServiceDefinition = {
  id: "google-analytics",
  name: "Google Analytics (GA4 Measurement Protocol)",
  category: "analytics",
  description: "Server-side events into a GA4 property through the Measurement Protocol.",
  docs_url: "https://developers.google.com/analytics/devguides/collection/protocol/ga4",
  fields: [
    {
      name: "measurement_id",
      label: "Measurement ID",
      secret: false,
      required: true,
      pattern: "^G-[A-Z0-9]{6,12}$",
      example: "G-EXAMPLE123",
    },
    {
      name: "api_secret",
      label: "Measurement Protocol API secret",
      secret: true,
      required: true,
      pattern: "^[A-Za-z0-9_-]{16,64}$",
      example: "EXAMPLE-aBcDeFgHiJkLmN",
    },
  ],
  generatable: [],
  recommended_rotation_days: 180,
  probe_hosts: ["www.google-analytics.com"],
  probe: {
    // The validation server checks an event without recording it
    // (developers.google.com/analytics/devguides/collection/protocol/ga4/validating-events). The secret has
    // to travel in the query string: that is the only place the protocol accepts it.
    request: (fields) => {
      const params = new URLSearchParams({
        measurement_id: requireField(fields, "measurement_id"),
        api_secret: requireField(fields, "api_secret"),
      });
      return {
        method: "POST",
        url: `https://www.google-analytics.com/debug/mp/collect?${params}`,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ client_id: "keywarden.probe", events: [{ name: "keywarden_probe" }] }),
      };
    },
    interpret: (response) => {
      const result = Validation.safeParse(response.json);
      if (response.status !== 200 || !result.success)
        return { status: "unknown", reason: "unexpected_response" };
      const paths = result.data.validationMessages.map((message) => message.fieldPath);
      if (paths.includes("measurement_id")) return { status: "invalid", reason: "measurement_id_rejected" };
      if (paths.length > 0) return { status: "unknown", reason: "probe_event_rejected" };
      // Google: "The validation server does not validate api_secret". A clean answer therefore proves the
      // measurement id only, and the credential as a whole stays unverified rather than "valid".
      return { status: "unknown", reason: "api_secret_unverifiable" };
    },
  },
};
