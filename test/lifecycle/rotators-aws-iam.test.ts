/**
 * The AWS IAM access-key rotator against a stand-in of the IAM Query API that keeps its users and keys in
 * memory and checks every SigV4 signature: success, refusals, throttling and outages, and partial
 * successes, each judged by what AWS ends up holding.
 */
import { HttpResponse } from "msw";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type AwsIamSettings, awsIamRotator, awsIamSettings } from "../../src/lifecycle/rotators/aws-iam";
import type { RotatorCall } from "../../src/lifecycle/rotators/provider-rotator";
import { network } from "../setup/network";
import { AwsIamStandIn, type IamKey, iamError } from "./stand-ins/aws-iam";
import { rotatorFailure } from "./stand-ins/rotator-failure";

beforeAll(() => network.enable());
afterEach(() => network.resetHandlers());
afterAll(() => network.disable());

const USER = "app-s3-writer";
const TAG = "cred_0123456789abcdefghijkl-1767225600000";

let aws: AwsIamStandIn;
let current: IamKey;
let rotator: IamKey;
let currentFields: Record<string, string>;

function call(
  settings: AwsIamSettings = { user_name: USER },
  fetchImpl?: typeof fetch,
): RotatorCall<AwsIamSettings> {
  return {
    fetch: fetchImpl ?? ((input, init) => fetch(input, init)),
    rotatorFields: {
      access_key_id: rotator.id,
      secret_access_key: rotator.secret,
      region: "us-east-1",
    },
    settings,
  };
}

function ids(keys: IamKey[]): string[] {
  return keys.map((key) => key.id).sort();
}

beforeEach(() => {
  aws = new AwsIamStandIn();
  current = aws.addUser(USER);
  rotator = aws.addRotator("keywarden-rotator", USER);
  currentFields = {
    access_key_id: current.id,
    secret_access_key: current.secret,
    region: "eu-west-1",
    bucket: "acme-uploads",
  };
  network.use(...aws.handlers());
});

