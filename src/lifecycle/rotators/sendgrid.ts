/**
 * Automatic rotation of a SendGrid API key (the `sendgrid` catalogue service) with the v3 API Keys API
 * (twilio.com/docs/sendgrid/api-reference/api-keys), on api.sendgrid.com, Bearer authentication:
 * - create: `POST /v3/api_keys` JSON `{ name, scopes }` → 201 `{ api_key, api_key_id, name, scopes }`; the
 *   key is returned only in this answer. Without `scopes` SendGrid grants Full Access, so the successor is
 *   created with exactly the scopes of the key it replaces (read with `GET /v3/api_keys/{api_key_id}` →
 *   `{ api_key_id, name, scopes }`); an account holds at most 100 keys (403 past that);
 * - list: `GET /v3/api_keys?limit=…` → `{ result: [{ api_key_id, name }] }`;
 * - delete: `DELETE /v3/api_keys/{api_key_id}` → 204; 404 when the id does not exist.
 * Errors are JSON `{ errors: [{ field, message }] }`: they carry no code, so messages name the status only.
 * A key reads `SG.<api_key_id>.<secret>`, so its id is known from the value.
 *
 * The rotation credential is another `sendgrid` credential whose key has only the scopes
 * `api_keys.create`, `api_keys.read` and `api_keys.delete` (docs/lifecycle.md).
 */
import { z } from "zod";
import { bearerAuthorization } from "../../catalog/request";
import { failureOfStatus, parseJson, providerRequest, rotationKeyName } from "./provider-http";
import { type ProviderRotator, type RotatorCall, RotatorError } from "./provider-rotator";

const HOST = "api.sendgrid.com";
const KEYS_URL = `https://${HOST}/v3/api_keys`;
const KEY_ID = /^[A-Za-z0-9_-]{22}$/;
const API_KEY = /^SG\.([A-Za-z0-9_-]{22})\.[A-Za-z0-9_-]{43}$/;
/** The account's key limit: one page of this size lists every key. */
const MAX_KEYS = 100;
const MAX_NAME = 100;

const Scopes = z.array(z.string().regex(/^[a-z0-9_.]{1,100}$/)).max(1000);
const KeyDetails = z.object({ api_key_id: z.string(), scopes: Scopes });
const CreatedKey = z.object({ api_key: z.string().regex(API_KEY), api_key_id: z.string().regex(KEY_ID) });
const KeyList = z.object({
  result: z.array(z.object({ api_key_id: z.string().regex(KEY_ID), name: z.string() })),
});

export const sendgridSettings = z.object({}).strict();
export type SendgridSettings = z.infer<typeof sendgridSettings>;

type Call = RotatorCall<SendgridSettings>;

function headers(call: Call, json = false): Record<string, string> {
  const key = call.rotatorFields.api_key ?? "";
  if (!API_KEY.test(key)) throw new RotatorError("refused", "the SendGrid rotation credential lacks its key");
  return {
    authorization: bearerAuthorization(key),
    ...(json ? { "content-type": "application/json" } : {}),
  };
}

function sendgridError(action: string, status: number): RotatorError {
  return new RotatorError(failureOfStatus(status), `SendGrid ${action} failed: HTTP ${status}`);
}

function isOk(status: number): boolean {
  return status >= 200 && status < 300;
}

async function deleteKey(call: Call, id: string): Promise<void> {
  const response = await providerRequest(call.fetch, "SendGrid", HOST, {
    method: "DELETE",
    url: `${KEYS_URL}/${id}`,
    headers: headers(call),
  });
  // 404: "If the API Key ID does not exist": already deleted, which is what was asked.
  if (!isOk(response.status) && response.status !== 404) throw sendgridError("delete key", response.status);
}

function keyIdOf(apiKey: string | undefined): string | null {
  return apiKey === undefined ? null : (API_KEY.exec(apiKey)?.[1] ?? null);
}

export const sendgridRotator: ProviderRotator<SendgridSettings> = {
  serviceId: "sendgrid",
  rotatorServiceId: "sendgrid",
  settingsSchema: sendgridSettings,

  async mint(call, currentFields, tag) {
    const currentId = keyIdOf(currentFields.api_key);
    if (currentId === null) throw new RotatorError("refused", "the current SendGrid key is not readable");
    if (currentId === keyIdOf(call.rotatorFields.api_key)) {
      throw new RotatorError("refused", "the rotation credential must be another key than the rotated one");
    }
    const name = rotationKeyName(tag, MAX_NAME);

    // Idempotence: this run names its key after its own id, so a key with that name is one an earlier
    // attempt of this same run created without hearing the answer (its secret was never received). It
    // is deleted before minting, and a retried mint leaves exactly one new key.
    const list = await providerRequest(call.fetch, "SendGrid", HOST, {
      method: "GET",
      url: `${KEYS_URL}?limit=${MAX_KEYS}`,
      headers: headers(call),
    });
    if (!isOk(list.status)) throw sendgridError("list keys", list.status);
    const keys = KeyList.safeParse(parseJson(list.text));
    if (!keys.success) throw new RotatorError("unavailable", "SendGrid answered an unreadable key list");
    for (const key of keys.data.result) if (key.name === name) await deleteKey(call, key.api_key_id);

    // The successor gets the current key's scopes, no more: a create without scopes is Full Access.
    const current = await providerRequest(call.fetch, "SendGrid", HOST, {
      method: "GET",
      url: `${KEYS_URL}/${currentId}`,
      headers: headers(call),
    });
    if (!isOk(current.status)) throw sendgridError("read the current key's scopes", current.status);
    const details = KeyDetails.safeParse(parseJson(current.text));
    if (!details.success || details.data.api_key_id !== currentId) {
      throw new RotatorError("unavailable", "SendGrid answered unreadable scopes for the current key");
    }

    const created = await providerRequest(call.fetch, "SendGrid", HOST, {
      method: "POST",
      url: KEYS_URL,
      headers: headers(call, true),
      body: JSON.stringify({ name, scopes: details.data.scopes }),
    });
    if (!isOk(created.status)) throw sendgridError("create key", created.status);
    const key = CreatedKey.safeParse(parseJson(created.text));
    if (!key.success || keyIdOf(key.data.api_key) !== key.data.api_key_id) {
      // The key may exist all the same: the retry finds it by its name and deletes it first.
      throw new RotatorError("unavailable", "SendGrid created a key but its answer was unreadable");
    }
    return { fields: { api_key: key.data.api_key }, providerKeyId: key.data.api_key_id };
  },

  async revoke(call, providerKeyId) {
    if (!KEY_ID.test(providerKeyId)) throw new RotatorError("refused", "not a SendGrid API key id");
    if (providerKeyId === keyIdOf(call.rotatorFields.api_key)) {
      throw new RotatorError("refused", "the rotation credential does not revoke its own key");
    }
    await deleteKey(call, providerKeyId);
  },

  providerKeyIdOf(fields) {
    return keyIdOf(fields.api_key);
  },
};
