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

/** Uniformly random text from an alphabet: unbiased, so no "aaaa…" runs the placeholder check refuses. */
export function randomTextArb(alphabet: string, minLength: number, maxLength: number): fc.Arbitrary<string> {
  return fc.noBias(fc.string({ unit: fc.constantFrom(...alphabet), minLength, maxLength }));
}

const ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** A well-formed Stripe secret key, test mode unless `live`. */
export const stripeSecretArb = (mode: "test" | "live" = "test"): fc.Arbitrary<string> =>
  fc
    .tuple(fc.constantFrom("sk", "rk"), randomTextArb(ALNUM, 24, 60))
    .map(([kind, body]) => `${kind}_${mode}_${body}`);

/** A Stripe field set (JSON text): the secret key, sometimes a publishable key and a webhook secret. */
export const stripeFieldsArb: fc.Arbitrary<Record<string, string>> = fc
  .tuple(
    fc.oneof({ weight: 4, arbitrary: stripeSecretArb("test") }, stripeSecretArb("live")),
    fc.option(randomTextArb(ALNUM, 24, 40), { nil: undefined }),
    fc.option(randomTextArb(`${ALNUM}+/`, 24, 60), { nil: undefined }),
  )
  .map(([secret, publishable, webhook]) => {
    const mode = secret.includes("_live_") ? "live" : "test";
    return {
      secret_key: secret,
      ...(publishable ? { publishable_key: `pk_${mode}_${publishable}` } : {}),
      ...(webhook ? { webhook_secret: `whsec_${webhook}` } : {}),
    };
  });

/** A well-formed OpenAI field set. */
export const openaiFieldsArb: fc.Arbitrary<Record<string, string>> = fc
  .tuple(fc.constantFrom("proj", "svcacct", "admin"), randomTextArb(`${ALNUM}_-`, 40, 90))
  .map(([kind, body]) => ({ api_key: `sk-${kind}-${body}` }));

/** Field values for some service (JSON text of a `{field: value}` record), usually well-formed. */
export const credentialFieldsText: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: stripeFieldsArb.map((v) => JSON.stringify(v)) },
  { weight: 2, arbitrary: openaiFieldsArb.map((v) => JSON.stringify(v)) },
  {
    weight: 1,
    arbitrary: fc
      .dictionary(fc.string({ maxLength: 70 }), hostileStringArb, { maxKeys: 25 })
      .map((v) => JSON.stringify(v)),
  },
);

/** Catalogue ids, plus a few that only look like them. */
export const CATALOG_IDS = [
  "stripe",
  "paypal",
  "razorpay",
  "shopify",
  "google-ads",
  "meta-ads",
  "linkedin-marketing",
  "openai",
  "anthropic",
  "gemini",
  "google-analytics",
  "aws-s3",
  "github",
  "twilio",
  "sendgrid",
  "slack",
] as const;
const serviceIdText = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...CATALOG_IDS).map(str) },
  { weight: 1, arbitrary: fc.constantFrom('"Stripe"', '" stripe"', '"stripe\u0000"', '"nope"', '""') },
);
const serviceIdsText = fc
  .array(fc.constantFrom(...CATALOG_IDS), { minLength: 1, maxLength: 4 })
  .map((ids) => JSON.stringify(ids));
const credentialEnvironment = fc.constantFrom('"development"', '"staging"', '"production"');
const securityLevel = fc.constantFrom('"basic"', '"enhanced"', '"enterprise"');
const rotationPolicy = fc.constantFrom('"30_days"', '"60_days"', '"90_days"', '"custom"', '"none"');

/** Channel names drawn mostly from a small set, so rules generated independently still name them. */
export const CHANNEL_NAMES = ["Ops", "Pager", "Alerts", " On call "] as const;
const channelNameArb = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...CHANNEL_NAMES) },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 60 }).filter((s) => s.trim().length > 0) },
);
const e164 = fc.integer({ min: 1_000_000, max: 999_999_999 }).map((n) => `+1${n}`);
const HEX = "0123456789abcdef";

/** A webhook URL: public https hosts, and the hosts the SSRF guard must refuse. */
export const webhookUrlArb: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom("hooks.example.com", "example.org", "8.8.8.8", "[2001:4860::8888]"),
        fc.webPath(),
      )
      .map(([host, path]) => `https://${host}${path}`),
  },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "http://hooks.example.com/x",
      "https://127.0.0.1/x",
      "https://localhost/x",
      "https://10.1.2.3/x",
      "https://192.168.0.1/x",
      "https://169.254.169.254/latest/meta-data",
      "https://[::1]/x",
      "https://[fc00::1]/x",
      "https://[::ffff:127.0.0.1]/x",
      "https://0x7f000001/x",
      "https://2130706433/x",
      "https://metadata.google.internal/x",
      "https://printer.local/x",
      "https://intranet/x",
      "https://user:pass@hooks.example.com/x",
      "file:///etc/passwd",
      "gopher://hooks.example.com/x",
      "javascript:alert(1)",
      "ftp://hooks.example.com/x",
      "https://100.64.0.1/x",
      "https://198.18.0.1/x",
      "https://0.0.0.0/x",
    ),
  },
  { weight: 1, arbitrary: fc.webUrl() },
);

