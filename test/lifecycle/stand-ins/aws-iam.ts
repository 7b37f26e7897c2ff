/**
 * A stand-in for the IAM Query API at https://iam.amazonaws.com/, faithful to its documentation
 * (docs.aws.amazon.com/IAM/latest/APIReference/): form-encoded POSTs with `Action` and `Version=2010-05-08`,
 * SigV4 for service `iam` in `us-east-1` (the signature is recomputed and checked), XML answers in the
 * `https://iam.amazonaws.com/doc/2010-05-08/` namespace, and the documented errors: LimitExceeded (409,
 * two keys per user), NoSuchEntity (404), AccessDenied (403), SignatureDoesNotMatch (403). Its users and
 * keys live in memory, so tests assert what the provider ends up holding.
 */
import { HttpResponse, http } from "msw";
import { signV4 } from "../../../src/catalog/sigv4";
import {
  BASE64,
  bodyText,
  FaultQueue,
  type MswRequest,
  type Received,
  randomFrom,
  received,
  UPPER_DIGITS,
  withFault,
} from "./common";

const NS = "https://iam.amazonaws.com/doc/2010-05-08/";
const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/;
/** AWS's limit: "Access keys assigned to an IAM user: 2". */
const KEYS_PER_USER = 2;

export interface IamKey {
  id: string;
  secret: string;
  status: "Active" | "Inactive";
}

export type IamAction = "ListAccessKeys" | "CreateAccessKey" | "UpdateAccessKey" | "DeleteAccessKey";

function requestId(): string {
  return crypto.randomUUID();
}

function xml(body: string, status = 200): Response {
  return new HttpResponse(`<?xml version="1.0" encoding="UTF-8"?>\n${body}`, {
    status,
    headers: { "content-type": "text/xml" },
  });
}

export function iamError(code: string, message: string, status: number, type = "Sender"): Response {
  return xml(
    `<ErrorResponse xmlns="${NS}"><Error><Type>${type}</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>${requestId()}</RequestId></ErrorResponse>`,
    status,
  );
}

function done(action: IamAction): Response {
  return xml(
    `<${action}Response xmlns="${NS}"><ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata></${action}Response>`,
  );
}

export class AwsIamStandIn {
  /** IAM users and their access keys. */
  readonly users = new Map<string, IamKey[]>();
  /** Which access key may manage which user's keys (the rotation policy's Resource), and its secret. */
  private readonly principals = new Map<string, { secret: string; manages: string }>();
  readonly faults = new FaultQueue();
  readonly log: Received[] = [];

  /** Creates a user with one active key and returns the key. */
  addUser(userName: string): IamKey {
    const key = this.newKey();
    this.users.set(userName, [key]);
    return key;
  }

  /** A key of `ownerUser` whose policy allows the four access-key actions on `managedUser` only. */
  addRotator(ownerUser: string, managedUser: string): IamKey {
    const key = this.newKey();
    this.users.set(ownerUser, [...(this.users.get(ownerUser) ?? []), key]);
    this.principals.set(key.id, { secret: key.secret, manages: managedUser });
    return key;
  }

  keysOf(userName: string): IamKey[] {
    return [...(this.users.get(userName) ?? [])];
  }

  private newKey(): IamKey {
    return {
      id: `AKIA${randomFrom(UPPER_DIGITS, 16)}`,
      secret: randomFrom(BASE64, 40),
      status: "Active",
    };
  }

  handlers() {
    return [http.post("https://iam.amazonaws.com/", ({ request }) => this.handle(request))];
  }

