/**
 * fast-check generators for hostile request bodies. Bodies are generated as JSON *text* (not as
 * values run through JSON.stringify) so they can carry what JSON.stringify never emits:
 * `__proto__` keys, duplicate keys, lone-surrogate escapes, 1e400, deep nesting, broken syntax.
 */
import fc from "fast-check";
import type { Body } from "./worker-support";

export const MAX_BODY_BYTES = 64 * 1024;

const str = (value: string) => JSON.stringify(value);

/** Strings that break naive code: NUL, lone surrogates, SQL, RTL, zero-width, long, whitespace-only. */
export const hostileStringArb: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 30 }),
  fc.constantFrom(
    "\u0000",
    "a\u0000b",
    "\ud800",
    "\udfff",
    "x\udc00\ud800y",
    "\u202eevil",
    "\u200b",
    "   ",
    "\t\n",
    "' OR 1=1 --",
    '"; DROP TABLE api_keys; --',
    "%_\\",
    "’‘“”＇",
    "__proto__",
    "constructor",
    "🔑".repeat(60),
  ),
  fc
    .oneof(
      { weight: 4, arbitrary: fc.integer({ min: 101, max: 1_100 }) },
      { weight: 1, arbitrary: fc.integer({ min: 1_100, max: 6_000 }) },
    )
    .map((n) => "x".repeat(n)),
);

/** Numbers that are not what a schema wants: numbers as strings, and literal edge cases. */
const numericTextArb: fc.Arbitrary<string> = fc.oneof(
  fc.integer().map((n) => str(String(n))),
  fc.constantFrom(
    '"60"',
    '" 60"',
    '"1e3"',
    '"0x3c"',
    '"NaN"',
    '"Infinity"',
    '"-0"',
    '""',
    "1e400",
    "-1e400",
    "-0",
    "0.5",
    "1E2",
    "9007199254740993",
    "-9223372036854775809",
    "1.7976931348623157e308",
    "5e-324",
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
  fc.integer({ min: -2_000_000_000, max: 2_000_000_000 }).map(String),
);

function deepArrayText(depth: number): string {
  return "[".repeat(depth) + "]".repeat(depth);
}

function deepObjectText(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

/** Deepest nesting the mixed generator sends: far past the 64-level cap, still under 64 KiB. */
export const MIXED_MAX_NESTING = 30_000;

const nestingArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 2, max: 300 }).map(deepArrayText) },
  { weight: 1, arbitrary: fc.integer({ min: 300, max: MIXED_MAX_NESTING }).map(deepArrayText) },
  { weight: 2, arbitrary: fc.integer({ min: 2, max: 300 }).map(deepObjectText) },
  { weight: 1, arbitrary: fc.integer({ min: 300, max: MIXED_MAX_NESTING }).map(deepObjectText) },
);

const hugeArrayArb: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 51, max: 1_000 }) },
      { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 20_000 }) },
    ),
    fc.constantFrom("1", '"a"', "null", "{}", "[]", '"10.0.0.0/8"', '"US"', '"keys:read"', '"\\u0000"'),
  )
  .map(([n, item]) => `[${Array<string>(n).fill(item).join(",")}]`);

const dangerousObjectArb: fc.Arbitrary<string> = fc.constantFrom(
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  '{"__proto__":null}',
  '{"__proto__":[]}',
  '{"prototype":{"polluted":1},"toString":"x","valueOf":1,"hasOwnProperty":"y"}',
);

/** JSON text of some value, weighted towards the hostile. */
export const hostileValueTextArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: hostileStringArb.map(str) },
  { weight: 3, arbitrary: numericTextArb },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.constantFrom("true", "false", "null", '"true"', '"null"', "[]", "{}") },
  { weight: 1, arbitrary: nestingArb },
  { weight: 1, arbitrary: hugeArrayArb },
  { weight: 1, arbitrary: dangerousObjectArb },
  {
    weight: 1,
    arbitrary: fc.constantFrom('"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"a\\u0000b\\ud83d"'),
  },
);

/** Field name → arbitrary of JSON text for a plausibly valid value. */
export type FieldMap = Record<string, fc.Arbitrary<string>>;

const futureIso = fc
  .integer({ min: 1, max: 3_650 })
  .map((days) => str(new Date(Date.now() + days * 86_400_000).toISOString()));

