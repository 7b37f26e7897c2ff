/**
 * threat model case 16 for the configuration a tenant changes after the wizard: alert channels, alert
 * rules and the security policy (the endpoint table entries the shared driver, request-bodies-shared.ts,
 * runs). Each `onSuccess` states exactly what a 2xx may have changed; anything a rejection changes is
 * caught by the driver. Bodies name the target tenant's own channels, rule and SendGrid credential as
 * `$ref:<name>` (targets.ts `bindRefs`), since their ids are random.
 *
 * Not here, because they take no request body: POST /api/v1/alerts/{id}/acknowledge and /resolve, and
 * POST /api/v1/monitoring/channels/{id}/test.
 */
import fc from "fast-check";
import { expect } from "vitest";
import {
  ALERT_SEVERITIES,
  type ChannelKind,
  RULE_KINDS,
  type RuleKind,
} from "../../src/monitoring/alert-kinds";
import { CHANNEL_SECRET_FIELDS } from "../../src/monitoring/channels";
import { DEFAULT_COOLDOWN_SECONDS } from "../../src/monitoring/default-rules";
import { parseRuleSettings } from "../../src/monitoring/rule-schemas";
import { type RotationPolicy, rotationDays } from "../../src/wizard/security-levels";
import {
  CATALOG_IDS,
  channelArb,
  deliverableChannelArb,
  type FieldMap,
  hostileStringArb,
  randomTextArb,
  VAULT_FIELDS,
  validTextArb,
  webhookUrlArb,
} from "./body-arbitraries";
import type { Effect, Endpoint, RunContext } from "./request-bodies-shared";
import type { Target } from "./targets";
import { type Delta, NO_CHANGE, recordOutcome } from "./worker-support";

const text = (value: unknown) => JSON.stringify(value);
const ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX = "0123456789abcdef";

/** A name that rarely repeats (a repeat is a legal 409), sometimes untrimmed or not ASCII. */
const freshNameArb = fc
  .tuple(fc.constantFrom("Ops", " Pager ", "On call", "Ünïcode 🔔", "x"), randomTextArb(ALNUM, 6, 10))
  .map(([prefix, suffix]) => `${prefix} ${suffix}`);

/** Fresh names, the names the target's own records already use (409), and any string at all. */
const nameText = (max: number) =>
  fc.oneof(
    { weight: 3, arbitrary: freshNameArb.map(text) },
    { weight: 1, arbitrary: fc.constantFrom("Stored email", "Stored slack", " Stored rule ").map(text) },
    { weight: 1, arbitrary: fc.string({ maxLength: max + 20 }).map(text) },
  );

const e164 = fc.integer({ min: 1_000_000, max: 999_999_999 }).map((n) => `+1${n}`);
const hex32 = randomTextArb(HEX, 32, 32);
const slackUrl = fc
  .tuple(randomTextArb(ALNUM, 3, 12), randomTextArb(ALNUM, 3, 12), randomTextArb(ALNUM, 8, 24))
  .map(([t, b, x]) => `https://hooks.slack.com/services/${t}/${b}/${x}`);
const publicWebhookUrl = fc
  .tuple(fc.constantFrom("hooks.example.com", "example.org", "8.8.8.8"), randomTextArb(ALNUM, 0, 20))
  .map(([host, path]) => `https://${host}/${path}`);

/** Every channel setting of every kind (a setting of another kind is refused by the strict schema). */
const channelSettingFields: FieldMap = {
  name: nameText(60),
  to: fc.oneof(fc.emailAddress(), e164, fc.constant("ops@example.com")).map(text),
  from: fc.oneof(fc.emailAddress(), e164).map(text),
  url: webhookUrlArb.map(text),
  webhook_url: fc.oneof(slackUrl, webhookUrlArb).map(text),
  twilio_account_sid: hex32.map((h) => text(`AC${h}`)),
  twilio_auth_token: fc.oneof(hex32, fc.string({ maxLength: 40 })).map(text),
  via: fc.constantFrom("email_binding", "sendgrid", "smtp").map(text),
  // The tenant's SendGrid credential, one of its channels (not a credential), and ids that are nothing.
  credential_id: fc.constantFrom("$ref:sendgrid", "$ref:email", "cred_nope", "").map(text),
};