  private async handle(request: MswRequest): Promise<Response> {
    const body = await bodyText(request);
    const form = new URLSearchParams(body);
    const action = form.get("Action") ?? "";
    this.log.push(await received(action, request));

    if (request.headers.get("content-type") !== "application/x-www-form-urlencoded; charset=utf-8") {
      return iamError("MalformedQueryString", "Unsupported content type", 400);
    }
    if (form.get("Version") !== "2010-05-08") {
      return iamError("InvalidAction", "Could not find operation for version", 400);
    }
    const caller = await this.authenticate(request, body);
    if (caller instanceof Response) return caller;

    const userName = form.get("UserName") ?? "";
    const keys = this.users.get(userName);
    if (caller.manages !== userName) {
      return iamError(
        "AccessDenied",
        `User is not authorized to perform: iam:${action} on resource: user ${userName}`,
        403,
      );
    }
    if (!keys) {
      return iamError("NoSuchEntity", `The user with name ${userName} cannot be found.`, 404);
    }
    const fault = this.faults.take(action);
    switch (action) {
      case "ListAccessKeys":
        return withFault(fault, () => {
          const members = keys
            .map(
              (key) =>
                `<member><UserName>${userName}</UserName><AccessKeyId>${key.id}</AccessKeyId><Status>${key.status}</Status><CreateDate>2026-01-01T00:00:00Z</CreateDate></member>`,
            )
            .join("");
          return xml(
            `<ListAccessKeysResponse xmlns="${NS}"><ListAccessKeysResult><UserName>${userName}</UserName><AccessKeyMetadata>${members}</AccessKeyMetadata><IsTruncated>false</IsTruncated></ListAccessKeysResult><ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata></ListAccessKeysResponse>`,
          );
        });
      case "CreateAccessKey":
        return withFault(fault, () => {
          if (keys.length >= KEYS_PER_USER) {
            return iamError("LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2", 409);
          }
          const key = this.newKey();
          keys.push(key);
          return xml(
            `<CreateAccessKeyResponse xmlns="${NS}"><CreateAccessKeyResult><AccessKey><UserName>${userName}</UserName><AccessKeyId>${key.id}</AccessKeyId><Status>Active</Status><SecretAccessKey>${key.secret}</SecretAccessKey><CreateDate>2026-01-01T00:00:00Z</CreateDate></AccessKey></CreateAccessKeyResult><ResponseMetadata><RequestId>${requestId()}</RequestId></ResponseMetadata></CreateAccessKeyResponse>`,
          );
        });
      case "UpdateAccessKey": {
        return withFault(fault, () => {
          const key = keys.find((entry) => entry.id === form.get("AccessKeyId"));
          const status = form.get("Status");
          if (status !== "Active" && status !== "Inactive") {
            return iamError("ValidationError", "Invalid Status", 400);
          }
          if (!key) return iamError("NoSuchEntity", "The Access Key cannot be found.", 404);
          key.status = status;
          return done("UpdateAccessKey");
        });
      }
      case "DeleteAccessKey":
        return withFault(fault, () => {
          const index = keys.findIndex((entry) => entry.id === form.get("AccessKeyId"));
          if (index < 0) return iamError("NoSuchEntity", "The Access Key cannot be found.", 404);
          keys.splice(index, 1);
          return done("DeleteAccessKey");
        });
      default:
        return iamError("InvalidAction", `Could not find operation ${action}`, 400);
    }
  }

  /** Checks the SigV4 Authorization header by signing the same request again with the caller's secret. */
  private async authenticate(request: MswRequest, body: string): Promise<{ manages: string } | Response> {
    const match = AUTHORIZATION.exec(request.headers.get("authorization") ?? "");
    if (!match) return iamError("IncompleteSignature", "Authorization header is malformed", 400);
    const [, accessKeyId = "", dateStamp, region, service, signedHeaders = "", signature] = match;
    const principal = this.principals.get(accessKeyId);
    if (!principal) {
      return iamError("InvalidClientTokenId", "The security token included in the request is invalid.", 403);
    }
    const amzDate = request.headers.get("x-amz-date") ?? "";
    const dated = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
    if (region !== "us-east-1" || service !== "iam" || !dated || !amzDate.startsWith(dateStamp ?? "")) {
      return iamError("SignatureDoesNotMatch", "Credential should be scoped to a valid region.", 403);
    }
    const date = new Date(`${dated[1]}-${dated[2]}-${dated[3]}T${dated[4]}:${dated[5]}:${dated[6]}Z`);
    const headers: Record<string, string> = {};
    for (const name of signedHeaders.split(";")) {
      if (name !== "host" && name !== "x-amz-date") headers[name] = request.headers.get(name) ?? "";
    }
    const expected = await signV4(
      { method: request.method, url: "https://iam.amazonaws.com/", headers, body },
      { accessKeyId, secretAccessKey: principal.secret },
      { region: "us-east-1", service: "iam", date },
    );
    if (expected.signature !== signature || !signedHeaders.split(";").includes("host")) {
      return iamError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
        403,
      );
    }
    return principal;
  }
}
