import { describe, expect, it } from "vitest";
import { findService, SERVICE_CATALOG } from "../../src/catalog";
import type { Environment, SecurityLevel, ServiceDefinition } from "../../src/catalog/types";
import { type CredentialValidation, maskValue, validateCredential } from "../../src/catalog/validate";
import {
  ALNUM,
  BASE64URL,
  filledShape,
  goodFields,
  goodValue,
  HEX,
  randomChars,
  shapeOf,
  tooShort,
  withBadCharacter,
  withWrongPrefix,
} from "./samples";

const STAGING_BASIC = { environment: "staging", securityLevel: "basic" } as const;

function service(id: string): ServiceDefinition {
  const found = findService(id);
  if (!found) throw new Error(`no service ${id}`);
  return found;
}

function fieldErrors(result: CredentialValidation, name: string): string[] {
  return result.fields.find((entry) => entry.field === name)?.errors ?? [];
}

function allMessages(result: CredentialValidation): string[] {
  return [...result.errors, ...result.warnings, ...result.fields.flatMap((entry) => entry.errors)];
}

/**
 * Every message is free of every submitted value (threat model case 18). A value that is itself part of
 * the catalogue's own text (a bare `.myshopify.com`, say) cannot be told apart from it, so it is skipped.
 */
function expectNoEcho(result: CredentialValidation, fields: Record<string, unknown>): void {
  const text = JSON.stringify(allMessages(result));
  const catalogueText = JSON.stringify(SERVICE_CATALOG.map((entry) => [entry.name, entry.fields]));
  for (const value of Object.values(fields)) {
    if (typeof value === "string" && value.length >= 8 && !catalogueText.includes(value)) {
      expect(text).not.toContain(value);
    }
  }
}

const services = SERVICE_CATALOG.map((entry) => [entry.id, entry] as const);

