import { z } from "zod";
import { basicAuthorization, requireField } from "../request";
import type { ServiceDefinition } from "../types";
import { TWILIO_ACCOUNT_SID } from "./twilio";

// twilio.com/docs/iam/api-keys/key-resource-v1: an API key is a SID (`SK` + 32 hex) and a secret that is
// shown once, at creation; requests authenticate with Basic `<key SID>:<secret>` against the account's
// resources (twilio.com/docs/usage/requests-to-twilio). The docs give no format for the secret; issued
// secrets are 32 letters and digits. Standard keys cannot read the Account resource itself (/Accounts)
// nor the Keys resources, which is why the probe reads the account's Balance instead.
const ACCOUNT_SID = new RegExp(TWILIO_ACCOUNT_SID.pattern ?? "");
const Balance = z.object({ account_sid: z.string(), balance: z.string(), currency: z.string() });

export const twilioApiKey: ServiceDefinition = {
  id: "twilio-api-key",
  name: "Twilio API key",
  category: "communication",
  description: "A revocable Twilio API key (Standard or Restricted) for SMS, voice and WhatsApp.",
  docs_url: "https://www.twilio.com/docs/iam/api-keys/key-resource-v1",
  fields: [
    TWILIO_ACCOUNT_SID,
    {
      name: "api_key_sid",
      label: "API key SID",
      secret: false,
      required: true,
      pattern: "^SK[0-9a-f]{32}$",
      example: "SK0123456789abcdef0123456789abcdef",
    },
    {
      name: "api_key_secret",
      label: "API key secret",
      secret: true,
      required: true,
      pattern: "^[A-Za-z0-9]{32}$",
      example: "EXAMPLEaBcDeFgHiJkLmNoPqRsTuVwXy",
    },
  ],
  generatable: [],
  recommended_rotation_days: 90,
  probe_hosts: ["api.twilio.com"],
  probe: {
    // Fetching the account's balance is a free read that a Standard key may make
    // (twilio.com/docs/usage/api/balance); a Restricted key without that permission answers 403.
    request: (fields) => {
      const sid = requireField(fields, "account_sid");
      if (!ACCOUNT_SID.test(sid)) throw new TypeError("probe needs a valid account_sid field");
      return {
        method: "GET",
        url: `https://api.twilio.com/2010-04-01/Accounts/${sid}/Balance.json`,
        headers: {
          authorization: basicAuthorization(
            requireField(fields, "api_key_sid"),
            requireField(fields, "api_key_secret"),
          ),
        },
      };
    },
    interpret: (response) => {
      const balance = Balance.safeParse(response.json);
      if (response.status === 200 && balance.success) {
        return { status: "valid", reason: "authenticated", account: balance.data.account_sid };
      }
      if (response.status === 403) return { status: "unknown", reason: "forbidden" };
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
