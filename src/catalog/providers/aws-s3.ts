import { optionalField, requireField } from "../request";
import { signV4 } from "../sigv4";
import type { ServiceDefinition } from "../types";

// docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html and the IAM identifiers page:
// long-term access key ids start `AKIA`, temporary (STS) ones `ASIA`, then 16 upper-case alphanumerics; the
// secret is 40 characters of base64 text. Temporary keys also need their session token. Nothing in the
// values says test or live. China and GovCloud partitions are out of scope (other STS hosts).
const REGION = "^(?:us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-[0-9]$";
const STS_ERROR_CODE = /<Code>([A-Za-z.]+)<\/Code>/;
const ARN = /<Arn>(arn:aws:[^<]{1,2048})<\/Arn>/;
/** STS error codes that mean the key pair itself was refused. */
const REJECTED_CODES = new Set([
  "InvalidClientTokenId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "IncompleteSignature",
]);

export const awsS3: ServiceDefinition = {
  id: "aws-s3",
  name: "AWS S3",
  category: "infrastructure",
  description: "Object storage on Amazon S3 with an IAM access key.",
  docs_url: "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html",
  fields: [
    {
      name: "access_key_id",
      label: "Access key ID",
      secret: false,
      required: true,
      pattern: "^(?:AKIA|ASIA)[A-Z0-9]{16}$",
      example: "AKIAEXAMPLEKEY000001",
    },
    {
      name: "secret_access_key",
      label: "Secret access key",
      secret: true,
      required: true,
      pattern: "^[A-Za-z0-9/+]{40}$",
      example: "EXAMPLEaBcDeFgHiJkLmNoPqRsTuVwXyZ/+01234",
    },
    {
      name: "region",
      label: "Region",
      secret: false,
      required: true,
      pattern: REGION,
      example: "eu-west-1",
    },
    {
      name: "session_token",
      label: "Session token (temporary keys only)",
      secret: true,
      required: false,
      pattern: "^[A-Za-z0-9/+=]{100,2048}$",
      example: `EXAMPLE${"aBcDeFgHiJkLmNoPqRsTuVwXyZ/+".repeat(4)}==`,
    },
    {
      name: "bucket",
      label: "Bucket",
      secret: false,
      required: false,
      pattern: "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
      example: "example-bucket",
    },
  ],
  generatable: [],
  // CIS AWS Foundations Benchmark 1.14: rotate access keys every 90 days or less.
  recommended_rotation_days: 90,
  probe_hosts: [],
  probe_host_pattern: "^sts\\.(?:us|eu|ap|ca|sa|me|af|il|mx)-[a-z]+-[0-9]\\.amazonaws\\.com$",
  probe: {
    // GetCallerIdentity needs no IAM permission and cannot be denied, so it proves the key pair and nothing
    // else (docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html). Regional endpoint,
    // as AWS recommends over the global one.
    request: async (fields, ctx) => {
      const region = requireField(fields, "region");
      if (!new RegExp(REGION).test(region)) throw new TypeError("probe needs a valid region field");
      const sessionToken = optionalField(fields, "session_token");
      const signed = await signV4(
        {
          method: "POST",
          url: `https://sts.${region}.amazonaws.com/`,
          headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
          body: "Action=GetCallerIdentity&Version=2011-06-15",
        },
        {
          accessKeyId: requireField(fields, "access_key_id"),
          secretAccessKey: requireField(fields, "secret_access_key"),
          ...(sessionToken ? { sessionToken } : {}),
        },
        { region, service: "sts", date: new Date(ctx.now()) },
      );
      return {
        method: "POST",
        url: `https://sts.${region}.amazonaws.com/`,
        headers: signed.headers,
        body: "Action=GetCallerIdentity&Version=2011-06-15",
      };
    },
    interpret: (response) => {
      if (response.status === 200) {
        const arn = ARN.exec(response.text)?.[1];
        return arn
          ? { status: "valid", reason: "authenticated", account: arn }
          : { status: "unknown", reason: "unexpected_response" };
      }
      const code = STS_ERROR_CODE.exec(response.text)?.[1];
      if (code !== undefined && REJECTED_CODES.has(code))
        return { status: "invalid", reason: "key_rejected" };
      // RequestExpired / signature-time errors mean our clock is off, not that the key is bad.
      if (code === "RequestExpired") return { status: "unknown", reason: "clock_skew" };
      return { status: "unknown", reason: "unexpected_response" };
    },
  },
};