describe.each(services)("validating %s credentials", (id, definition) => {
  it("accepts real-shaped test-mode and live-mode samples", () => {
    for (const mode of ["test", "live"] as const) {
      for (let i = 0; i < 25; i++) {
        const fields = goodFields(id, mode);
        const result = validateCredential(definition, fields, STAGING_BASIC);
        expect(allMessages(result)).toEqual([]);
        expect(result.ok).toBe(true);
        expect(result.fields.every((entry) => entry.format_ok)).toBe(true);
      }
    }
  });

  it("accepts a set with only the required fields", () => {
    const fields = goodFields(id);
    for (const field of definition.fields) if (!field.required) delete fields[field.name];
    expect(validateCredential(definition, fields, STAGING_BASIC).ok).toBe(true);
  });

  it("rejects each field when its last segment is one character too short", () => {
    for (const field of definition.fields) {
      const short = tooShort(shapeOf(id, field.name));
      if (short === null) continue;
      const fields = { ...goodFields(id), [field.name]: short };
      const result = validateCredential(definition, fields, STAGING_BASIC);
      expect(result.ok).toBe(false);
      expect(fieldErrors(result, field.name).join(" ")).toContain("does not match");
      expectNoEcho(result, fields);
    }
  });

  it("rejects each field with a character outside its documented character set", () => {
    for (const field of definition.fields) {
      for (const bad of ["!", "é", " ", "\u0000"]) {
        const fields = { ...goodFields(id), [field.name]: withBadCharacter(goodValue(id, field.name), bad) };
        const result = validateCredential(definition, fields, STAGING_BASIC);
        expect(result.ok).toBe(false);
        expect(result.fields.find((entry) => entry.field === field.name)?.format_ok).toBe(false);
        expectNoEcho(result, fields);
      }
    }
  });

  it("rejects each prefixed field with a wrong prefix", () => {
    for (const field of definition.fields) {
      const wrong = withWrongPrefix(shapeOf(id, field.name));
      if (wrong === null) continue;
      const fields = { ...goodFields(id), [field.name]: wrong };
      const result = validateCredential(definition, fields, STAGING_BASIC);
      expect(result.fields.find((entry) => entry.field === field.name)?.format_ok).toBe(false);
      expectNoEcho(result, fields);
    }
  });

  it("rejects leading or trailing whitespace instead of silently trimming it", () => {
    const secret = definition.fields.find((field) => field.secret && field.required);
    if (!secret) throw new Error("no required secret");
    const fields = { ...goodFields(id), [secret.name]: `${goodValue(id, secret.name)}\n` };
    const result = validateCredential(definition, fields, STAGING_BASIC);
    expect(fieldErrors(result, secret.name)).toContain(`${secret.label} has leading or trailing whitespace`);
  });

  it("reports each missing required field by its label", () => {
    for (const field of definition.fields.filter((spec) => spec.required)) {
      const fields: Record<string, unknown> = goodFields(id);
      delete fields[field.name];
      const result = validateCredential(definition, fields, STAGING_BASIC);
      expect(result.ok).toBe(false);
      expect(fieldErrors(result, field.name)).toEqual([`${field.label} is required`]);
      // An empty string or null is as missing as an absent key.
      for (const empty of ["", null]) {
        const again = validateCredential(definition, { ...fields, [field.name]: empty }, STAGING_BASIC);
        expect(fieldErrors(again, field.name)).toEqual([`${field.label} is required`]);
      }
    }
  });

  it("rejects an unknown extra field without naming it", () => {
    const secretLookingName = randomChars(ALNUM, 40);
    const fields = { ...goodFields(id), [secretLookingName]: "x" };
    const result = validateCredential(definition, fields, STAGING_BASIC);
    expect(result.ok).toBe(false);
    expect(result.errors.join(" ")).toContain("1 unknown field(s)");
    expect(JSON.stringify(result)).not.toContain(secretLookingName);
  });

  it("rejects values that are not strings", () => {
    const secret = definition.fields.find((field) => field.secret && field.required);
    if (!secret) throw new Error("no required secret");
    for (const value of [42, true, { a: 1 }, ["x"]]) {
      const result = validateCredential(
        definition,
        { ...goodFields(id), [secret.name]: value },
        STAGING_BASIC,
      );
      expect(fieldErrors(result, secret.name)).toEqual([`${secret.label} must be a string`]);
    }
  });

  it("refuses placeholders in every secret field, even when shaped right", () => {
    for (const field of definition.fields.filter((spec) => spec.secret)) {
      const shape = shapeOf(id, field.name);
      const repeated = filledShape(shape, (segment) =>
        (segment.chars[0] ?? "a").repeat(Math.max(segment.max, 8)),
      );
      const sequential = filledShape(shape, (segment) =>
        segment.chars.repeat(Math.ceil(segment.max / segment.chars.length)).slice(0, segment.max),
      );
      for (const value of [repeated, sequential, "your_api_key", "changeme", "xxxxxxxxxxxxxxxxxxxxxxxx"]) {
        const fields = { ...goodFields(id), [field.name]: value };
        const result = validateCredential(definition, fields, STAGING_BASIC);
        expect(result.ok).toBe(false);
        expect(fieldErrors(result, field.name).join(" ")).toMatch(/placeholder|repeated or sequential/);
        expectNoEcho(result, fields);
      }
    }
  });

  it("masks every sample value so that at most a third of it shows", () => {
    for (let i = 0; i < 10; i++) {
      for (const value of Object.values(goodFields(id, i % 2 === 0 ? "test" : "live"))) {
        const masked = maskValue(value);
        const shown = Array.from(masked.replace("…", "").replace(/•/g, "")).length;
        expect(shown * 3).toBeLessThanOrEqual(Array.from(value).length);
        if (value.length >= 12) expect(masked).not.toContain(value);
      }
    }
  });
});