describe("AWS IAM rotator: mint", () => {
  it("creates one new key for the configured user with a SigV4-signed CreateAccessKey, keeping region and bucket", async () => {
    const minted = await awsIamRotator.mint(call(), currentFields, TAG);

    const keys = aws.keysOf(USER);
    expect(keys).toHaveLength(2);
    const created = keys.find((key) => key.id !== current.id);
    expect(created?.status).toBe("Active");
    expect(minted).toEqual({
      fields: {
        access_key_id: created?.id,
        secret_access_key: created?.secret,
        region: "eu-west-1",
        bucket: "acme-uploads",
      },
      providerKeyId: created?.id,
    });

    expect(aws.log.map((entry) => entry.operation)).toEqual(["ListAccessKeys", "CreateAccessKey"]);
    const create = aws.log[1];
    expect(create?.method).toBe("POST");
    expect(create?.url.href).toBe("https://iam.amazonaws.com/");
    expect(Object.fromEntries(new URLSearchParams(create?.body))).toEqual({
      Action: "CreateAccessKey",
      UserName: USER,
      Version: "2010-05-08",
    });
    expect(create?.headers.authorization).toMatch(
      new RegExp(
        `^AWS4-HMAC-SHA256 Credential=${rotator.id}/\\d{8}/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=[0-9a-f]{64}$`,
      ),
    );
  });

  it("drops a session token from the successor's fields and never sends the rotated key's secret", async () => {
    const minted = await awsIamRotator.mint(call(), currentFields, TAG);
    expect(minted.fields.session_token).toBeUndefined();
    for (const entry of aws.log) {
      expect(JSON.stringify(entry)).not.toContain(current.secret);
      expect(JSON.stringify(entry)).not.toContain(rotator.secret);
    }
  });

  it("after CreateAccessKey's answer was lost, the retry deletes the orphan first and AWS ends with exactly one new key (threat model case 32)", async () => {
    aws.faults.next("CreateAccessKey", "lose_answer");
    const lost = await rotatorFailure(awsIamRotator.mint(call(), currentFields, TAG));
    expect(lost.failure).toBe("unavailable");
    expect(aws.keysOf(USER)).toHaveLength(2); // AWS made the key; its secret never arrived

    const minted = await awsIamRotator.mint(call(), currentFields, TAG);
    expect(ids(aws.keysOf(USER))).toEqual([current.id, minted.providerKeyId].sort());
    expect(aws.log.map((entry) => entry.operation)).toEqual([
      "ListAccessKeys",
      "CreateAccessKey",
      "ListAccessKeys",
      "DeleteAccessKey",
      "CreateAccessKey",
    ]);
  });

  it("treats an unreadable CreateAccessKey answer as retryable, and the retry cleans up the key it may have made (threat model case 32)", async () => {
    aws.faults.next("CreateAccessKey", "unreadable_answer");
    expect((await rotatorFailure(awsIamRotator.mint(call(), currentFields, TAG))).failure).toBe(
      "unavailable",
    );
    const minted = await awsIamRotator.mint(call(), currentFields, TAG);
    expect(ids(aws.keysOf(USER))).toEqual([current.id, minted.providerKeyId].sort());
  });

  it("refuses, touching no key, when the current key is not the configured user's", async () => {
    const other = aws.addUser("someone-else");
    const error = await rotatorFailure(
      awsIamRotator.mint(call(), { ...currentFields, access_key_id: other.id }, TAG),
    );
    expect(error.failure).toBe("refused");
    expect(error.message).toContain("does not belong");
    expect(ids(aws.keysOf(USER))).toEqual([current.id]);
    expect(aws.log.map((entry) => entry.operation)).toEqual(["ListAccessKeys"]);
  });

  it("refuses when the rotation credential is a key of the rotated user itself", async () => {
    aws.users.set(USER, [current, rotator]);
    const error = await rotatorFailure(awsIamRotator.mint(call(), currentFields, TAG));
    expect(error.failure).toBe("refused");
    expect(aws.keysOf(USER).map((key) => key.id)).toEqual([current.id, rotator.id]);
  });

  it("refuses temporary (STS) credentials, which are not IAM user keys", async () => {
    const temporary = {
      ...currentFields,
      access_key_id: `ASIA${current.id.slice(4)}`,
      session_token: "x".repeat(120),
    };
    expect((await rotatorFailure(awsIamRotator.mint(call(), temporary, TAG))).failure).toBe("refused");
    expect(aws.log).toHaveLength(0);
  });

  it("reports AccessDenied (a policy that does not cover the user) as refused, naming the code and no secret", async () => {
    aws.addUser("unmanaged");
    const error = await rotatorFailure(
      awsIamRotator.mint(call({ user_name: "unmanaged" }), currentFields, TAG),
    );
    expect(error.failure).toBe("refused");
    expect(error.message).toBe("AWS IAM ListAccessKeys failed: AccessDenied");
    expect(error.message).not.toContain(rotator.secret);
  });

  it("reports LimitExceeded as refused", async () => {
    aws.faults.next("CreateAccessKey", () =>
      iamError("LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", 409),
    );
    const error = await rotatorFailure(awsIamRotator.mint(call(), currentFields, TAG));
    expect(error).toMatchObject({
      failure: "refused",
      message: "AWS IAM CreateAccessKey failed: LimitExceeded",
    });
  });

  it("reports Throttling (HTTP 400), ServiceFailure (500) and a 503 as unavailable", async () => {
    aws.faults.next("ListAccessKeys", () => iamError("Throttling", "Rate exceeded", 400));
    aws.faults.next("ListAccessKeys", () => iamError("ServiceFailure", "Internal failure", 500, "Receiver"));
    aws.faults.next("ListAccessKeys", () => new HttpResponse("Service Unavailable", { status: 503 }));
    for (let i = 0; i < 3; i++) {
      expect((await rotatorFailure(awsIamRotator.mint(call(), currentFields, TAG))).failure).toBe(
        "unavailable",
      );
    }
    expect(ids(aws.keysOf(USER))).toEqual([current.id]);
  });

  it("reports a timeout as unavailable, and every request carries a timeout signal", async () => {
    const signals: (AbortSignal | null | undefined)[] = [];
    const timingOut: typeof fetch = async (_input, init) => {
      signals.push(init?.signal);
      throw new DOMException("The operation was aborted due to timeout", "TimeoutError");
    };
    const error = await rotatorFailure(awsIamRotator.mint(call(undefined, timingOut), currentFields, TAG));
    expect(error).toMatchObject({ failure: "unavailable", message: "AWS IAM did not answer (timeout)" });
    expect(signals).toHaveLength(1);
    expect(signals[0]).toBeInstanceOf(AbortSignal);
  });

  it("reports a signature AWS does not accept as refused", async () => {
    const wrongSecret: RotatorCall<AwsIamSettings> = {
      ...call(),
      rotatorFields: { access_key_id: rotator.id, secret_access_key: "A".repeat(40), region: "us-east-1" },
    };
    const error = await rotatorFailure(awsIamRotator.mint(wrongSecret, currentFields, TAG));
    expect(error).toMatchObject({
      failure: "refused",
      message: "AWS IAM ListAccessKeys failed: SignatureDoesNotMatch",
    });
  });
});

