/**
 * Automatic rotation of an IAM user's long-term access key (the `aws-s3` catalogue service), with the IAM
 * Query API: CreateAccessKey, ListAccessKeys, UpdateAccessKey and DeleteAccessKey
 * (docs.aws.amazon.com/IAM/latest/APIReference/API_CreateAccessKey.html and its siblings). Requests are
 * form-encoded POSTs to the global endpoint https://iam.amazonaws.com/, signed with SigV4 for service `iam`
 * in `us-east-1` (IAM's signing region); answers are XML: `CreateAccessKeyResponse/CreateAccessKeyResult/
 * AccessKey/{AccessKeyId,SecretAccessKey,Status}`, errors `ErrorResponse/Error/{Type,Code,Message}`.
 *
 * The rotation credential is another `aws-s3` credential: an access key of a *different* IAM user whose
 * policy allows only iam:ListAccessKeys, iam:CreateAccessKey, iam:UpdateAccessKey and iam:DeleteAccessKey on
 * the rotated user's ARN (docs/lifecycle.md gives the policy). The catalogue's `aws-s3` entry is the one
 * AWS access-key entry (access key, secret, optional session token, and a region its STS probe uses), so a
 * separate "rotator" entry would repeat its fields, formats and probe for nothing.
 */
import { z } from "zod";
import { formBody } from "../../catalog/request";
import { signV4 } from "../../catalog/sigv4";
import { failureOfStatus, providerRequest } from "./provider-http";
import { type ProviderRotator, type RotatorCall, RotatorError } from "./provider-rotator";

const HOST = "iam.amazonaws.com";
const ENDPOINT = `https://${HOST}/`;
const API_VERSION = "2010-05-08";
/** IAM user names: up to 64 of `[\w+=,.@-]` (IAM User Guide, "IAM and AWS STS quotas"). */
const USER_NAME = /^[\w+=,.@-]{1,64}$/;
/** Only long-term user keys (`AKIA`) rotate: temporary `ASIA` keys come from STS and expire by themselves. */
const LONG_TERM_KEY_ID = /^AKIA[A-Z0-9]{16}$/;
const SECRET_ACCESS_KEY = /^[A-Za-z0-9/+]{40}$/;
const ERROR_CODE = /<Code>([A-Za-z.]{1,64})<\/Code>/;

/**
 * Error codes that mean "try again later" although AWS answers them with a 4xx: IAM throttles with 400
 * `Throttling`, and `RequestExpired` means the signing clock was off, not that the request is wrong.
 */
const RETRYABLE_CODES = new Set(["Throttling", "ThrottlingException", "RequestExpired", "ServiceFailure"]);

export const awsIamSettings = z.object({ user_name: z.string().regex(USER_NAME) }).strict();
export type AwsIamSettings = z.infer<typeof awsIamSettings>;

type Call = RotatorCall<AwsIamSettings>;

interface IamAnswer {
  status: number;
  text: string;
  /** The IAM error code of a non-2xx answer, when the body names one. */
  code: string | undefined;
}

async function iam(call: Call, action: string, params: Record<string, string>): Promise<IamAnswer> {
  const accessKeyId = call.rotatorFields.access_key_id;
  const secretAccessKey = call.rotatorFields.secret_access_key;
  if (!accessKeyId || !secretAccessKey) {
    throw new RotatorError("refused", "the AWS rotation credential lacks its access key");
  }
  const sessionToken = call.rotatorFields.session_token;
  const body = formBody({ Action: action, ...params, Version: API_VERSION });
  const signed = await signV4(
    {
      method: "POST",
      url: ENDPOINT,
      headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
      body,
    },
    { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) },
    // The real clock, not the Workflow's logical `now`: AWS refuses a signature more than 5 minutes off,
    // and a fast-forwarded rotation still calls AWS today.
    { region: "us-east-1", service: "iam", date: new Date() },
  );
  const response = await providerRequest(call.fetch, "AWS IAM", HOST, {
    method: "POST",
    url: ENDPOINT,
    headers: signed.headers,
    body,
  });
  const ok = response.status >= 200 && response.status < 300;
  return { ...response, code: ok ? undefined : ERROR_CODE.exec(response.text)?.[1] };
}

/** A failed IAM answer as a RotatorError naming the action and AWS's error code, never the body. */
function iamError(action: string, answer: IamAnswer): RotatorError {
  const failure =
    answer.code !== undefined && RETRYABLE_CODES.has(answer.code)
      ? "unavailable"
      : failureOfStatus(answer.status);
  return new RotatorError(failure, `AWS IAM ${action} failed: ${answer.code ?? `HTTP ${answer.status}`}`);
}

function isOk(answer: IamAnswer): boolean {
  return answer.status >= 200 && answer.status < 300;
}

