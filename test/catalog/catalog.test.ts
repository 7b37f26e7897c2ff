import { describe, expect, it } from "vitest";
import {
  describeService,
  findService,
  listServices,
  SERVICE_CATALOG,
  SERVICE_CATEGORIES,
} from "../../src/catalog";
import {
  ALPHABETS,
  generatedEntropyBits,
  generateFieldValue,
  randomString,
} from "../../src/catalog/generate";
import { matchesPattern, validateCredential } from "../../src/catalog/validate";
import { SHAPES } from "./samples";

const REQUIRED_PROVIDERS = [
  "stripe",
  "paypal",
  "razorpay",
  "google-ads",
  "meta-ads",
  "linkedin-marketing",
  "openai",
  "anthropic",
  "google-analytics",
  "aws-s3",
  "twilio",
  "sendgrid",
  "slack",
  "github",
  "shopify",
];

describe("the service catalogue", () => {
  it("contains the fifteen providers the issue names, each once", () => {
    const ids = SERVICE_CATALOG.map((service) => service.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of REQUIRED_PROVIDERS) expect(ids).toContain(id);
  });

  it("covers every category", () => {
    for (const category of SERVICE_CATEGORIES) expect(listServices({ category }).length).toBeGreaterThan(0);
  });

  it("filters by category and returns everything without a filter", () => {
    expect(listServices()).toBe(SERVICE_CATALOG);
    const payment = listServices({ category: "payment" });
    expect(payment.map((service) => service.id)).toEqual(
      expect.arrayContaining(["stripe", "paypal", "razorpay"]),
    );
    expect(payment.every((service) => service.category === "payment")).toBe(true);
  });

  it("finds a service by id and nothing for an unknown id", () => {
    expect(findService("stripe")?.name).toBe("Stripe");
    expect(findService("nope")).toBeUndefined();
    expect(findService("__proto__")).toBeUndefined();
  });

  it("has sample shapes for every field of every service (the tests cover all of it)", () => {
    for (const service of SERVICE_CATALOG) {
      expect(Object.keys(SHAPES[service.id] ?? {}).sort()).toEqual(
        service.fields.map((field) => field.name).sort(),
      );
    }
  });

  it("describes a service as plain JSON without the probe's code", () => {
    for (const service of SERVICE_CATALOG) {
      const description = describeService(service);
      expect(JSON.parse(JSON.stringify(description))).toEqual(description);
      expect(description).not.toHaveProperty("probe");
      expect(description.fields.length).toBe(service.fields.length);
    }
  });
});

describe.each(SERVICE_CATALOG.map((service) => [service.id, service] as const))(
  "catalogue entry %s",
  (_id, service) => {
    it("names itself, its category and its documentation over https", () => {
      expect(service.name.length).toBeGreaterThan(0);
      expect(service.description.length).toBeGreaterThan(0);
      expect(SERVICE_CATEGORIES).toContain(service.category);
      expect(new URL(service.docs_url).protocol).toBe("https:");
      expect(service.recommended_rotation_days).toBeGreaterThan(0);
      expect(service.recommended_rotation_days).toBeLessThanOrEqual(365);
    });

    it("has at least one required secret field and unique field names", () => {
      const names = service.fields.map((field) => field.name);
      expect(new Set(names).size).toBe(names.length);
      expect(service.fields.some((field) => field.secret && field.required)).toBe(true);
    });

    it("anchors every field pattern and environment marker", () => {
      for (const field of service.fields) {
        expect(field.pattern.startsWith("^") && field.pattern.endsWith("$")).toBe(true);
        expect(() => new RegExp(field.pattern)).not.toThrow();
        if (field.environment_marker) {
          expect(field.environment_marker.test.startsWith("^")).toBe(true);
          expect(field.environment_marker.live.startsWith("^")).toBe(true);
        }
      }
    });

    it("gives every field an example of the right shape that is itself refused as a placeholder", () => {
      for (const field of service.fields) expect(matchesPattern(field, field.example)).toBe(true);
      const examples = Object.fromEntries(service.fields.map((field) => [field.name, field.example]));
      const result = validateCredential(service, examples, {
        environment: "staging",
        securityLevel: "basic",
      });
      expect(result.ok).toBe(false);
      for (const field of service.fields.filter((spec) => spec.secret)) {
        const fieldResult = result.fields.find((entry) => entry.field === field.name);
        expect(fieldResult?.errors.join(" ")).toMatch(/placeholder|repeated or sequential/);
      }
    });

    it("only lets Keywarden generate values that pass the field's own format", () => {
      for (const spec of service.generatable) {
        const field = service.fields.find((entry) => entry.name === spec.field);
        expect(field?.secret).toBe(true);
        if (!field) continue;
        for (let i = 0; i < 20; i++) expect(matchesPattern(field, generateFieldValue(spec))).toBe(true);
        expect(generatedEntropyBits(spec)).toBeGreaterThanOrEqual(128);
      }
    });

    it("limits probes to a fixed list of hosts (or a pattern for per-customer hosts)", () => {
      expect(service.probe_hosts.length > 0 || service.probe_host_pattern !== undefined).toBe(true);
      for (const host of service.probe_hosts) expect(host).toMatch(/^[a-z0-9.-]+$/);
      if (service.probe_host_pattern) {
        expect(service.probe_host_pattern.startsWith("^") && service.probe_host_pattern.endsWith("$")).toBe(
          true,
        );
      }
    });
  },
);

describe("generated field values", () => {
  it("draw each character of the alphabet with near-uniform frequency (no modulo bias)", () => {
    // base62 is the case where `byte % 62` would favour the first 8 characters by 25%.
    const sample = randomString(ALPHABETS.base62, 62_000);
    const counts = new Map<string, number>();
    for (const char of sample) counts.set(char, (counts.get(char) ?? 0) + 1);
    expect(counts.size).toBe(62);
    const first8 =
      [...ALPHABETS.base62.slice(0, 8)].reduce((sum, char) => sum + (counts.get(char) ?? 0), 0) / 8;
    const rest = [...ALPHABETS.base62.slice(8)].reduce((sum, char) => sum + (counts.get(char) ?? 0), 0) / 54;
    expect(first8 / rest).toBeGreaterThan(0.9);
    expect(first8 / rest).toBeLessThan(1.1);
  });

  it("are different every time and carry the prefix", () => {
    const spec = { field: "x", length: 32, alphabet: "hex", prefix: "whk_" } as const;
    const values = new Set(Array.from({ length: 100 }, () => generateFieldValue(spec)));
    expect(values.size).toBe(100);
    for (const value of values) expect(value).toMatch(/^whk_[0-9a-f]{32}$/);
  });

  it("refuses an alphabet or length that cannot be sampled", () => {
    expect(() => randomString("a", 4)).toThrow(RangeError);
    expect(() => randomString("ab", -1)).toThrow(RangeError);
  });
});