export const MONITORING_FIELDS = {
  createChannel: {
    kind: fc.constantFrom("email", "slack", "webhook", "sms", "pager", "Email", "").map(text),
    ...channelSettingFields,
  } satisfies FieldMap,
  updateChannel: {
    ...channelSettingFields,
    credential_id: fc.oneof(channelSettingFields.credential_id as fc.Arbitrary<string>, fc.constant("null")),
    rotate_signing_secret: fc.constantFrom("true", "false"),
  } satisfies FieldMap,
};

/** A create body: mostly one every check accepts, sometimes one the SSRF guard refuses, or mail via SendGrid. */
const createChannelValidArb: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      { weight: 3, arbitrary: deliverableChannelArb },
      { weight: 1, arbitrary: channelArb },
      {
        weight: 1,
        arbitrary: fc.record(
          {
            kind: fc.constant("email"),
            to: fc.constant("ops@example.com"),
            via: fc.constant("sendgrid"),
            credential_id: fc.constant("$ref:sendgrid"),
            from: fc.constant("alerts@example.com"),
          },
          { requiredKeys: ["kind", "to", "via", "credential_id"] },
        ),
      },
    ),
    freshNameArb,
  )
  .map(([channel, name]) => text({ ...channel, name }));

/** A PATCH body; whether it fits the stored channel's kind depends on which channel the path names. */
const updateChannelValidArb: fc.Arbitrary<string> = fc
  .oneof(
    fc.record({ name: freshNameArb }, { requiredKeys: [] }),
    fc.record({ to: fc.constant("oncall@example.com"), name: freshNameArb }, { requiredKeys: ["to"] }),
    fc.record(
      {
        via: fc.constant("sendgrid"),
        credential_id: fc.constant("$ref:sendgrid"),
        from: fc.constant("alerts@example.com"),
      },
      { requiredKeys: ["via", "credential_id"] },
    ),
    fc.constant({ via: "email_binding", credential_id: null }),
    fc.record({ webhook_url: slackUrl }),
    fc.record({ url: publicWebhookUrl, rotate_signing_secret: fc.boolean() }, { requiredKeys: [] }),
    fc.record(
      { to: e164, from: e164, twilio_account_sid: hex32.map((h) => `AC${h}`), twilio_auth_token: hex32 },
      { requiredKeys: [] },
    ),
  )
  .map(text);

/** Valid settings of each kind (only documented fields; defaults fill the rest). */
const int = (min: number, max: number) => fc.integer({ min, max });
const keyId = fc.constantFrom("key_a", "key_b");
const SETTINGS = {
  usage_threshold: fc.oneof(
    fc.record(
      { window: fc.constantFrom("hour", "day"), threshold: int(1, 1_000_000_000), key_id: keyId },
      { requiredKeys: ["threshold"] },
    ),
    fc.record(
      {
        window: fc.constantFrom("hour", "day"),
        percent_of_limit: fc.double({ min: 1, max: 100, noNaN: true }),
      },
      { requiredKeys: ["percent_of_limit"] },
    ),
  ),
  failure_rate: fc.record(
    {
      window: fc.constantFrom("hour", "day"),
      threshold_percent: fc.double({ min: 0.1, max: 100, noNaN: true }),
      min_requests: int(1, 1_000_000),
    },
    { requiredKeys: ["threshold_percent"] },
  ),
  expiry_warning: fc.record(
    {
      days_before: fc.array(int(1, 365), { minLength: 1, maxLength: 5 }),
      subjects: fc.subarray(["key", "credential"], { minLength: 1 }),
    },
    { requiredKeys: [] },
  ),
  rotation: fc.record(
    { on: fc.subarray(["due", "overdue", "failed"], { minLength: 1 }), overdue_after_hours: int(1, 720) },
    { requiredKeys: [] },
  ),
  retest_failing: fc.constant({}),
  anomaly_volume: fc.record(
    { z_threshold: fc.double({ min: 2, max: 20, noNaN: true }), min_count: int(1, 1_000_000), key_id: keyId },
    { requiredKeys: [] },
  ),
  anomaly_failures: fc.record(
    { z_threshold: fc.double({ min: 2, max: 20, noNaN: true }), min_count: int(1, 1_000_000) },
    { requiredKeys: [] },
  ),
  new_origin: fc.record(
    { origins: fc.subarray(["country", "network"], { minLength: 1 }) },
    { requiredKeys: [] },
  ),
  auth_failure_burst: fc.record({ threshold: int(1, 1_000_000) }, { requiredKeys: [] }),
  channel_failing: fc.record({ after_failures: int(1, 100) }, { requiredKeys: [] }),
} satisfies Record<RuleKind, fc.Arbitrary<Record<string, unknown>>>;

