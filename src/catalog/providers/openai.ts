import { z } from "zod";
import { bearerAuthorization, optionalField, requireField } from "../request";
import type { ServiceDefinition } from "../types";

// platform.openai.com/docs/api-reference/authentication: legacy user keys are `sk-` + 20 + `T3BlbkFJ` + 20
// alphanumerics; project, service-account and admin keys are `sk-proj-`, `sk-svcacct-`, `sk-admin-` + a long
// base64url body. The optional organization and project ids go in the OpenAI-Organization/-Project headers.
const ModelList = z.object({ object: z.literal("list") });

export const openai: ServiceDefinition = {
  id: "openai",
  name: "OpenAI",
  category: "ai",
  description: "GPT models, embeddings and assistants through the OpenAI API.",
  docs_url: "https://platform.openai.com/docs/api-reference/authentication",
  fields: [
    {
      name: "api_key",
      label: "API key",
      secret: true,
      required: true,
      pattern:
        "^(?:sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,300})$",
      example: "sk-proj-EXAMPLEaBcDeFgHiJkLmNoPqRsTuVwXyZ_aBcDeFgHiJkLmNoPqRsTuVwXyZ",
    },
    {
      name: "organization_id",
      label: "Organization ID",
      secret: false,
      required: false,
      pattern: "^org-[A-Za-z0-9]{24}$",
      example: "org-EXAMPLEaBcDeFgHiJkLmNoPq",
    },
    {
      name: "project_id",
      label: "Project ID",
      secret: false,
      required: false,
      pattern: "^proj_[A-Za-z0-9]{24}$",
      example: "proj_EXAMPLEaBcDeFgHiJkLmNoPq",
    },
  ],
  generatable: [],
  recommended_rotation_days: 90,
  probe_hosts: ["api.openai.com"],
  probe: {
    // Listing models is free and read-only (platform.openai.com/docs/api-reference/models/list). Sending the
    // organization and project makes OpenAI check that the key belongs to them too.
    request: (fields) => {
      const headers: Record<string, string> = {
        authorization: bearerAuthorization(requireField(fields, "api_key")),
      };
      const organization = optionalField(fields, "organization_id");
      const project = optionalField(fields, "project_id");
      if (organization) headers["openai-organization"] = organization;
      if (project) headers["openai-project"] = project;
      return { method: "GET", url: "https://api.openai.com/v1/models", headers };
    },
    interpret: (response) => {
      if (response.status === 200 && ModelList.safeParse(response.json).success) {
        return { status: "valid", reason: "authenticated" };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
