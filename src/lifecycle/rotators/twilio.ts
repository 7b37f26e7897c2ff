/**
 * Automatic rotation of a Twilio API key (the `twilio-api-key` catalogue service) with Twilio's current Key
 * resource, v1 (twilio.com/docs/iam/api-keys/key-resource-v1), on its fixed host iam.twilio.com:
 * - create: `POST /v1/Keys`, form `AccountSid`, `FriendlyName` (up to 64 characters) → 201
 *   `{ sid: "SK…", friendly_name, secret, … }`; the secret is returned only in this answer;
 * - list: `GET /v1/Keys?AccountSid=…&PageSize=…` → `{ keys: [{ sid, friendly_name, … }], meta: {
 *   next_page_url } }`;
 * - delete: `DELETE /v1/Keys/{sid}` → 204; 404 (error 20404) when it does not exist.
 * Errors are JSON `{ code, message, more_info, status }` (twilio.com/docs/usage/twilios-response).
 *
 * The rotation credential is the account's `twilio` credential (Account SID and Auth Token). Twilio lets
 * only the Auth Token or a Main key (created in the Console only) manage keys; Standard and Restricted keys
 * are refused on the Keys resources, so nothing narrower exists (docs/lifecycle.md).
 */
import { z } from "zod";
import { basicAuthorization, FORM_CONTENT_TYPE, formBody } from "../../catalog/request";
import { failureOfStatus, parseJson, providerRequest, rotationKeyName } from "./provider-http";
import { type ProviderRotator, type RotatorCall, RotatorError } from "./provider-rotator";

const HOST = "iam.twilio.com";
const KEYS_URL = `https://${HOST}/v1/Keys`;
const ACCOUNT_SID = /^AC[0-9a-f]{32}$/;
const KEY_SID = /^SK[0-9a-f]{32}$/;
/** FriendlyName "can be up to 64 characters long". */
const MAX_FRIENDLY_NAME = 64;
/** The list's largest page (1,000); more pages than this many is not an account we can clean up safely. */
const PAGE_SIZE = 1000;
const MAX_PAGES = 10;

const CreatedKey = z.object({ sid: z.string().regex(KEY_SID), secret: z.string().min(1).max(256) });
const KeyPage = z.object({
  keys: z.array(z.object({ sid: z.string().regex(KEY_SID), friendly_name: z.string().nullable() })),
  meta: z.object({ next_page_url: z.string().nullable().optional() }).optional(),
});
const TwilioError = z.object({ code: z.number().int() });

export const twilioSettings = z.object({}).strict();
export type TwilioSettings = z.infer<typeof twilioSettings>;

type Call = RotatorCall<TwilioSettings>;

function authorization(call: Call): string {
  const sid = call.rotatorFields.account_sid ?? "";
  const token = call.rotatorFields.auth_token ?? "";
  if (!ACCOUNT_SID.test(sid) || token === "") {
    throw new RotatorError("refused", "the Twilio rotation credential lacks its Account SID or Auth Token");
  }
  return basicAuthorization(sid, token);
}

/** A failed answer as a RotatorError with Twilio's numeric error code, never the message or body. */
function twilioError(action: string, status: number, text: string): RotatorError {
  const error = TwilioError.safeParse(parseJson(text));
  const code = error.success ? `error ${error.data.code}` : `HTTP ${status}`;
  return new RotatorError(failureOfStatus(status), `Twilio ${action} failed: ${code}`);
}

function isOk(status: number): boolean {
  return status >= 200 && status < 300;
}

async function deleteKey(call: Call, sid: string): Promise<void> {
  const response = await providerRequest(call.fetch, "Twilio", HOST, {
    method: "DELETE",
    url: `${KEYS_URL}/${sid}`,
    headers: { authorization: authorization(call) },
  });
  // 404 (error 20404): already deleted, which is what was asked.
  if (!isOk(response.status) && response.status !== 404) {
    throw twilioError("delete key", response.status, response.text);
  }
}

/** The SIDs of the account's keys named `name`, across pages (next_page_url stays on iam.twilio.com). */
async function keysNamed(call: Call, accountSid: string, name: string): Promise<string[]> {
  const found: string[] = [];
  let url: string | null = `${KEYS_URL}?${formBody({ AccountSid: accountSid, PageSize: String(PAGE_SIZE) })}`;
  for (let page = 0; url !== null; page++) {
    if (page === MAX_PAGES) throw new RotatorError("refused", "Twilio lists too many API keys to search");
    const response = await providerRequest(call.fetch, "Twilio", HOST, {
      method: "GET",
      url,
      headers: { authorization: authorization(call) },
    });
    if (!isOk(response.status)) throw twilioError("list keys", response.status, response.text);
    const parsed = KeyPage.safeParse(parseJson(response.text));
    if (!parsed.success) throw new RotatorError("unavailable", "Twilio answered an unreadable key list");
    for (const key of parsed.data.keys) if (key.friendly_name === name) found.push(key.sid);
    url = parsed.data.meta?.next_page_url ?? null;
  }
  return found;
}

export const twilioRotator: ProviderRotator<TwilioSettings> = {
  serviceId: "twilio-api-key",
  rotatorServiceId: "twilio",
  settingsSchema: twilioSettings,

  async mint(call, currentFields, tag) {
    const accountSid = currentFields.account_sid ?? "";
    if (!ACCOUNT_SID.test(accountSid)) {
      throw new RotatorError("refused", "the Twilio API key credential lacks a valid Account SID");
    }
    const name = rotationKeyName(tag, MAX_FRIENDLY_NAME);
    // Idempotence: this run names its key after its own id. A key with that name is one an earlier
    // attempt of this same run created without hearing the answer; its secret was never received, so it
    // is deleted before minting, and a retried mint leaves exactly one new key.
    for (const sid of await keysNamed(call, accountSid, name)) await deleteKey(call, sid);

    const response = await providerRequest(call.fetch, "Twilio", HOST, {
      method: "POST",
      url: KEYS_URL,
      headers: { authorization: authorization(call), "content-type": FORM_CONTENT_TYPE },
      body: formBody({ AccountSid: accountSid, FriendlyName: name }),
    });
    if (!isOk(response.status)) throw twilioError("create key", response.status, response.text);
    const created = CreatedKey.safeParse(parseJson(response.text));
    if (!created.success) {
      // The key may exist all the same: the retry finds it by its name and deletes it first.
      throw new RotatorError("unavailable", "Twilio created a key but its answer was unreadable");
    }
    return {
      fields: {
        account_sid: accountSid,
        api_key_sid: created.data.sid,
        api_key_secret: created.data.secret,
      },
      providerKeyId: created.data.sid,
    };
  },

  async revoke(call, providerKeyId) {
    if (!KEY_SID.test(providerKeyId)) throw new RotatorError("refused", "not a Twilio API key SID");
    await deleteKey(call, providerKeyId);
  },

  providerKeyIdOf(fields) {
    const sid = fields.api_key_sid;
    return sid !== undefined && KEY_SID.test(sid) ? sid : null;
  },
};