/** Settings of some kind, sometimes with a field no kind has (dropped), prototype keys, or a hostile dictionary. */
const settingsText = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '{"__proto__":{"threshold":5}}',
      '{"threshold":5,"__proto__":{"window":"week"}}',
      '{"constructor":{"prototype":{"threshold":5}},"threshold_percent":5}',
      '{"days_before":[1,1,1],"__proto__":null}',
    ),
  },
  {
    weight: 4,
    arbitrary: fc
      .constantFrom(...RULE_KINDS)
      .chain((kind) => SETTINGS[kind])
      .map(text),
  },
  {
    weight: 1,
    arbitrary: SETTINGS.usage_threshold.map((settings) => text({ ...settings, unknown_field: 1 })),
  },
  {
    weight: 1,
    arbitrary: fc.dictionary(hostileStringArb, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }).map(text),
  },
);

const REFERENCES = ["$ref:channel_a", "$ref:channel_b"] as const;
/** The tenant's channels (repeats too), its rule's id (not a channel), and ids that are nothing. */
const channelIdsText = fc
  .array(fc.constantFrom(...REFERENCES, "$ref:rule", "chan_nope", ""), { maxLength: 4 })
  .map(text);

const ruleSettingFields: FieldMap = {
  name: nameText(80),
  service_id: fc
    .oneof(
      { weight: 4, arbitrary: fc.constantFrom(...CATALOG_IDS) },
      { weight: 1, arbitrary: fc.constantFrom("nope", "Stripe", "") },
    )
    .map(text),
  settings: settingsText,
  channel_ids: channelIdsText,
  severity: fc.constantFrom(...ALERT_SEVERITIES, "CRITICAL", "page").map(text),
  cooldown_seconds: fc.oneof(int(0, 30 * 86_400), fc.constantFrom(-1, 30 * 86_400 + 1, 1.5)).map(text),
  enabled: fc.constantFrom("true", "false"),
};

export const RULE_FIELDS = {
  createRule: {
    kind: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...RULE_KINDS) }, fc.constant("nope")).map(text),
    ...ruleSettingFields,
  } satisfies FieldMap,
  updateRule: {
    ...ruleSettingFields,
    service_id: fc.oneof(ruleSettingFields.service_id as fc.Arbitrary<string>, fc.constant("null")),
  } satisfies FieldMap,
};

const ruleBodyFields = {
  name: freshNameArb,
  service_id: fc.constantFrom("stripe", "openai", null),
  channel_ids: fc.array(fc.constantFrom(...REFERENCES), { maxLength: 3 }),
  severity: fc.constantFrom(...ALERT_SEVERITIES),
  cooldown_seconds: int(0, 30 * 86_400),
  enabled: fc.boolean(),
};

