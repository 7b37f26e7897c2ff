/**
 * AWS Signature Version 4 with WebCrypto (HMAC-SHA256, SHA-256), for the AWS probe's signed STS call.
 * Follows "Create a signed AWS API request" in the IAM user guide
 * (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).
 *
 * Scope is deliberately narrow: header-based signing of requests whose path is made of unreserved
 * characters (STS and friends post to `/`). Anything else is refused instead of being signed subtly wrong.
 */
import { toHex, utf8 } from "../crypto/encoding";

export interface SigV4Request {
  method: string;
  url: string;
  /** Headers to send and sign, besides `host` and `x-amz-date`, which the signer adds. */
  headers: Record<string, string>;
  body: string;
}

export interface SigV4Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface SigV4Scope {
  region: string;
  service: string;
  /** Signing time; the request must reach AWS within 5 minutes of it. */
  date: Date;
}

export interface SignedRequest {
  /** The headers to send: the given ones plus `x-amz-date`, `authorization` and, with a session token,
   * `x-amz-security-token`. `host` is signed but left for fetch to set from the URL. */
  headers: Record<string, string>;
  canonicalRequest: string;
  stringToSign: string;
  signature: string;
}

const ALGORITHM = "AWS4-HMAC-SHA256";

async function sha256Hex(data: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", utf8(data)));
}

async function hmac(key: ArrayBuffer | Uint8Array<ArrayBuffer>, data: string): Promise<ArrayBuffer> {
  const cryptoKey = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return crypto.subtle.sign("HMAC", cryptoKey, utf8(data));
}

/** kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request"). */
export async function deriveSigningKey(
  secretAccessKey: string,
  dateStamp: string,
  region: string,
  service: string,
): Promise<ArrayBuffer> {
  const kDate = await hmac(utf8(`AWS4${secretAccessKey}`), dateStamp);
  const kRegion = await hmac(kDate, region);
  const kService = await hmac(kRegion, service);
  return hmac(kService, "aws4_request");
}

/** RFC 3986 percent-encoding of everything but unreserved characters, as SigV4 requires. */
function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function canonicalQuery(url: URL): string {
  return [...url.searchParams]
    .map(([name, value]) => [uriEncode(name), uriEncode(value)] as const)
    .sort(([a, av], [b, bv]) => (a === b ? (av < bv ? -1 : av > bv ? 1 : 0) : a < b ? -1 : 1))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
}

/** `20150830T123600Z` and `20150830`. */
function amzDates(date: Date): { amzDate: string; dateStamp: string } {
  const amzDate = date
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
  return { amzDate, dateStamp: amzDate.slice(0, 8) };
}

export async function signV4(
  request: SigV4Request,
  credentials: SigV4Credentials,
  scope: SigV4Scope,
): Promise<SignedRequest> {
  const url = new URL(request.url);
  if (!/^(\/[A-Za-z0-9._~-]*)+$/.test(url.pathname)) {
    throw new RangeError("sigv4: only paths of unreserved characters are supported");
  }
  const { amzDate, dateStamp } = amzDates(scope.date);

  const headers: Record<string, string> = { ...request.headers, "x-amz-date": amzDate };
  if (credentials.sessionToken) headers["x-amz-security-token"] = credentials.sessionToken;

  const canonical = new Map<string, string>([["host", url.host]]);
  for (const [name, value] of Object.entries(headers)) {
    canonical.set(name.toLowerCase(), value.trim().replace(/\s+/g, " "));
  }
  const names = [...canonical.keys()].sort();
  const signedHeaders = names.join(";");

  const canonicalRequest = [
    request.method.toUpperCase(),
    url.pathname,
    canonicalQuery(url),
    names.map((name) => `${name}:${canonical.get(name)}\n`).join(""),
    signedHeaders,
    await sha256Hex(request.body),
  ].join("\n");

  const credentialScope = `${dateStamp}/${scope.region}/${scope.service}/aws4_request`;
  const stringToSign = [ALGORITHM, amzDate, credentialScope, await sha256Hex(canonicalRequest)].join("\n");
  const signingKey = await deriveSigningKey(
    credentials.secretAccessKey,
    dateStamp,
    scope.region,
    scope.service,
  );
  const signature = toHex(await hmac(signingKey, stringToSign));

  headers.authorization = `${ALGORITHM} Credential=${credentials.accessKeyId}/${credentialScope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return { headers, canonicalRequest, stringToSign, signature };
}
