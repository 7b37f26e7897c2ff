/**
 * Real-shaped credential samples, written from each provider's documented format independently of the
 * catalogue's regexes (so a wrong regex shows up as a failing test, not as a tautology).
 *
 * A shape is a list of parts: literal text, a random segment drawn from a character set with the
 * documented length bounds, or one of a few fixed choices. From a shape the tests derive a good sample and
 * bad ones: the last random segment one character short, a character outside the set, or a wrong prefix.
 */
import { seededRandom } from "../../bench/seeded-random.mjs";
import type { CredentialFields } from "../../src/catalog/types";

export interface Segment {
  chars: string;
  min: number;
  max: number;
}
export interface Choice {
  oneOf: readonly string[];
}
export type Part = string | Segment | Choice;
export type Shape = readonly Part[];
export type FieldShape = Shape | { test: Shape; live: Shape };

export const LOWER = "abcdefghijklmnopqrstuvwxyz";
export const UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
export const DIGITS = "0123456789";
export const HEX = `${DIGITS}abcdef`;
export const ALNUM = `${UPPER}${LOWER}${DIGITS}`;
export const BASE64URL = `${ALNUM}_-`;
export const BASE64 = `${ALNUM}+/`;

const seg = (chars: string, min: number, max = min): Segment => ({ chars, min, max });

export const SHAPES: Readonly<Record<string, Readonly<Record<string, FieldShape>>>> = {
  stripe: {
    secret_key: { test: ["sk_test_", seg(ALNUM, 24, 99)], live: ["sk_live_", seg(ALNUM, 24, 99)] },
    publishable_key: { test: ["pk_test_", seg(ALNUM, 24, 99)], live: ["pk_live_", seg(ALNUM, 24, 99)] },
    webhook_secret: ["whsec_", seg(BASE64, 24, 64)],
  },
  paypal: {
    client_id: [seg(BASE64URL, 40, 100)],
    client_secret: [seg(BASE64URL, 40, 100)],
  },
  razorpay: {
    key_id: { test: ["rzp_test_", seg(ALNUM, 14)], live: ["rzp_live_", seg(ALNUM, 14)] },
    key_secret: [seg(ALNUM, 24)],
    webhook_secret: [seg(BASE64URL, 16, 64)],
  },
  shopify: {
    shop_domain: [seg(`${LOWER}${DIGITS}`, 1), seg(`${LOWER}${DIGITS}-`, 0, 20), ".myshopify.com"],
    access_token: ["shpat_", seg(HEX, 32)],
    api_secret_key: ["shpss_", seg(HEX, 32)],
  },
  "google-ads": {
    developer_token: [seg(BASE64URL, 22)],
    client_id: [seg(DIGITS, 12), "-", seg(`${LOWER}${DIGITS}`, 32), ".apps.googleusercontent.com"],
    client_secret: ["GOCSPX-", seg(BASE64URL, 28)],
    refresh_token: ["1//", seg(BASE64URL, 40, 200)],
    login_customer_id: [seg(DIGITS, 10)],
  },
  "meta-ads": {
    app_id: [seg("123456789", 1), seg(DIGITS, 14, 16)],
    app_secret: [seg(HEX, 32)],
    access_token: ["EAA", seg(ALNUM, 40, 200)],
    ad_account_id: ["act_", seg(DIGITS, 1, 16)],
    webhook_verify_token: [seg(BASE64URL, 16, 64)],
  },
  "linkedin-marketing": {
    client_id: [seg(`${LOWER}${DIGITS}`, 12, 20)],
    client_secret: [seg(ALNUM, 16)],
    access_token: ["AQ", seg(BASE64URL, 100, 350)],
  },
  openai: {
    api_key: ["sk-proj-", seg(BASE64URL, 40, 160)],
    organization_id: ["org-", seg(ALNUM, 24)],
    project_id: ["proj_", seg(ALNUM, 24)],
  },
  anthropic: {
    api_key: ["sk-ant-api03-", seg(BASE64URL, 93), "AA"],
  },
  gemini: {
    api_key: ["AIza", seg(BASE64URL, 35)],
  },
  "google-analytics": {
    measurement_id: ["G-", seg(`${UPPER}${DIGITS}`, 6, 12)],
    api_secret: [seg(BASE64URL, 16, 64)],
  },
  "aws-s3": {
    access_key_id: ["AKIA", seg(`${UPPER}${DIGITS}`, 16)],
    secret_access_key: [seg(BASE64, 40)],
    region: [{ oneOf: ["us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1"] }],
    session_token: [seg(BASE64, 100, 400)],
    bucket: [seg(`${LOWER}${DIGITS}`, 1), seg(`${LOWER}${DIGITS}.-`, 1, 40), seg(`${LOWER}${DIGITS}`, 1)],
  },
  github: {
    token: ["ghp_", seg(ALNUM, 36)],
    webhook_secret: [seg(BASE64URL, 20, 64)],
  },
  twilio: {
    account_sid: ["AC", seg(HEX, 32)],
    auth_token: [seg(HEX, 32)],
  },
  "twilio-api-key": {
    account_sid: ["AC", seg(HEX, 32)],
    api_key_sid: ["SK", seg(HEX, 32)],
    api_key_secret: [seg(ALNUM, 32)],
  },
  sendgrid: {
    api_key: ["SG.", seg(BASE64URL, 22), ".", seg(BASE64URL, 43)],
  },
  slack: {
    bot_token: ["xoxb-", seg(DIGITS, 8, 15), "-", seg(DIGITS, 8, 15), "-", seg(ALNUM, 24)],
    signing_secret: [seg(HEX, 32)],
  },
};

