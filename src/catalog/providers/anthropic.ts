import { z } from "zod";
import { requireField } from "../request";
import type { ServiceDefinition } from "../types";

// docs.anthropic.com/en/api/overview: API keys are `sk-ant-api03-` + 93 base64url characters + `AA`.
const ModelList = z.object({ data: z.array(z.unknown()) });
const ApiError = z.object({ type: z.literal("error"), error: z.object({ type: z.string() }) });

export const anthropic: ServiceDefinition = {
  id: "anthropic",
  name: "Anthropic",
  category: "ai",
  description: "Claude models through the Anthropic API.",
  docs_url: "https://docs.anthropic.com/en/api/overview",
  fields: [
    {
      name: "api_key",
      label: "API key",
      secret: true,
      required: true,
      pattern: "^sk-ant-api03-[A-Za-z0-9_-]{93}AA$",
      example: `sk-ant-api03-EXAMPLE${"aBcDeFgHiJkLmNoPqRsTuVwXyZ_-".repeat(3)}aBAA`,
    },
  ],
  generatable: [],
  recommended_rotation_days: 90,
  probe_hosts: ["api.anthropic.com"],
  probe: {
    // Listing models is free and read-only (docs.anthropic.com/en/api/models-list).
    request: (fields) => ({
      method: "GET",
      url: "https://api.anthropic.com/v1/models",
      headers: { "x-api-key": requireField(fields, "api_key"), "anthropic-version": "2023-06-01" },
    }),
    interpret: (response) => {
      if (response.status === 200 && ModelList.safeParse(response.json).success) {
        return { status: "valid", reason: "authenticated" };
      }
      // 403 permission_error: the key authenticated but may not use this resource (docs.anthropic.com/en/api/errors).
      const error = ApiError.safeParse(response.json);
      if (response.status === 403 && error.success && error.data.error.type === "permission_error") {
        return { status: "valid", reason: "authenticated_without_permission" };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