const nameText = fc
  .string({ minLength: 1, maxLength: 100 })
  .filter((s) => s.trim().length > 0)
  .map(str);
const prefixText = fc.stringMatching(/^[a-z][a-z0-9]{0,7}$/).map(str);
const scopesText = fc
  .array(fc.oneof(fc.stringMatching(/^[a-z][a-z0-9_.:-]{0,20}$/), fc.constantFrom("keys:read", "wizard")), {
    maxLength: 5,
  })
  .map((scopes) => JSON.stringify(scopes));
const limitsFields: FieldMap = {
  ip_allowlist: fc.constantFrom('["10.0.0.0/8"]', '["2001:db8::/32","192.0.2.1"]', "[]"),
  country_allowlist: fc.constantFrom('["US"]', '["DE","FR"]', "[]"),
  ratelimit: fc
    .record({
      limit: fc.integer({ min: 1, max: 1_000_000 }),
      window_ms: fc.integer({ min: 1_000, max: 86_400_000 }),
    })
    .map((v) => JSON.stringify(v)),
  usage_limit: fc.record({ remaining: fc.integer({ min: 0, max: 1_000 }) }).map((v) => JSON.stringify(v)),
  metadata: fc
    .dictionary(
      fc.string({ maxLength: 10 }),
      fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.boolean()),
      {
        maxKeys: 4,
      },
    )
    .map((v) => JSON.stringify(v)),
};

export const FIELDS = {
  tenants: { name: nameText, key_prefix: prefixText } satisfies FieldMap,
  createKey: {
    name: nameText,
    role: fc.constantFrom('"read_only"', '"read_write"', '"admin"'),
    scopes: scopesText,
    environment: fc.constantFrom('"live"', '"test"'),
    security_level: fc.constantFrom('"basic"', '"enhanced"', '"enterprise"'),
    prefix: prefixText,
    expires_at: futureIso,
    service_id: fc.string({ maxLength: 64 }).map(str),
    ...limitsFields,
  } satisfies FieldMap,
  updateKey: {
    name: nameText,
    enabled: fc.constantFrom("true", "false"),
    role: fc.constantFrom('"read_only"', '"read_write"', '"admin"'),
    scopes: scopesText,
    expires_at: fc.oneof(futureIso, fc.constant("null")),
    ...limitsFields,
  } satisfies FieldMap,
  rotateKey: { grace_seconds: fc.integer({ min: 0, max: 30 * 86_400 }).map(String) } satisfies FieldMap,
  verifyKey: {
    key: fc.oneof(
      fc.string({ maxLength: 80 }).map(str),
      fc.constant('"kw_live_0000000000000000000000000000"'),
    ),
    scopes: scopesText,
  } satisfies FieldMap,
  session: { key: fc.string({ maxLength: 80 }).map(str) } satisfies FieldMap,
};

/**
 * An object whose keys come from the schema (with valid or hostile values), from the
 * dangerous-key list, or are random; sometimes duplicated. Often fully valid for its schema.
 */
export function schemaShapedTextArb(fields: FieldMap): fc.Arbitrary<string> {
  const names = Object.keys(fields);
  const entryArb = fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .constantFrom(...names)
        .chain((name) =>
          fc.tuple(
            fc.constant(name),
            fc.oneof(
              { weight: 3, arbitrary: fields[name] as fc.Arbitrary<string> },
              { weight: 2, arbitrary: hostileValueTextArb },
            ),
          ),
        ),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(
        fc.constantFrom("__proto__", "constructor", "prototype", "toString"),
        hostileValueTextArb,
      ),
    },
    { weight: 1, arbitrary: fc.tuple(hostileStringArb, hostileValueTextArb) },
  );
  return fc
    .array(entryArb, { maxLength: 8 })
    .map((entries) => `{${entries.map(([key, value]) => `${str(key)}:${value}`).join(",")}}`);
}

