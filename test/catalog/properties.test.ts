/**
 * Property-based checks (fast-check): arbitrary input never makes validation throw, and no message ever
 * repeats what was submitted; masking never shows more than a third of a value.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { SERVICE_CATALOG } from "../../src/catalog";
import { maskValue, validateCredential } from "../../src/catalog/validate";
import { runs } from "../setup/fast-check";

const service = fc.constantFrom(...SERVICE_CATALOG);
const options = fc.record({
  environment: fc.constantFrom("development" as const, "staging" as const, "production" as const),
  securityLevel: fc.constantFrom("basic" as const, "enhanced" as const, "enterprise" as const),
});
const anyString = fc.string({ unit: "binary", maxLength: 300 });
/** Long enough that finding it inside a fixed message by chance is not a concern. */
const distinctive = fc.string({ unit: "binary", minLength: 12, maxLength: 300 });

function messages(result: ReturnType<typeof validateCredential>): string {
  return JSON.stringify([result.errors, result.warnings, result.fields.map((field) => field.errors)]);
}

describe("validateCredential on arbitrary input", () => {
  it("never throws, whatever the fields hold", () => {
    fc.assert(
      fc.property(
        service,
        fc.dictionary(fc.oneof(anyString, fc.constantFrom("__proto__", "constructor")), fc.anything()),
        options,
        (definition, fields, opts) => {
          const result = validateCredential(definition, fields, opts);
          expect(typeof result.ok).toBe("boolean");
        },
      ),
      { numRuns: runs(1000) },
    );
  });

  it("never repeats a submitted value in any message", () => {
    fc.assert(
      fc.property(service, distinctive, options, (definition, value, opts) => {
        const fields = Object.fromEntries(definition.fields.map((field) => [field.name, value]));
        const result = validateCredential(definition, fields, opts);
        expect(messages(result)).not.toContain(value);
        expect(messages(result)).not.toContain(JSON.stringify(value).slice(1, -1));
      }),
      { numRuns: runs(1000) },
    );
  });

  it("never repeats an unknown field's name either", () => {
    fc.assert(
      fc.property(service, distinctive, options, (definition, name, opts) => {
        fc.pre(!definition.fields.some((field) => field.name === name));
        const result = validateCredential(definition, { [name]: "v" }, opts);
        expect(JSON.stringify(result)).not.toContain(JSON.stringify(name).slice(1, -1));
      }),
      { numRuns: runs(500) },
    );
  });

  it("accepts nothing that fails a field's own pattern", () => {
    fc.assert(
      fc.property(service, anyString, options, (definition, value, opts) => {
        const fields = Object.fromEntries(definition.fields.map((field) => [field.name, value]));
        const result = validateCredential(definition, fields, opts);
        if (result.ok) {
          for (const field of definition.fields) expect(new RegExp(field.pattern).test(value)).toBe(true);
        }
      }),
      { numRuns: runs(500) },
    );
  });
});

describe("maskValue on arbitrary input", () => {
  it("never shows more than a third of the value and never the whole value", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 500 }), (value) => {
        const masked = maskValue(value);
        const chars = Array.from(value);
        const shown = masked === "••••" ? 0 : Array.from(masked).length - 1;
        expect(shown * 3).toBeLessThanOrEqual(chars.length);
        if (chars.length >= 12) expect(masked).not.toBe(value);
        if (chars.length > 0) expect(masked.includes(value) && value.length > 4).toBe(false);
      }),
      { numRuns: runs(2000) },
    );
  });
});