/** A create body whose settings fit its kind. */
const createRuleValidArb: fc.Arbitrary<string> = fc
  .constantFrom(...RULE_KINDS)
  .chain((kind) =>
    fc.record(
      { kind: fc.constant(kind), settings: SETTINGS[kind], ...ruleBodyFields },
      { requiredKeys: ["kind", "name"] },
    ),
  )
  .map(text);

/** A PATCH body for the stored usage_threshold rule. */
const updateRuleValidArb: fc.Arbitrary<string> = fc
  .record({ settings: SETTINGS.usage_threshold, ...ruleBodyFields }, { requiredKeys: [] })
  .map(text);

/**
 * The policy settings are the wizard's security step schema. 2FA is rarer here: a policy that requires
 * it leaves the target tenant's admin key (not enrolled) unable to write another one (403), so such a
 * success uses up the target. Allowlists include ones that leave out the requests' 10.x.y.z addresses.
 */
export const POLICY_FIELDS = {
  ...VAULT_FIELDS.wizardSecurity,
  require_2fa: fc.oneof({ weight: 5, arbitrary: fc.constant("false") }, fc.constant("true")),
  ip_allowlist: fc.constantFrom(
    '["10.0.0.0/8"]',
    '["10.0.0.0/8","2001:db8::/32"]',
    '["192.0.2.0/24"]',
    '["10.0.0.1/8"]',
    "[]",
  ),
} satisfies FieldMap;
const POLICY_REQUIRED = ["security_level", "environment", "rotation_policy"];

function targetOf(ctx: RunContext): Target & Required<Pick<Target, "refs" | "views">> {
  if (!ctx.target?.refs || !ctx.target.views) throw new Error("this endpoint needs a monitoring target");
  return ctx.target as Target & Required<Pick<Target, "refs" | "views">>;
}

/** Only the channel, rule and policy tables and the audit log moved; nothing was sent anywhere. */
function expectOnlyMonitoringWritten(
  effect: Effect,
  change: Delta,
  expected: Partial<Delta>,
  sealed: boolean,
) {
  expect(change).toEqual({ ...NO_CHANGE, auditLog: 1, ...expected });
  expect(effect.after.monitoringFingerprint).not.toBe(effect.before.monitoringFingerprint);
  expect(effect.after.apiKeysFingerprint).toBe(effect.before.apiKeysFingerprint);
  expect(effect.after.credentialsFingerprint).toBe(effect.before.credentialsFingerprint);
  expect(effect.after.target, "a monitoring write touched the target credential").toBe(effect.before.target);
  // Channel secrets are sealed again on every write (which counts against the DEK); rules and policies seal nothing.
  if (sealed) expect(effect.after.dataKeysFingerprint).not.toBe(effect.before.dataKeysFingerprint);
  else expect(effect.after.dataKeysFingerprint).toBe(effect.before.dataKeysFingerprint);
  expect(effect.outbound, "a configuration write called out").toEqual([]);
}

type ChannelRequest = Record<string, string | boolean | null | undefined>;

interface ChannelView {
  id: string;
  kind: ChannelKind;
  name: string;
  config: Record<string, string>;
  secret_fields: string[];
  health: string;
  consecutive_failures: number;
}

/** A channel's secret settings are never returned: not in the view, not anywhere in the answer. */
function expectChannelSecretsHidden(effect: Effect, kind: ChannelKind, request: ChannelRequest): void {
  for (const field of CHANNEL_SECRET_FIELDS[kind]) {
    const value = request[field];
    if (typeof value === "string") expect(effect.text.includes(value), `${field} was echoed`).toBe(false);
  }
}

/** The public settings a channel of `kind` keeps of a request (the secret ones are sealed). */
function publicSettings(kind: ChannelKind, request: ChannelRequest): Record<string, string> {
  const settings: Record<string, string> = {};
  for (const [field, value] of Object.entries(request)) {
    if (typeof value !== "string" || ["kind", "name"].includes(field)) continue;
    if (!CHANNEL_SECRET_FIELDS[kind].includes(field)) settings[field] = value;
  }
  return settings;
}