/** One alert channel (as a value), each kind well-formed. */
export const channelArb: fc.Arbitrary<Record<string, string>> = fc.oneof(
  fc.record({
    kind: fc.constant("email"),
    name: channelNameArb,
    to: fc.oneof(
      fc.emailAddress(),
      fc.constantFrom("ops@example.com", "alerts+keywarden@example.org", "a@b.co"),
    ),
  }),
  fc.record({
    kind: fc.constant("slack"),
    name: channelNameArb,
    webhook_url: fc
      .tuple(randomTextArb(ALNUM, 3, 12), randomTextArb(ALNUM, 3, 12), randomTextArb(ALNUM, 8, 24))
      .map(([t, b, x]) => `https://hooks.slack.com/services/${t}/${b}/${x}`),
  }),
  fc.record({ kind: fc.constant("webhook"), name: channelNameArb, url: webhookUrlArb }),
  fc.record({
    kind: fc.constant("sms"),
    name: channelNameArb,
    to: e164,
    from: e164,
    twilio_account_sid: randomTextArb(HEX, 32, 32).map((h) => `AC${h}`),
    twilio_auth_token: randomTextArb(HEX, 32, 32),
  }),
);

/** One alert rule naming channels from the small name set and (mostly) the selected services. */
export const ruleArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record(
    {
      kind: fc.constant("usage_threshold"),
      service_id: fc.constantFrom("stripe", "openai", "github"),
      threshold: fc.integer({ min: 1, max: 1_000_000_000 }),
      window: fc.constantFrom("hour", "day"),
      channel_names: fc.array(channelNameArb, { minLength: 1, maxLength: 3 }),
    },
    { requiredKeys: ["kind", "service_id", "threshold", "channel_names"] },
  ),
  fc.record({
    kind: fc.constant("failure_rate"),
    service_id: fc.constantFrom("stripe", "openai"),
    threshold_percent: fc.double({ min: 0.1, max: 100, noNaN: true }),
    channel_names: fc.array(channelNameArb, { minLength: 1, maxLength: 3 }),
  }),
  fc.record({
    kind: fc.constant("expiry_warning"),
    days_before: fc.integer({ min: 1, max: 90 }),
    channel_names: fc.array(channelNameArb, { minLength: 1, maxLength: 3 }),
  }),
);

const securityConfigurationText = fc
  .record(
    {
      environment: fc.constantFrom("development", "staging", "production"),
      security_level: fc.constantFrom("basic", "enhanced", "enterprise"),
      key_rotation_policy: fc.constantFrom("30_days", "60_days", "90_days", "custom", "none"),
      custom_rotation_days: fc.integer({ min: 1, max: 365 }),
    },
    { requiredKeys: ["environment", "security_level", "key_rotation_policy"] },
  )
  .map((v) => JSON.stringify(v));

/** Field maps of the vault and wizard endpoints (threat model case 16, second batch). */
export const VAULT_FIELDS = {
  createCredential: {
    service: serviceIdText,
    environment: credentialEnvironment,
    security_level: securityLevel,
    name: nameText,
    fields: credentialFieldsText,
  } satisfies FieldMap,
  updateCredential: {
    name: nameText,
    fields: stripeFieldsArb.map((v) => JSON.stringify(v)),
  } satisfies FieldMap,
  revealCredential: {
    version: fc.oneof(fc.constant("1"), fc.integer({ min: 1, max: 4 }).map(String)),
  } satisfies FieldMap,
  rollbackCredential: { version: fc.integer({ min: 1, max: 14 }).map(String) } satisfies FieldMap,
  validateCredential: {
    service_id: serviceIdText,
    fields: credentialFieldsText,
    environment: credentialEnvironment,
    security_level: securityLevel,
    live_check: fc.constantFrom("true", "false"),
  } satisfies FieldMap,
  generateKeys: {
    service_ids: serviceIdsText,
    security_configuration: securityConfigurationText,
  } satisfies FieldMap,
  wizardServices: { service_ids: serviceIdsText } satisfies FieldMap,
  wizardSecurity: {
    security_level: securityLevel,
    environment: credentialEnvironment,
    rotation_policy: rotationPolicy,
    custom_rotation_days: fc.integer({ min: 1, max: 365 }).map(String),
    ip_allowlist: limitsFields.ip_allowlist as fc.Arbitrary<string>,
    country_allowlist: limitsFields.country_allowlist as fc.Arbitrary<string>,
    require_2fa: fc.constantFrom("true", "false"),
    compliance: fc
      .subarray(["soc2", "gdpr", "hipaa", "pci_dss"], { maxLength: 4 })
      .map((v) => JSON.stringify(v)),
  } satisfies FieldMap,
  wizardServiceKeys: {
    fields: fc.oneof(
      stripeFieldsArb.map((v) => JSON.stringify(v)),
      openaiFieldsArb.map((v) => JSON.stringify(v)),
    ),
  } satisfies FieldMap,
  wizardMonitoring: {
    channels: fc.array(channelArb, { maxLength: 4 }).map((v) => JSON.stringify(v)),
    rules: fc.array(ruleArb, { maxLength: 3 }).map((v) => JSON.stringify(v)),
  } satisfies FieldMap,
  wizardChannelTest: { channel: channelArb.map((v) => JSON.stringify(v)) } satisfies FieldMap,
};