describe("provider-specific formats", () => {
  const stripe = service("stripe");

  it("accepts Stripe restricted keys and today's long secret keys", () => {
    const body = randomChars(ALNUM, 99);
    for (const key of [`rk_live_${body}`, `sk_test_51${body}`, `rk_test_${body.slice(0, 24)}`]) {
      expect(validateCredential(stripe, { secret_key: key }, STAGING_BASIC).ok).toBe(true);
    }
  });

  it("rejects a Stripe publishable key in the secret key field", () => {
    const result = validateCredential(
      stripe,
      { secret_key: `pk_test_${randomChars(ALNUM, 99)}` },
      STAGING_BASIC,
    );
    expect(result.fields[0]?.format_ok).toBe(false);
  });

  it("refuses Stripe's documentation test key", () => {
    const result = validateCredential(
      stripe,
      { secret_key: "sk_test_4eC39HqLyjWDarjtT1zdp7dc" },
      STAGING_BASIC,
    );
    expect(result.fields[0]?.format_ok).toBe(true);
    expect(result.ok).toBe(false);
    expect(fieldErrors(result, "secret_key")).toEqual([
      "Secret or restricted key looks like a placeholder or documentation example, not a real credential",
    ]);
  });

  it("refuses AWS's documented example key pair", () => {
    const result = validateCredential(
      service("aws-s3"),
      {
        access_key_id: "AKIAIOSFODNN7EXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
      },
      STAGING_BASIC,
    );
    expect(result.ok).toBe(false);
    expect(fieldErrors(result, "access_key_id").join()).toContain("placeholder or documentation example");
    expect(fieldErrors(result, "secret_access_key").join()).toContain("placeholder or documentation example");
  });

  it("accepts AWS temporary (ASIA) key ids and rejects other key-id prefixes", () => {
    const aws = service("aws-s3");
    const base = goodFields("aws-s3");
    expect(
      validateCredential(
        aws,
        { ...base, access_key_id: `ASIA${randomChars("ABCDEFGHJK234567", 16)}` },
        STAGING_BASIC,
      ).ok,
    ).toBe(true);
    // AIDA is an IAM user id, not an access key id.
    const result = validateCredential(
      aws,
      { ...base, access_key_id: `AIDA${randomChars("ABCDEFGHJK234567", 16)}` },
      STAGING_BASIC,
    );
    expect(fieldErrors(result, "access_key_id").join()).toContain("does not match");
  });

  it("accepts OpenAI legacy keys (with T3BlbkFJ) and service-account keys", () => {
    const openai = service("openai");
    for (const key of [
      `sk-${randomChars(ALNUM, 20)}T3BlbkFJ${randomChars(ALNUM, 20)}`,
      `sk-svcacct-${randomChars(BASE64URL, 120)}`,
    ]) {
      expect(validateCredential(openai, { api_key: key }, STAGING_BASIC).ok).toBe(true);
    }
    // A legacy-length key without the T3BlbkFJ marker is not an OpenAI key.
    const result = validateCredential(openai, { api_key: `sk-${randomChars(ALNUM, 48)}` }, STAGING_BASIC);
    expect(result.fields[0]?.format_ok).toBe(false);
  });

  it("rejects an Anthropic key that does not end in AA or has the wrong version tag", () => {
    const anthropic = service("anthropic");
    const body = randomChars(BASE64URL, 93);
    expect(validateCredential(anthropic, { api_key: `sk-ant-api03-${body}AB` }, STAGING_BASIC).ok).toBe(
      false,
    );
    expect(validateCredential(anthropic, { api_key: `sk-ant-api02-${body}AA` }, STAGING_BASIC).ok).toBe(
      false,
    );
  });

  it("accepts GitHub fine-grained tokens", () => {
    const token = `github_pat_${randomChars(ALNUM, 22)}_${randomChars(ALNUM, 59)}`;
    expect(validateCredential(service("github"), { token }, STAGING_BASIC).ok).toBe(true);
  });

  it("rejects a Shopify shop domain that is not a myshopify.com name", () => {
    const shopify = service("shopify");
    const base = goodFields("shopify");
    for (const shop_domain of [
      "evil.com",
      "shop.myshopify.com.evil.com",
      "Shop.myshopify.com",
      "a/b.myshopify.com",
    ]) {
      const result = validateCredential(shopify, { ...base, shop_domain }, STAGING_BASIC);
      expect(result.fields[0]?.format_ok).toBe(false);
    }
  });

  it("rejects Twilio SIDs with upper-case hex or another resource prefix", () => {
    const twilio = service("twilio");
    const base = goodFields("twilio");
    for (const account_sid of [`AC${randomChars("ABCDEF", 32)}`, `SK${randomChars(HEX, 32)}`]) {
      expect(validateCredential(twilio, { ...base, account_sid }, STAGING_BASIC).ok).toBe(false);
    }
  });
});

