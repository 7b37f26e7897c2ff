import { z } from "zod";
import { requireField } from "../request";
import type { ServiceDefinition } from "../types";

// ai.google.dev/gemini-api/docs/api-key: Google API keys are `AIza` + 35 characters of [0-9A-Za-z_-].
const ModelList = z.object({ models: z.array(z.unknown()) });
const GoogleError = z.object({
  error: z.object({
    status: z.string(),
    details: z.array(z.object({ reason: z.string().optional() })).optional(),
  }),
});

export const gemini: ServiceDefinition = {
  id: "gemini",
  name: "Google Gemini",
  category: "ai",
  description: "Gemini models through the Gemini Developer API (Google AI Studio keys).",
  docs_url: "https://ai.google.dev/gemini-api/docs/api-key",
  fields: [
    {
      name: "api_key",
      label: "API key",
      secret: true,
      required: true,
      pattern: "^AIza[0-9A-Za-z_-]{35}$",
      example: "AIzaEXAMPLEaBcDeFgHiJkLmNoPqRsTuVwXyZ01",
    },
  ],
  generatable: [],
  recommended_rotation_days: 90,
  probe_hosts: ["generativelanguage.googleapis.com"],
  probe: {
    // Listing models is free; the key goes in a header rather than the documented `?key=` so it stays out of URLs.
    request: (fields) => ({
      method: "GET",
      url: "https://generativelanguage.googleapis.com/v1beta/models?pageSize=1",
      headers: { "x-goog-api-key": requireField(fields, "api_key") },
    }),
    interpret: (response) => {
      if (response.status === 200 && ModelList.safeParse(response.json).success) {
        return { status: "valid", reason: "authenticated" };
      }
      const error = GoogleError.safeParse(response.json);
      if (error.success) {
        // Google answers an unknown key with 400 INVALID_ARGUMENT + reason API_KEY_INVALID, and a key whose
        // project has the API disabled or restricted with 403 PERMISSION_DENIED.
        const reasons = (error.data.error.details ?? []).map((detail) => detail.reason);
        if (response.status === 400 && reasons.includes("API_KEY_INVALID")) {
          return { status: "invalid", reason: "api_key_invalid" };
        }
        if (response.status === 403 && error.data.error.status === "PERMISSION_DENIED") {
          return { status: "invalid", reason: "permission_denied" };
        }
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