/** A schema-valid object (every entry valid, no unknown keys), for the legal-outcome checks. */
export function validTextArb(fields: FieldMap, required: string[] = []): fc.Arbitrary<string> {
  const entries = Object.entries(fields).map(([name, arb]) =>
    required.includes(name)
      ? arb.map((v) => [name, v] as const)
      : fc.option(
          arb.map((v) => [name, v] as const),
          { nil: null },
        ),
  );
  return fc
    .tuple(...entries)
    .map((list) => `{${list.flatMap((e) => (e ? [`${str(e[0])}:${e[1]}`] : [])).join(",")}}`);
}

/** Syntactically broken JSON, derived from a real body so it is near-valid. */
export function brokenJsonArb(base: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.oneof(
    fc.tuple(base, fc.nat()).map(([text, at]) => text.slice(0, at % Math.max(1, text.length))),
    base.map((text) => `${text}garbage`),
    base.map((text) => `${text}${text}`),
    base.map((text) => `\ufeff${text}`),
    base.map((text) => text.replaceAll('"', "'")),
    base.map((text) => (text.length > 2 ? `${text.slice(0, -1)},}` : "{,}")),
    base.map((text) => `/* c */${text}`),
    fc.constantFrom(
      "",
      " ",
      "\n",
      "{",
      "}",
      "[",
      '{"name":}',
      "{name:1}",
      "NaN",
      "undefined",
      '{"a":1}}',
      '"\\x00"',
      '"\\ud800',
    ),
  );
}

/** Bytes that are not valid UTF-8 (or not text at all). */
export const rawBytesArb: fc.Arbitrary<Uint8Array<ArrayBuffer>> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => new Uint8Array(b)),
  fc.constantFrom(
    new Uint8Array([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), // {"n":"\xff\xfe"}
    new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), // UTF-8 BOM + {}
    new Uint8Array([0xfe, 0xff, 0x00, 0x7b, 0x00, 0x7d]), // UTF-16BE BOM + {}
    new Uint8Array([0x7b, 0x22, 0x6e, 0x61, 0x6d, 0x65, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]), // CESU surrogate
    new Uint8Array([0x7b, 0x22, 0x6e, 0x61, 0x6d, 0x65, 0x22, 0x3a, 0x22, 0xc0, 0xa7, 0x22, 0x7d]), // overlong quote
  ),
);

/** Bodies strictly over the 64 KiB cap: padding in a string, whitespace, or a huge array. */
export const oversizeTextArb: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: MAX_BODY_BYTES + 1, max: MAX_BODY_BYTES * 2 }).map((n) => `{"name":"${"a".repeat(n)}"}`),
  fc.integer({ min: MAX_BODY_BYTES + 1, max: MAX_BODY_BYTES * 2 }).map((n) => `{"name":"x"${" ".repeat(n)}}`),
  fc.integer({ min: 33_000, max: 60_000 }).map((n) => `{"scopes":[${Array<string>(n).fill("1").join(",")}]}`),
  fc.integer({ min: 40_000, max: 60_000 }).map(deepArrayText),
);

export interface GeneratedBody {
  kind: string;
  body: Body;
}

/** The mixed generator used for the ≥ 1,000-bodies-per-endpoint properties (JSON content type). */
export function hostileBodyArb(fields: FieldMap, required: string[] = []): fc.Arbitrary<GeneratedBody> {
  const shaped = schemaShapedTextArb(fields);
  return fc.oneof(
    { weight: 6, arbitrary: shaped.map((body) => ({ kind: "schema-shaped", body })) },
    { weight: 1, arbitrary: validTextArb(fields, required).map((body) => ({ kind: "valid", body })) },
    { weight: 2, arbitrary: hostileValueTextArb.map((body) => ({ kind: "top-level value", body })) },
    { weight: 2, arbitrary: brokenJsonArb(shaped).map((body) => ({ kind: "invalid JSON", body })) },
    { weight: 1, arbitrary: rawBytesArb.map((body) => ({ kind: "raw bytes", body })) },
    { weight: 1, arbitrary: oversizeTextArb.map((body) => ({ kind: "oversize", body })) },
  );
}

/** Content types that are not JSON, or JSON spelled in ways clients really send. */
export const contentTypeArb: fc.Arbitrary<string | null> = fc.constantFrom(
  null,
  "text/plain",
  "text/plain;charset=UTF-8",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=xyz",
  "application/xml",
  "application/octet-stream",
  "application/jsonx",
  "json",
  "",
  "*/*",
  "application/json, text/plain",
);