function expectSigningSecret(body: Record<string, unknown>, shown: boolean, channel: ChannelView): void {
  if (!shown) {
    expect(body.signing_secret).toBeUndefined();
    return;
  }
  // Standard Webhooks: shown once here, stored sealed, never in the channel view.
  expect(body.signing_secret).toMatch(/^whsec_/);
  expect(JSON.stringify(channel).includes(body.signing_secret as string)).toBe(false);
}

interface RuleRequest {
  kind: RuleKind;
  name?: string;
  service_id?: string | null;
  settings?: Record<string, unknown>;
  channel_ids?: string[];
  severity?: string;
  cooldown_seconds?: number;
  enabled?: boolean;
}

/** A rule's channels are the tenant's own, each once. */
function expectOwnChannels(target: Target & { refs: Record<string, string> }, ids: unknown): void {
  const own = [target.refs.channel_a, target.refs.channel_b];
  for (const id of ids as string[]) expect(own).toContain(id);
  expect(new Set(ids as string[]).size).toBe((ids as string[]).length);
}

interface PolicySettings {
  security_level: "basic" | "enhanced" | "enterprise";
  environment: string;
  rotation_policy: RotationPolicy;
  custom_rotation_days?: number;
  ip_allowlist: string[];
  country_allowlist: string[];
  require_2fa: boolean;
  compliance: string[];
}

/** The settings a stored policy view was written from (what a PATCH merges into). */
function settingsOfView(view: Record<string, unknown>): PolicySettings {
  const custom = view.rotation_policy === "custom" && view.rotation_days !== null;
  return {
    security_level: view.security_level as PolicySettings["security_level"],
    environment: view.environment as string,
    rotation_policy: view.rotation_policy as RotationPolicy,
    ...(custom ? { custom_rotation_days: view.rotation_days as number } : {}),
    ip_allowlist: view.ip_allowlist as string[],
    country_allowlist: view.country_allowlist as string[],
    require_2fa: view.require_2fa as boolean,
    compliance: view.compliance as string[],
  };
}

/**
 * The policy now in force is exactly the settings written, it meets its level, and it does not fence out
 * the request that wrote it (every generated request comes from 10.x.y.z, without a country). Returns
 * whether the target was used up (a policy that requires 2FA: the next write would be 403).
 */
function expectPolicyWritten(
  body: Record<string, unknown>,
  settings: PolicySettings,
  change: Delta,
  ctx: RunContext,
  effect: Effect,
): boolean {
  expect(body).toEqual({
    security_level: settings.security_level,
    environment: settings.environment,
    rotation_policy: settings.rotation_policy,
    rotation_days: rotationDays(
      settings.security_level,
      settings.rotation_policy,
      settings.custom_rotation_days,
    ),
    ip_allowlist: settings.ip_allowlist,
    country_allowlist: settings.country_allowlist,
    require_2fa: settings.require_2fa,
    compliance: settings.compliance,
    wizard_id: "",
    updated_at: expect.any(String),
  });
  if (settings.security_level === "enterprise") {
    expect(settings.require_2fa).toBe(true);
    expect(settings.ip_allowlist.length).toBeGreaterThan(0);
  }
  if (settings.rotation_policy === "custom") expect(settings.custom_rotation_days).toBeDefined();
  if (settings.ip_allowlist.length) expect(settings.ip_allowlist).toContain("10.0.0.0/8");
  expect(settings.country_allowlist).toEqual([]);
  // The target tenant already has a policy: replaced in place, one audit row.
  expectOnlyMonitoringWritten(effect, change, {}, false);
  targetOf(ctx).views.policy = body;
  recordOutcome(`policy written ${settings.require_2fa ? "with" : "without"} 2FA`);
  return settings.require_2fa;
}