describe("AWS IAM rotator: revoke", () => {
  it("deactivates the key, then deletes it", async () => {
    const minted = await awsIamRotator.mint(call(), currentFields, TAG);
    aws.log.length = 0;
    await awsIamRotator.revoke(call(), current.id);
    expect(ids(aws.keysOf(USER))).toEqual([minted.providerKeyId]);
    expect(aws.log.map((entry) => Object.fromEntries(new URLSearchParams(entry.body)))).toEqual([
      {
        Action: "UpdateAccessKey",
        AccessKeyId: current.id,
        Status: "Inactive",
        UserName: USER,
        Version: "2010-05-08",
      },
      { Action: "DeleteAccessKey", AccessKeyId: current.id, UserName: USER, Version: "2010-05-08" },
    ]);
  });

  it("when UpdateAccessKey succeeded and DeleteAccessKey failed, the key is already inactive and the retry deletes it (threat model case 32)", async () => {
    aws.faults.next("DeleteAccessKey", () => iamError("ServiceFailure", "Internal failure", 500, "Receiver"));
    const error = await rotatorFailure(awsIamRotator.revoke(call(), current.id));
    expect(error.failure).toBe("unavailable");
    expect(aws.keysOf(USER)).toEqual([{ ...current, status: "Inactive" }]);

    await awsIamRotator.revoke(call(), current.id);
    expect(aws.keysOf(USER)).toEqual([]);
  });

  it("counts a key that no longer exists (NoSuchEntity) as revoked", async () => {
    await awsIamRotator.revoke(call(), current.id);
    await expect(awsIamRotator.revoke(call(), current.id)).resolves.toBeUndefined();
    expect(aws.log.at(-1)?.operation).toBe("UpdateAccessKey");
  });

  it("refuses to revoke the rotation credential's own key or anything that is not an access key id", async () => {
    expect((await rotatorFailure(awsIamRotator.revoke(call(), rotator.id))).failure).toBe("refused");
    expect((await rotatorFailure(awsIamRotator.revoke(call(), "AKIA&Action=DeleteUser"))).failure).toBe(
      "refused",
    );
    expect(aws.log).toHaveLength(0);
  });
});

describe("AWS IAM rotator: settings and key ids", () => {
  it("accepts IAM user names and refuses anything that could smuggle a parameter", () => {
    expect(awsIamSettings.safeParse({ user_name: "svc+uploads@acme.com" }).success).toBe(true);
    for (const user_name of ["", "a&Action=DeleteUser", "with space", "x".repeat(65), "a/b"]) {
      expect(awsIamSettings.safeParse({ user_name }).success).toBe(false);
    }
    expect(awsIamSettings.safeParse({ user_name: "ok", extra: "no" }).success).toBe(false);
  });

  it("reads the provider key id from a version's access_key_id", () => {
    expect(awsIamRotator.providerKeyIdOf(currentFields)).toBe(current.id);
    expect(awsIamRotator.providerKeyIdOf({ access_key_id: "ASIAEXAMPLE" })).toBeNull();
    expect(awsIamRotator.providerKeyIdOf({})).toBeNull();
  });
});
