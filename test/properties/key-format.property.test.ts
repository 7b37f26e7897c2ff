/**
 * Property tests for the issued-key format (src/crypto/keys.ts): `<prefix>_<env>_<random><checksum>`
 * with a 6-character base62 CRC-32 checksum. The checksum is recomputed here by an independent
 * bitwise CRC-32, so keys can be built from fast-check's own (shrinkable, reproducible) random
 * parts instead of the CSPRNG.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  displayParts,
  generateKey,
  type KeyEnvironment,
  parseKey,
  randomLengthFor,
  randomLengthForLevel,
  type SecurityLevel,
} from "../../src/crypto/keys";
import { runs } from "../setup/fast-check";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LEVELS: SecurityLevel[] = ["basic", "enhanced", "enterprise"];
const ENVIRONMENTS: KeyEnvironment[] = ["live", "test"];
const MIN_RANDOM = randomLengthFor(128);
const MAX_RANDOM = randomLengthForLevel("enterprise");

/** Bit-at-a-time CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320): no table shared with src. */
function referenceCrc32(text: string): number {
  let crc = 0xffffffff;
  for (const char of text) {
    crc ^= char.charCodeAt(0) & 0xff;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function referenceChecksum(randomPart: string): string {
  let value = referenceCrc32(randomPart);
  let out = "";
  for (let i = 0; i < 6; i++) {
    out = BASE62[value % 62] + out;
    value = Math.floor(value / 62);
  }
  return out;
}

const prefixArb = fc.stringMatching(/^[a-z][a-z0-9]{0,7}$/);
const environmentArb = fc.constantFrom(...ENVIRONMENTS);
const levelArb = fc.constantFrom(...LEVELS);
const base62Arb = (minLength: number, maxLength: number) =>
  fc.string({ unit: fc.constantFrom(...BASE62), minLength, maxLength });

/** A well-formed key built from fast-check's randomness, any legal random length. */
const keyArb = fc
  .record({ prefix: prefixArb, environment: environmentArb, randomPart: base62Arb(MIN_RANDOM, MAX_RANDOM) })
  .map((parts) => ({
    ...parts,
    key: `${parts.prefix}_${parts.environment}_${parts.randomPart}${referenceChecksum(parts.randomPart)}`,
  }));

/** Strings that are hostile to parsers: unicode, NUL, lone surrogates, separators, key-ish pieces. */
const hostileStringArb = fc.oneof(
  fc.string({ unit: "binary", maxLength: 120 }),
  fc.string({ unit: "grapheme", maxLength: 60 }),
  fc.string({
    unit: fc.constantFrom(..."kw_livetsAZ09\u0000\ud800\udfff\u200b\uff3f _-.\n\\'\"%"),
    maxLength: 80,
  }),
  fc
    .tuple(
      fc.string({ unit: "binary", minLength: 1, maxLength: 8 }),
      fc.integer({ min: 1_000, max: 300_000 }),
    )
    .map(([piece, times]) => piece.repeat(times)),
  fc.constantFrom("", "_", "__", "kw__", "kw_live_", "kw_prod_abc", "\u0000", "\ud800", "\udc00\ud800"),
);

describe("key format", () => {
  it("the reference CRC-32 matches the standard check value", () => {
    expect(referenceCrc32("123456789")).toBe(0xcbf43926);
  });

  it("every generated key (all prefixes, environments and levels) parses back to its parts", () => {
    fc.assert(
      fc.property(prefixArb, environmentArb, levelArb, (prefix, environment, level) => {
        const key = generateKey(prefix, environment, level);
        const parsed = parseKey(key);
        expect(parsed).not.toBeNull();
        expect(parsed?.prefix).toBe(prefix);
        expect(parsed?.environment).toBe(environment);
        expect(parsed?.randomPart.length).toBe(randomLengthForLevel(level));
        expect(parsed?.randomPart).toMatch(/^[0-9A-Za-z]+$/);
        // The checksum generateKey wrote is the independent reference checksum.
        expect(key.slice(-6)).toBe(referenceChecksum(parsed?.randomPart ?? ""));
      }),
      { numRuns: runs(1_000) },
    );
  });

  it("every key built with the reference checksum parses, at every legal random length", () => {
    fc.assert(
      fc.property(keyArb, ({ key, prefix, environment, randomPart }) => {
        expect(parseKey(key)).toEqual({ prefix, environment, randomPart });
      }),
      { numRuns: runs(1_000) },
    );
  });

  it("random parts shorter than 128 bits or longer than an enterprise key's are refused even with a right checksum", () => {
    fc.assert(
      fc.property(
        prefixArb,
        environmentArb,
        fc.oneof(base62Arb(1, MIN_RANDOM - 1), base62Arb(MAX_RANDOM + 1, MAX_RANDOM + 40)),
        (prefix, environment, randomPart) => {
          expect(
            parseKey(`${prefix}_${environment}_${randomPart}${referenceChecksum(randomPart)}`),
          ).toBeNull();
        },
      ),
    );
  });

  it("any single-character change either fails the checksum or (in the prefix only) parses to a different key", () => {
    const replacementArb = fc.oneof(
      fc.constantFrom(...`${BASE62}_-. `),
      fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
    );
    fc.assert(
      fc.property(keyArb, fc.nat(), replacementArb, ({ key, prefix, randomPart }, at, replacement) => {
        const index = at % key.length;
        fc.pre(key[index] !== replacement);
        const mutated = key.slice(0, index) + replacement + key.slice(index + 1);
        const parsed = parseKey(mutated);
        if (parsed === null) return;
        // Only a change inside the prefix can still parse, and then it is a different key
        // carrying the very same secret part (which the hash lookup will not find).
        expect(index).toBeLessThan(prefix.length);
        expect(parsed.prefix).not.toBe(prefix);
        expect(parsed.randomPart).toBe(randomPart);
      }),
      { numRuns: runs(3_000) },
    );
  });

  it("any change inside the random part or checksum is always rejected (substitution, transposition, deletion, insertion)", () => {
    fc.assert(
      fc.property(
        keyArb,
        fc.nat(),
        fc.constantFrom(...BASE62),
        fc.constantFrom("substitute", "transpose", "delete", "insert"),
        ({ key, prefix, environment }, at, char, edit) => {
          const head = `${prefix}_${environment}_`.length;
          const body = key.slice(head);
          const i = at % body.length;
          let changed: string;
          if (edit === "substitute") {
            fc.pre(body[i] !== char);
            changed = body.slice(0, i) + char + body.slice(i + 1);
          } else if (edit === "transpose") {
            const j = (i + 1) % body.length;
            fc.pre(j > i && body[i] !== body[j]);
            changed = body.slice(0, i) + body[j] + body[i] + body.slice(j + 1);
          } else if (edit === "delete") {
            changed = body.slice(0, i) + body.slice(i + 1);
          } else {
            changed = body.slice(0, i) + char + body.slice(i);
          }
          // Deletion/insertion shift the checksum window; a collision there is a 1 in 62^6 event.
          expect(parseKey(key.slice(0, head) + changed)).toBeNull();
        },
      ),
      { numRuns: runs(3_000) },
    );
  });

  it("arbitrary strings (unicode, NUL, lone surrogates, huge) never throw and never parse", () => {
    let parsedCount = 0;
    fc.assert(
      fc.property(hostileStringArb, (text) => {
        const parsed = parseKey(text);
        if (parsed !== null) parsedCount += 1;
        const parts = displayParts(text);
        expect(typeof parts.start).toBe("string");
        expect(typeof parts.last4).toBe("string");
      }),
      { numRuns: runs(2_000) },
    );
    expect(parsedCount).toBe(0);
  });

  it("well-formed-looking keys with a random checksum almost never parse (≤ 1 in 20,000)", () => {
    let parsedCount = 0;
    fc.assert(
      fc.property(
        prefixArb,
        environmentArb,
        base62Arb(MIN_RANDOM + 6, MAX_RANDOM + 6),
        (prefix, environment, body) => {
          if (parseKey(`${prefix}_${environment}_${body}`) !== null) parsedCount += 1;
        },
      ),
      { numRuns: runs(20_000) },
    );
    expect(parsedCount).toBeLessThanOrEqual(1);
  });

  it("displayParts of a key reveals exactly prefix + environment, and 4 checksum characters", () => {
    fc.assert(
      fc.property(keyArb, ({ key, prefix, environment, randomPart }) => {
        const { start, last4 } = displayParts(key);
        const head = `${prefix}_${environment}_`;
        expect(start).toBe(head);
        expect(last4).toBe(key.slice(-4));
        // last4 lies wholly inside the 6-character checksum: no further random character is shown.
        expect(referenceChecksum(randomPart).endsWith(last4)).toBe(true);
        expect(randomPart.length).toBeGreaterThanOrEqual(MIN_RANDOM);
      }),
      { numRuns: runs(1_000) },
    );
  });

  it("displayParts of any string reveals at most a 4-character head (plus prefix_env_ for real keys) and a 4-character tail", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          hostileStringArb,
          keyArb.map((k) => k.key),
        ),
        (text) => {
          const { start, last4 } = displayParts(text);
          const parsed = parseKey(text);
          const head = parsed ? `${parsed.prefix}_${parsed.environment}_` : "";
          expect(text.startsWith(start)).toBe(true);
          expect(text.endsWith(last4)).toBe(true);
          expect(start.length).toBeLessThanOrEqual(head.length + 4);
          expect(last4.length).toBeLessThanOrEqual(4);
        },
      ),
      { numRuns: runs(1_000) },
    );
  });
});