export const MONITORING_ENDPOINTS: Endpoint[] = [
  {
    label: "POST /api/v1/monitoring/channels",
    method: "POST",
    fields: MONITORING_FIELDS.createChannel,
    required: ["kind", "name"],
    valid: createChannelValidArb,
    // 409: a name the tenant already uses, or the tenant's 50 channels reached.
    allowed: [201, 400, 409, 413, 415, 422],
    auth: "key",
    target: "monitoring-channels",
    path: () => "/api/v1/monitoring/channels",
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(201);
      const request = ctx.request as ChannelRequest & { kind: ChannelKind; name: string };
      const channel = body.channel as ChannelView;
      expect(channel.id).toMatch(/^chan_/);
      expect(channel).toMatchObject({
        kind: request.kind,
        name: request.name.trim(),
        health: "healthy",
        consecutive_failures: 0,
        last_delivery_at: null,
        last_error: null,
      });
      expect(channel.config).toEqual(publicSettings(request.kind, request));
      expect(channel.secret_fields).toEqual([...CHANNEL_SECRET_FIELDS[request.kind]].sort());
      if (request.via === "sendgrid") expect(request.credential_id).toBe(targetOf(ctx).refs.sendgrid);
      expectSigningSecret(body, request.kind === "webhook", channel);
      expect(effect.headers.get("cache-control")).toBe("no-store");
      expectOnlyMonitoringWritten(effect, change, { alertChannels: 1 }, true);
      expectChannelSecretsHidden(effect, request.kind, request);
      recordOutcome(`channel created ${request.kind}${request.via === "sendgrid" ? " via sendgrid" : ""}`);
      return false;
    },
  },
  {
    label: "PATCH /api/v1/monitoring/channels/{id}",
    method: "PATCH",
    fields: MONITORING_FIELDS.updateChannel,
    required: [],
    valid: updateChannelValidArb,
    allowed: [200, 400, 409, 413, 415, 422],
    auth: "key",
    target: "monitoring-channels",
    // Which stored channel the path names, by kind: a setting of another kind is a 422.
    variants: ["email", "slack", "webhook", "sms"],
    path: (target, variant) => `/api/v1/monitoring/channels/${target?.refs?.[variant ?? "email"]}`,
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const target = targetOf(ctx);
      const kind = ctx.variant as ChannelKind;
      const before = target.views[kind] as unknown as ChannelView;
      const {
        rotate_signing_secret: rotate,
        credential_id: credentialId,
        ...request
      } = ctx.request as ChannelRequest;
      const config = { ...before.config, ...publicSettings(kind, request) };
      if (credentialId === null) delete config.credential_id;
      else if (credentialId !== undefined) config.credential_id = credentialId as string;
      const channel = body.channel as ChannelView;
      // The same channel, its kind fixed, exactly the named settings changed.
      expect(channel).toMatchObject({
        id: before.id,
        kind,
        name: typeof request.name === "string" ? request.name.trim() : before.name,
        secret_fields: before.secret_fields,
        health: "healthy",
      });
      expect(channel.config).toEqual(config);
      if (config.via === "sendgrid") expect(config.credential_id).toBe(target.refs.sendgrid);
      expectSigningSecret(body, rotate === true, channel);
      if (rotate === true) expect(kind).toBe("webhook");
      expect(effect.headers.get("cache-control")).toBe("no-store");
      expectOnlyMonitoringWritten(effect, change, {}, true);
      expectChannelSecretsHidden(effect, kind, request);
      target.views[kind] = channel as unknown as Record<string, unknown>;
      recordOutcome(`channel updated ${kind}`);
      return false;
    },
  },
  {
    label: "POST /api/v1/monitoring/rules",
    method: "POST",
    fields: RULE_FIELDS.createRule,
    required: ["kind", "name"],
    valid: createRuleValidArb,
    // 409: a name the tenant already uses, or the tenant's 100 rules reached.
    allowed: [201, 400, 409, 413, 415, 422],
    auth: "key",
    target: "monitoring-rules",
    path: () => "/api/v1/monitoring/rules",
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(201);
      const request = ctx.request as RuleRequest & { name: string };
      // Settings are stored with the kind's defaults applied and unknown fields dropped: what evaluators read.
      expect(body).toEqual({
        id: expect.stringMatching(/^rule_/),
        name: request.name.trim(),
        kind: request.kind,
        service_id: request.service_id ?? null,
        settings: parseRuleSettings(request.kind, request.settings),
        channel_ids: [...new Set(request.channel_ids ?? [])],
        severity: request.severity ?? "warning",
        cooldown_seconds: request.cooldown_seconds ?? DEFAULT_COOLDOWN_SECONDS,
        enabled: request.enabled ?? true,
        created_at: expect.any(String),
        updated_at: expect.any(String),
      });
      expectOwnChannels(targetOf(ctx), body.channel_ids);
      expectOnlyMonitoringWritten(effect, change, { alertRules: 1 }, false);
      recordOutcome(`rule created ${request.kind}`);
      return false;
    },
  },
  {
    label: "PATCH /api/v1/monitoring/rules/{id}",
    method: "PATCH",
    fields: RULE_FIELDS.updateRule,
    required: [],
    valid: updateRuleValidArb,
    allowed: [200, 400, 409, 413, 415, 422],
    auth: "key",
    target: "monitoring-rules",
    path: (target) => `/api/v1/monitoring/rules/${target?.refs?.rule}`,
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const target = targetOf(ctx);
      const before = target.views.rule as Record<string, unknown>;
      const request = ctx.request as Omit<RuleRequest, "kind">;
      // The stored rule with exactly the named fields replaced; its kind and id fixed.
      expect(body).toEqual({
        ...before,
        name: request.name?.trim() ?? before.name,
        service_id: request.service_id === undefined ? before.service_id : request.service_id,
        settings: parseRuleSettings("usage_threshold", request.settings ?? before.settings),
        channel_ids: request.channel_ids ? [...new Set(request.channel_ids)] : before.channel_ids,
        severity: request.severity ?? before.severity,
        cooldown_seconds: request.cooldown_seconds ?? before.cooldown_seconds,
        enabled: request.enabled ?? before.enabled,
        updated_at: expect.any(String),
      });
      expectOwnChannels(target, body.channel_ids);
      expectOnlyMonitoringWritten(effect, change, {}, false);
      target.views.rule = body;
      recordOutcome("rule updated");
      return false;
    },
  },
  {
    label: "PUT /api/v1/security-policy",
    method: "PUT",
    fields: POLICY_FIELDS,
    required: POLICY_REQUIRED,
    valid: validTextArb(POLICY_FIELDS, POLICY_REQUIRED),
    // 409: the allowlists would lock out the writer; 403: an earlier success required 2FA of this
    // tenant's keys, and its admin key has not enrolled (the step-up).
    allowed: [200, 400, 403, 409, 413, 415, 422],
    auth: "key",
    target: "security-policy",
    path: () => "/api/v1/security-policy",
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const request = ctx.request as Partial<PolicySettings>;
      const settings = {
        ip_allowlist: [],
        country_allowlist: [],
        require_2fa: false,
        compliance: [],
        ...request,
      } as PolicySettings;
      return expectPolicyWritten(body, settings, change, ctx, effect);
    },
  },
  {
    label: "PATCH /api/v1/security-policy",
    method: "PATCH",
    fields: POLICY_FIELDS,
    required: [],
    allowed: [200, 400, 403, 409, 413, 415, 422],
    auth: "key",
    target: "security-policy",
    path: () => "/api/v1/security-policy",
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const request = ctx.request as Partial<PolicySettings>;
      const settings = {
        ...settingsOfView(targetOf(ctx).views.policy as Record<string, unknown>),
        ...request,
      };
      // A policy moving off "custom" drops its custom period unless the PATCH names one.
      if (settings.rotation_policy !== "custom" && request.custom_rotation_days === undefined)
        delete settings.custom_rotation_days;
      return expectPolicyWritten(body, settings, change, ctx, effect);
    },
  },
];
