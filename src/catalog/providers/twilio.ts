import { z } from "zod";
import { basicAuthorization, requireField } from "../request";
import type { FieldSpec, ServiceDefinition } from "../types";

// twilio.com/docs/iam/api/account and /docs/iam/credentials/api: the Account SID is `AC` + 32 hex and the
// auth token 32 hex. Test credentials are a separate SID/token pair that looks the same, so the values
// do not say test or live.
const Account = z.object({ sid: z.string(), status: z.string() });
const TwilioError = z.object({ code: z.number() });
/** Error 20008: "Resource not accessible with Test Account Credentials": the test pair authenticated. */
const TEST_CREDENTIALS_CODE = 20008;

/** The account a Twilio credential belongs to: the same field for the account and its API keys. */
export const TWILIO_ACCOUNT_SID: FieldSpec = {
  name: "account_sid",
  label: "Account SID",
  secret: false,
  required: true,
  pattern: "^AC[0-9a-f]{32}$",
  example: "AC0123456789abcdef0123456789abcdef",
};

export const twilio: ServiceDefinition = {
  id: "twilio",
  name: "Twilio",
  category: "communication",
  description: "SMS, voice and WhatsApp messaging.",
  docs_url: "https://www.twilio.com/docs/iam/api/account",
  fields: [
    TWILIO_ACCOUNT_SID,
    {
      name: "auth_token",
      label: "Auth token",
      secret: true,
      required: true,
      pattern: "^[0-9a-f]{32}$",
      example: "0123456789abcdef0123456789abcdef",
    },
  ],
  generatable: [],
  recommended_rotation_days: 90,
  probe_hosts: ["api.twilio.com"],
  probe: {
    // Fetching one's own Account resource is a free read.
    request: (fields) => {
      const sid = requireField(fields, "account_sid");
      if (!/^AC[0-9a-f]{32}$/.test(sid)) throw new TypeError("probe needs a valid account_sid field");
      return {
        method: "GET",
        url: `https://api.twilio.com/2010-04-01/Accounts/${sid}.json`,
        headers: { authorization: basicAuthorization(sid, requireField(fields, "auth_token")) },
      };
    },
    interpret: (response) => {
      const account = Account.safeParse(response.json);
      if (response.status === 200 && account.success) {
        return account.data.status === "active"
          ? { status: "valid", reason: "authenticated", account: account.data.sid }
          : {
              status: "invalid",
              reason: `account_${account.data.status === "suspended" ? "suspended" : "closed"}`,
            };
      }
      const error = TwilioError.safeParse(response.json);
      if (response.status === 403 && error.success && error.data.code === TEST_CREDENTIALS_CODE) {
        return { status: "valid", reason: "test_credentials_authenticated" };
      }
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