/** The ids of the user's access keys, active or not. */
async function listAccessKeys(call: Call): Promise<string[]> {
  const answer = await iam(call, "ListAccessKeys", { UserName: call.settings.user_name });
  if (!isOk(answer)) throw iamError("ListAccessKeys", answer);
  if (!answer.text.includes("<ListAccessKeysResult>")) {
    throw new RotatorError("unavailable", "AWS IAM ListAccessKeys answered without a list");
  }
  // A user holds at most 2 access keys (IAM quotas), far under the default page of 100: one page is all.
  const members = answer.text.match(/<member>[\s\S]*?<\/member>/g) ?? [];
  return members.map((member) => {
    const id = /<AccessKeyId>([A-Z0-9]{16,128})<\/AccessKeyId>/.exec(member)?.[1];
    if (id === undefined) {
      throw new RotatorError("unavailable", "AWS IAM ListAccessKeys answered an unreadable key");
    }
    return id;
  });
}

/** Deletes a key; NoSuchEntity means it is already gone, which is what was asked. */
async function deleteAccessKey(call: Call, accessKeyId: string): Promise<void> {
  const answer = await iam(call, "DeleteAccessKey", {
    AccessKeyId: accessKeyId,
    UserName: call.settings.user_name,
  });
  if (!isOk(answer) && answer.code !== "NoSuchEntity") throw iamError("DeleteAccessKey", answer);
}

function assertKeyId(accessKeyId: string): void {
  if (!LONG_TERM_KEY_ID.test(accessKeyId)) {
    throw new RotatorError("refused", "not an IAM user access key id");
  }
}

export const awsIamRotator: ProviderRotator<AwsIamSettings> = {
  serviceId: "aws-s3",
  rotatorServiceId: "aws-s3",
  settingsSchema: awsIamSettings,

  async mint(call, currentFields, _tag) {
    const current = currentFields.access_key_id ?? "";
    if (!LONG_TERM_KEY_ID.test(current) || currentFields.session_token) {
      throw new RotatorError("refused", "only a long-term IAM user access key (AKIA…) can be rotated");
    }
    const keys = await listAccessKeys(call);
    // Both checks keep the cleanup below from touching keys it must not: a user_name that names some
    // other user (whose keys are not this credential's), and a rotation credential that belongs to the
    // rotated user itself (it would count as a non-current key and delete itself).
    if (!keys.includes(current)) {
      throw new RotatorError("refused", "the current access key does not belong to the configured IAM user");
    }
    if (keys.includes(call.rotatorFields.access_key_id ?? "")) {
      throw new RotatorError(
        "refused",
        "the rotation credential must be a key of another IAM user than the rotated one",
      );
    }
    // Idempotence without tags (an access key cannot carry a name or tag when it is created): the rotated
    // IAM user is dedicated to this credential (docs/lifecycle.md), so between rotations it holds exactly
    // the current key. Any other key is one that an earlier attempt of a rotation created without hearing
    // the answer (its secret was never received, so nothing can be using it), or a predecessor whose
    // retirement did not finish. Deleting those before CreateAccessKey means a retried mint ends with the
    // current key plus exactly one new key, and never meets IAM's two-key limit (LimitExceeded).
    for (const key of keys) {
      if (key !== current) await deleteAccessKey(call, key);
    }
    const answer = await iam(call, "CreateAccessKey", { UserName: call.settings.user_name });
    if (!isOk(answer)) throw iamError("CreateAccessKey", answer);
    const accessKeyId = /<AccessKeyId>([^<]*)<\/AccessKeyId>/.exec(answer.text)?.[1] ?? "";
    const secretAccessKey = /<SecretAccessKey>([^<]*)<\/SecretAccessKey>/.exec(answer.text)?.[1] ?? "";
    if (!LONG_TERM_KEY_ID.test(accessKeyId) || !SECRET_ACCESS_KEY.test(secretAccessKey)) {
      // The key may exist all the same: a retry lists it as a non-current key and deletes it first.
      throw new RotatorError("unavailable", "AWS IAM CreateAccessKey answered without a usable key");
    }
    const { session_token: _token, ...kept } = currentFields;
    return {
      fields: { ...kept, access_key_id: accessKeyId, secret_access_key: secretAccessKey },
      providerKeyId: accessKeyId,
    };
  },

  async revoke(call, providerKeyId) {
    assertKeyId(providerKeyId);
    if (providerKeyId === call.rotatorFields.access_key_id) {
      throw new RotatorError("refused", "the rotation credential does not revoke its own key");
    }
    // Deactivate first, then delete (the IAM User Guide's order for retiring a key): if the delete fails,
    // the key already authenticates nothing, and the retried step finishes the job.
    const update = await iam(call, "UpdateAccessKey", {
      AccessKeyId: providerKeyId,
      Status: "Inactive",
      UserName: call.settings.user_name,
    });
    if (!isOk(update)) {
      if (update.code === "NoSuchEntity") return;
      throw iamError("UpdateAccessKey", update);
    }
    await deleteAccessKey(call, providerKeyId);
  },

  providerKeyIdOf(fields) {
    const id = fields.access_key_id;
    return id !== undefined && LONG_TERM_KEY_ID.test(id) ? id : null;
  },
};