/** Coherent bodies for endpoints whose fields depend on each other (which service the values are for). */
export const createCredentialValidArb: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      stripeFieldsArb.map((fields) => ({ service: "stripe", fields })),
      openaiFieldsArb.map((fields) => ({ service: "openai", fields })),
    ),
    fc.constantFrom("development", "staging"),
    fc.option(fc.constantFrom("basic", "enhanced"), { nil: undefined }),
    fc.option(
      fc.string({ minLength: 1, maxLength: 100 }).filter((s) => s.trim().length > 0),
      { nil: undefined },
    ),
  )
  .map(([{ service, fields }, environment, security_level, name]) =>
    JSON.stringify({ service, environment, fields, security_level, name }),
  );

export const validateCredentialValidArb: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      stripeFieldsArb.map((fields) => ({ service_id: "stripe", fields })),
      openaiFieldsArb.map((fields) => ({ service_id: "openai", fields })),
    ),
    fc.constantFrom("development", "staging", "production"),
    fc.option(fc.constantFrom("basic", "enhanced", "enterprise"), { nil: undefined }),
    fc.option(fc.boolean(), { nil: undefined }),
  )
  .map(([{ service_id, fields }, environment, security_level, live_check]) =>
    JSON.stringify({ service_id, fields, environment, security_level, live_check }),
  );

/** A channel every check accepts: simple addresses, public https webhook hosts. */
export const deliverableChannelArb: fc.Arbitrary<Record<string, string>> = channelArb.chain((channel) => {
  if (channel.kind === "email")
    return randomTextArb(ALNUM, 1, 20).map((local) => ({ ...channel, to: `${local}@example.com` }));
  if (channel.kind === "webhook")
    return fc
      .tuple(fc.constantFrom("hooks.example.com", "example.org", "8.8.8.8"), randomTextArb(ALNUM, 0, 20))
      .map(([host, path]) => ({ ...channel, url: `https://${host}/${path}` }));
  return fc.constant(channel);
});

/** A channel-test body: any well-formed channel, often one every check accepts. */
export const channelTestValidArb: fc.Arbitrary<string> = fc
  .oneof(deliverableChannelArb, channelArb)
  .map((channel) => JSON.stringify({ channel }));

/** A monitoring step that passes every check: unique channel names, rules naming them and selected services. */
export const monitoringValidArb = (selected: readonly string[]): fc.Arbitrary<string> =>
  fc
    .uniqueArray(deliverableChannelArb, { maxLength: 3, selector: (c) => (c.name ?? "").trim() })
    .chain((channels) => {
      const names = channels.map((c) => c.name as string);
      const rules =
        names.length === 0
          ? fc.constant([])
          : fc.array(
              ruleArb.chain((rule) =>
                fc
                  .tuple(fc.subarray(names, { minLength: 1 }), fc.constantFrom(...selected))
                  .map(([channel_names, service_id]) =>
                    "service_id" in rule
                      ? { ...rule, service_id, channel_names }
                      : { ...rule, channel_names },
                  ),
              ),
              { maxLength: 3 },
            );
      return rules.map((list) => JSON.stringify({ channels, rules: list }));
    });

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
export function hostileBodyArb(
  fields: FieldMap,
  required: string[] = [],
  valid: fc.Arbitrary<string> = validTextArb(fields, required),
): fc.Arbitrary<GeneratedBody> {
  const shaped = schemaShapedTextArb(fields);
  return fc.oneof(
    { weight: 6, arbitrary: shaped.map((body) => ({ kind: "schema-shaped", body })) },
    { weight: 1, arbitrary: valid.map((body) => ({ kind: "valid", body })) },
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