// Deterministic (bench/seeded-random.mjs), so every run draws the same samples.
let random = seededRandom(20261126);

export function resetSamples(seed = 20261126): void {
  random = seededRandom(seed);
}

function pick(chars: string | readonly string[]): string {
  return chars[Math.floor(random() * chars.length)] ?? "";
}

function segmentLength(segment: Segment): number {
  return segment.min + Math.floor(random() * (segment.max - segment.min + 1));
}

export function randomChars(chars: string, length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += pick(chars);
  return out;
}

export type Mode = "test" | "live";

export function shapeOf(service: string, field: string, mode: Mode = "test"): Shape {
  const shape = SHAPES[service]?.[field];
  if (!shape) throw new Error(`no sample shape for ${service}.${field}`);
  return "test" in shape ? shape[mode] : shape;
}

export function render(shape: Shape, length: (segment: Segment) => number = segmentLength): string {
  return shape
    .map((part) =>
      typeof part === "string"
        ? part
        : "oneOf" in part
          ? pick(part.oneOf)
          : randomChars(part.chars, length(part)),
    )
    .join("");
}

export function goodValue(service: string, field: string, mode: Mode = "test"): string {
  return render(shapeOf(service, field, mode));
}

/** A full, good field set (optional fields included) in the given mode. */
export function goodFields(service: string, mode: Mode = "test"): Record<string, string> {
  const shapes = SHAPES[service];
  if (!shapes) throw new Error(`no sample shapes for ${service}`);
  return Object.fromEntries(Object.keys(shapes).map((field) => [field, goodValue(service, field, mode)]));
}

const isSegment = (part: Part): part is Segment => typeof part !== "string" && !("oneOf" in part);

/** Every segment at its minimum, and the last one that can shrink one character shorter. */
export function tooShort(shape: Shape): string | null {
  const last = shape.findLastIndex((part) => isSegment(part) && part.min > 0);
  if (last < 0) return null;
  return shape
    .map((part, index) => {
      if (typeof part === "string") return part;
      if (!isSegment(part)) return pick(part.oneOf);
      return randomChars(part.chars, index === last ? part.min - 1 : part.min);
    })
    .join("");
}

/** A good value with a character no documented format allows, inserted in the middle. */
export function withBadCharacter(value: string, bad = "!"): string {
  const middle = Math.floor(value.length / 2);
  return `${value.slice(0, middle)}${bad}${value.slice(middle)}`;
}

/** The value with its literal prefix reversed (`sk_test_` -> `_tset_ks`), or null if it has none. */
export function withWrongPrefix(shape: Shape): string | null {
  const [first, ...rest] = shape;
  if (typeof first !== "string" || first.length < 2) return null;
  const reversed = [...first].reverse().join("");
  return render([reversed === first ? `q${first}` : reversed, ...rest]);
}

/** The shape with every random segment produced by `fill` (e.g. one repeated character). */
export function filledShape(shape: Shape, fill: (segment: Segment) => string): string {
  return shape
    .map((part) => (typeof part === "string" ? part : "oneOf" in part ? (part.oneOf[0] ?? "") : fill(part)))
    .join("");
}

export type { CredentialFields };