describe("environment mismatch", () => {
  const levels: SecurityLevel[] = ["basic", "enhanced", "enterprise"];
  const marked = ["stripe", "razorpay"];
  const unmarked = SERVICE_CATALOG.map((entry) => entry.id).filter((id) => !marked.includes(id));

  function check(id: string, mode: "test" | "live", environment: Environment, securityLevel: SecurityLevel) {
    const fields = goodFields(id, mode);
    return { fields, result: validateCredential(service(id), fields, { environment, securityLevel }) };
  }

  it.each(marked)("detects test and live %s keys from their prefixes", (id) => {
    expect(check(id, "test", "staging", "basic").result.environment.detected).toBe("test");
    expect(check(id, "live", "staging", "basic").result.environment.detected).toBe("live");
  });

  it.each(marked)("only warns about a test %s key for production at the basic level", (id) => {
    const { fields, result } = check(id, "test", "production", "basic");
    expect(result.environment).toEqual({ detected: "test", mismatch: true, refused: false });
    expect(result.ok).toBe(true);
    expect(result.warnings.join()).toContain("test");
    expectNoEcho(result, fields);
  });

  it.each(marked)("refuses a test %s key for production at the enhanced and enterprise levels", (id) => {
    for (const level of ["enhanced", "enterprise"] as const) {
      const { result } = check(id, "test", "production", level);
      expect(result.environment).toEqual({ detected: "test", mismatch: true, refused: true });
      expect(result.ok).toBe(false);
      expect(result.errors.join()).toContain("production");
    }
  });

  it.each(marked)("flags a live %s key for development, refused above basic", (id) => {
    for (const level of levels) {
      const { result } = check(id, "live", "development", level);
      expect(result.environment.mismatch).toBe(true);
      expect(result.environment.refused).toBe(level !== "basic");
      expect(result.ok).toBe(level === "basic");
    }
  });

  it.each(marked)("accepts matching %s modes, and either mode for staging", (id) => {
    for (const level of levels) {
      expect(check(id, "test", "development", level).result.environment.mismatch).toBe(false);
      expect(check(id, "live", "production", level).result.environment.mismatch).toBe(false);
      expect(check(id, "test", "staging", level).result.ok).toBe(true);
      expect(check(id, "live", "staging", level).result.ok).toBe(true);
    }
  });

  it.each(unmarked)("detects nothing for %s, whose values do not say test or live", (id) => {
    for (const environment of ["development", "production"] as const) {
      const { result } = check(id, "test", environment, "enterprise");
      expect(result.environment).toEqual({ detected: null, mismatch: false, refused: false });
      expect(result.ok).toBe(true);
    }
  });

  it("rejects a Stripe set whose secret and publishable keys disagree on mode", () => {
    const fields = {
      secret_key: goodValue("stripe", "secret_key", "test"),
      publishable_key: goodValue("stripe", "publishable_key", "live"),
    };
    const result = validateCredential(service("stripe"), fields, STAGING_BASIC);
    expect(result.ok).toBe(false);
    expect(result.environment.detected).toBeNull();
    expect(result.errors).toContain("the Stripe fields disagree on test or live mode");
  });
});

describe("strength", () => {
  it("scores a long random secret at 100 and reports no issues", () => {
    const result = validateCredential(service("stripe"), goodFields("stripe"), STAGING_BASIC);
    const strength = result.fields[0]?.strength;
    expect(strength?.issues).toEqual([]);
    expect(strength?.classes).toBeGreaterThanOrEqual(3);
    expect(strength?.entropy_bits_per_char).toBeGreaterThan(4);
  });

  it("reports low variety and a low score for a shaped but repetitive secret", () => {
    const result = validateCredential(
      service("twilio"),
      { account_sid: goodValue("twilio", "account_sid"), auth_token: "abababababababababababababababab" },
      STAGING_BASIC,
    );
    const strength = result.fields[1]?.strength;
    expect(strength?.score).toBeLessThan(30);
    expect(strength?.entropy_bits_per_char).toBe(1);
    expect(strength?.issues).toEqual(
      expect.arrayContaining(["low character variety", "estimated entropy under 64 bits"]),
    );
  });

  it("judges the strength of secrets only, not of identifiers such as a region", () => {
    const result = validateCredential(service("aws-s3"), goodFields("aws-s3"), STAGING_BASIC);
    expect(result.fields.find((entry) => entry.field === "region")?.strength).toBeNull();
    expect(result.fields.find((entry) => entry.field === "secret_access_key")?.strength?.length).toBe(40);
  });
});

describe("maskValue", () => {
  it("shows the first and last four characters of a long key", () => {
    expect(maskValue("sk_test_abcdefghijklmnop9xQa")).toBe("sk_t…9xQa");
  });

  it("masks short values completely, without revealing their length", () => {
    for (const value of ["", "a", "abcdefghijk", "12345678901"]) expect(maskValue(value)).toBe("••••");
  });

  it("never shows more than a third of the value at the boundaries", () => {
    for (let length = 12; length <= 40; length++) {
      const value = "k".repeat(length);
      const shown = maskValue(value).length - 1;
      expect(shown * 3).toBeLessThanOrEqual(length);
    }
  });

  it("never splits a surrogate pair", () => {
    const value = "😀".repeat(30);
    expect(maskValue(value)).toBe(`${"😀".repeat(4)}…${"😀".repeat(4)}`);
  });
});
