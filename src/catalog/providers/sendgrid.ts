import { z } from "zod";
import { bearerAuthorization, requireField } from "../request";
import type { ServiceDefinition } from "../types";

// www.twilio.com/docs/sendgrid/ui/account-and-settings/api-keys: keys are `SG.` + a 22-character key id +
// `.` + a 43-character secret, both base64url.
const Scopes = z.object({ scopes: z.array(z.string()) });

export const sendgrid: ServiceDefinition = {
  id: "sendgrid",
  name: "SendGrid",
  category: "communication",
  description: "Transactional and marketing email.",
  docs_url: "https://www.twilio.com/docs/sendgrid/ui/account-and-settings/api-keys",
  fields: [
    {
      name: "api_key",
      label: "API key",
      secret: true,
      required: true,
      pattern: "^SG\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}$",
      example: "SG.EXAMPLEaBcDeFgHiJkLmNo.EXAMPLEaBcDeFgHiJkLmNoPqRsTuVwXyZ_aBcDeFgHi",
    },
  ],
  generatable: [],
  recommended_rotation_days: 90,
  probe_hosts: ["api.sendgrid.com"],
  probe: {
    // Any key may read its own scopes (www.twilio.com/docs/sendgrid/api-reference/api-key-permissions).
    request: (fields) => ({
      method: "GET",
      url: "https://api.sendgrid.com/v3/scopes",
      headers: { authorization: bearerAuthorization(requireField(fields, "api_key")) },
    }),
    interpret: (response) => {
      if (response.status === 200 && Scopes.safeParse(response.json).success) {
        return { status: "valid", reason: "authenticated" };
      }
      if (response.status === 403) return { status: "unknown", reason: "forbidden" };
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
