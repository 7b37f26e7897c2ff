/**
 * SigV4 against AWS's published examples: the IAM ListUsers walk-through in "Create a signed AWS API
 * request" (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html) and cases of the
 * aws-sig-v4-test-suite. Credentials are AWS's documentation example pair.
 */
import { describe, expect, it } from "vitest";
import { deriveSigningKey, signV4 } from "../../src/catalog/sigv4";
import { toHex } from "../../src/crypto/encoding";

const CREDENTIALS = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};
const DATE = new Date(Date.UTC(2015, 7, 30, 12, 36, 0));

describe("SigV4 signing", () => {
  it("derives AWS's published signing key for 20150830/us-east-1/iam", async () => {
    const key = await deriveSigningKey(CREDENTIALS.secretAccessKey, "20150830", "us-east-1", "iam");
    expect(toHex(key)).toBe("c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
  });

  it("reproduces AWS's IAM ListUsers example: canonical request hash, string to sign, signature", async () => {
    const signed = await signV4(
      {
        method: "GET",
        url: "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
        headers: { "Content-Type": "application/x-www-form-urlencoded; charset=utf-8" },
        body: "",
      },
      CREDENTIALS,
      { region: "us-east-1", service: "iam", date: DATE },
    );
    expect(signed.canonicalRequest).toBe(
      [
        "GET",
        "/",
        "Action=ListUsers&Version=2010-05-08",
        "content-type:application/x-www-form-urlencoded; charset=utf-8",
        "host:iam.amazonaws.com",
        "x-amz-date:20150830T123600Z",
        "",
        "content-type;host;x-amz-date",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      ].join("\n"),
    );
    expect(signed.stringToSign).toBe(
      "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n" +
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59",
    );
    expect(signed.signature).toBe("5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    expect(signed.headers.authorization).toBe(
      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, " +
        "SignedHeaders=content-type;host;x-amz-date, " +
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
    );
    expect(signed.headers["x-amz-date"]).toBe("20150830T123600Z");
  });

  const suite = [
    [
      "get-vanilla",
      "GET",
      "https://example.amazonaws.com/",
      "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ],
    [
      "get-vanilla-query-order-key-case",
      "GET",
      "https://example.amazonaws.com/?Param2=value2&Param1=value1",
      "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ],
    [
      "post-vanilla",
      "POST",
      "https://example.amazonaws.com/",
      "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ],
  ] as const;

  it.each(suite)("matches the test suite's %s signature", async (_name, method, url, signature) => {
    const signed = await signV4({ method, url, headers: {}, body: "" }, CREDENTIALS, {
      region: "us-east-1",
      service: "service",
      date: DATE,
    });
    expect(signed.signature).toBe(signature);
    expect(signed.headers.authorization).toBe(
      `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=${signature}`,
    );
  });

  it("signs a different signature for another secret, region or date", async () => {
    const request = {
      method: "POST",
      url: "https://sts.eu-west-1.amazonaws.com/",
      headers: {},
      body: "Action=GetCallerIdentity&Version=2011-06-15",
    };
    const scope = { region: "eu-west-1", service: "sts", date: DATE };
    const base = (await signV4(request, CREDENTIALS, scope)).signature;
    expect(
      (await signV4(request, { ...CREDENTIALS, secretAccessKey: "x".repeat(40) }, scope)).signature,
    ).not.toBe(base);
    expect((await signV4(request, CREDENTIALS, { ...scope, region: "eu-west-2" })).signature).not.toBe(base);
    expect(
      (await signV4(request, CREDENTIALS, { ...scope, date: new Date(DATE.getTime() + 1000) })).signature,
    ).not.toBe(base);
  });

  it("adds and signs the session token of temporary credentials", async () => {
    const signed = await signV4(
      { method: "POST", url: "https://sts.us-east-1.amazonaws.com/", headers: {}, body: "" },
      { ...CREDENTIALS, sessionToken: "FQoGZXIvYXdzEXAMPLE" },
      { region: "us-east-1", service: "sts", date: DATE },
    );
    expect(signed.headers["x-amz-security-token"]).toBe("FQoGZXIvYXdzEXAMPLE");
    expect(signed.headers.authorization).toContain("SignedHeaders=host;x-amz-date;x-amz-security-token,");
  });

  it("refuses to sign a path it would have to encode", async () => {
    await expect(
      signV4(
        { method: "GET", url: "https://example.amazonaws.com/a b", headers: {}, body: "" },
        CREDENTIALS,
        {
          region: "us-east-1",
          service: "service",
          date: DATE,
        },
      ),
    ).rejects.toThrow(RangeError);
  });
});
