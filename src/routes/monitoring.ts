import { createRoute, z } from "@hono/zod-openapi";
import { count, desc, eq } from "drizzle-orm";
import type { Context } from "hono";
import { auditActor } from "../audit/actor";
import { commitWithAudit } from "../audit/audit-log";
import { requestOrigin, requireScope } from "../auth/authenticate";
import type { Scope } from "../auth/scopes";
import { assertStepUp, TOTP_HEADER } from "../auth/step-up";
import { newId } from "../crypto/random";
import { database } from "../db/client";
import { alertChannels, alertRules, tenants } from "../db/schema";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { CHANNEL_HEALTH, CHANNEL_KINDS } from "../monitoring/alert-kinds";
import { renderTestMessage } from "../monitoring/alert-message";
import { openChannel, sendToChannel } from "../monitoring/channel-senders";
import {
  assertChannelDeliverable,
  assertChannelNameFree,
  assertChannelReferences,
  type ChannelRow,
  ChannelSchema,
  changedChannelFields,
  channelCreateStatements,
  channelDeleteStatements,
  channelOf,
  channelSpec,
  channelUpdateStatements,
  parseChannel,
  requireChannel,
  storedSpec,
} from "../monitoring/channels";
import {
  assertRuleNameFree,
  assertTenantChannels,
  patchedDraft,
  RuleInputSchema,
  RulePatchSchema,
  RuleViewSchema,
  requireRule,
  ruleCreateStatement,
  ruleDeleteStatement,
  ruleDraft,
  ruleUpdateStatement,
  ruleView,
} from "../monitoring/rules";
import { newSigningSecret } from "../monitoring/standard-webhooks";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  IdParam,
  isoTime,
  jsonBody,
  jsonContent,
  NO_STORE,
  problems,
} from "../openapi/shared";
import {
  assertInsideFence,
  assertSettingsMeetLevel,
  changedPolicyFields,
  PolicyViewSchema,
  policyValues,
  policyView,
  policyWriteStatement,
  type SecuritySettings,
  SecuritySettingsPatchSchema,
  SecuritySettingsSchema,
  settingsOfPolicy,
  tenantSecurityPolicy,
} from "../policy/security-policy";
import { unseal } from "../vault/keyring";

const tags = ["Monitoring"];

/** A tenant's monitoring stays small enough to list on one page and to evaluate every tick. */
export const MAX_CHANNELS = 50;
export const MAX_RULES = 100;

const ChannelViewSchema = z
  .object({
    id: z.string(),
    kind: z.enum(CHANNEL_KINDS),
    name: z.string(),
    config: z.record(z.string(), z.string()).describe("Non-secret settings only; secrets stay encrypted."),
    secret_fields: z.array(z.string()).describe("Which settings are stored encrypted."),
    health: z.enum(CHANNEL_HEALTH),
    consecutive_failures: z.number().int(),
    last_delivery_at: z.string().nullable(),
    last_error: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("AlertChannel");

function channelView(row: ChannelRow): z.infer<typeof ChannelViewSchema> {
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    config: row.config,
    secret_fields: Object.keys(row.sealedSecrets).sort(),
    health: row.health,
    consecutive_failures: row.consecutiveFailures,
    last_delivery_at: isoTime(row.lastDeliveryAt),
    last_error: row.lastError,
    created_at: isoTime(row.createdAt) as string,
    updated_at: isoTime(row.updatedAt || row.createdAt) as string,
  };
}

const CreatedChannelSchema = z
  .object({
    channel: ChannelViewSchema,
    signing_secret: z
      .string()
      .optional()
      .describe("A webhook channel's Standard Webhooks signing secret: shown in this response only."),
  })
  .openapi("CreatedAlertChannel");

/** Any field of the channel's kind; the merged channel is validated whole, so a field of another kind is refused. */
const ChannelPatchSchema = z
  .strictObject({
    name: z.string().optional(),
    to: z.string().optional(),
    from: z.string().optional(),
    url: z.string().optional(),
    webhook_url: z.string().optional(),
    twilio_account_sid: z.string().optional(),
    twilio_auth_token: z.string().optional(),
    via: z.string().optional(),
    credential_id: z.string().nullable().optional().describe("null stops using a SendGrid credential."),
    rotate_signing_secret: z
      .boolean()
      .optional()
      .describe("A webhook channel gets a new signing secret, shown once in the response."),
  })
  .openapi("AlertChannelPatch");

const TestResultSchema = z.object({
  delivered: z.boolean(),
  status: z.number().optional(),
  reason: z.string().optional(),
});

const ListSchema = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item) });

const routeWith =
  (scope: Scope) =>
  <T extends Parameters<typeof createRoute>[0]>(config: T) =>
    createRoute({ tags, security: bearerSecurity, middleware: [requireScope(scope)] as const, ...config });
const read = routeWith("monitoring:read");
const write = routeWith("monitoring:write");
const admin = routeWith("admin");

const channelsRoute = read({
  method: "get",
  path: "/monitoring/channels",
  operationId: "listChannels",
  summary: "The tenant's alert channels (secrets never shown), with their delivery health",
  responses: { 200: jsonContent(ListSchema(ChannelViewSchema), "Channels."), ...problems(...AUTH_PROBLEMS) },
});
const channelRoute = read({
  method: "get",
  path: "/monitoring/channels/{id}",
  operationId: "getChannel",
  summary: "One alert channel",
  request: { params: IdParam },
  responses: {
    200: jsonContent(ChannelViewSchema, "The channel."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND"),
  },
});
const createChannelRoute = write({
  method: "post",
  path: "/monitoring/channels",
  operationId: "createChannel",
  summary: "Add an alert channel (secret settings sealed, never returned)",
  request: { body: jsonBody(ChannelSchema) },
  responses: {
    201: jsonContent(CreatedChannelSchema, "Created; a webhook's signing secret is shown once."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "CONFLICT", "SEALED", "KEY_UNAVAILABLE"),
  },
});
const updateChannelRoute = write({
  method: "patch",
  path: "/monitoring/channels/{id}",
  operationId: "updateChannel",
  summary: "Change an alert channel; its secrets are sealed again under the current data key",
  request: { params: IdParam, body: jsonBody(ChannelPatchSchema) },
  responses: {
    200: jsonContent(CreatedChannelSchema, "Updated; a rotated signing secret is shown once."),
    ...problems(
      ...AUTH_PROBLEMS,
      "NOT_FOUND",
      "VALIDATION_FAILED",
      "CONFLICT",
      "SEALED",
      "KEY_UNAVAILABLE",
      "INTEGRITY_ERROR",
    ),
  },
});
const deleteChannelRoute = write({
  method: "delete",
  path: "/monitoring/channels/{id}",
  operationId: "deleteChannel",
  summary: "Delete an alert channel; it is taken out of every rule in the same batch",
  request: { params: IdParam },
  responses: { 204: { description: "Deleted." }, ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "SEALED") },
});
const testChannelRoute = write({
  method: "post",
  path: "/monitoring/channels/{id}/test",
  operationId: "testChannel",
  summary: "Send a test message through a stored channel (the same path as real alerts)",
  request: { params: IdParam },
  responses: {
    200: jsonContent(TestResultSchema, "What the receiver did."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "SEALED", "INTEGRITY_ERROR"),
  },
});

const rulesRoute = read({
  method: "get",
  path: "/monitoring/rules",
  operationId: "listRules",
  summary: "The tenant's stored alert rules (the defaults every tenant has are described in docs/alerts.md)",
  responses: { 200: jsonContent(ListSchema(RuleViewSchema), "Rules."), ...problems(...AUTH_PROBLEMS) },
});
const ruleRoute = read({
  method: "get",
  path: "/monitoring/rules/{id}",
  operationId: "getRule",
  summary: "One alert rule",
  request: { params: IdParam },
  responses: { 200: jsonContent(RuleViewSchema, "The rule."), ...problems(...AUTH_PROBLEMS, "NOT_FOUND") },
});
const createRuleRoute = write({
  method: "post",
  path: "/monitoring/rules",
  operationId: "createRule",
  summary: "Add an alert rule; a stored rule of a default kind replaces that default",
  request: { body: jsonBody(RuleInputSchema) },
  responses: {
    201: jsonContent(RuleViewSchema, "Created."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "CONFLICT"),
  },
});
const updateRuleRoute = write({
  method: "patch",
  path: "/monitoring/rules/{id}",
  operationId: "updateRule",
  summary: "Change an alert rule (its kind is fixed)",
  request: { params: IdParam, body: jsonBody(RulePatchSchema) },
  responses: {
    200: jsonContent(RuleViewSchema, "Updated."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "VALIDATION_FAILED", "CONFLICT"),
  },
});
const deleteRuleRoute = write({
  method: "delete",
  path: "/monitoring/rules/{id}",
  operationId: "deleteRule",
  summary: "Delete an alert rule (a default kind's default applies again)",
  request: { params: IdParam },
  responses: { 204: { description: "Deleted." }, ...problems(...AUTH_PROBLEMS, "NOT_FOUND") },
});

const policyRoute = read({
  method: "get",
  path: "/security-policy",
  operationId: "getSecurityPolicy",
  summary: "The tenant's security policy",
  responses: {
    200: jsonContent(PolicyViewSchema, "The policy."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND"),
  },
});
const policyStepUp =
  "Changing the policy is a step-up, like the wizard's commit: a browser session must have signed in within " +
  `5 minutes, and a key that enrolled 2FA (or any key, once the policy requires 2FA) sends a current code in the \`${TOTP_HEADER}\` header.`;
const putPolicyRoute = admin({
  method: "put",
  path: "/security-policy",
  operationId: "replaceSecurityPolicy",
  summary: "Replace the tenant's security policy",
  description: policyStepUp,
  request: { body: jsonBody(SecuritySettingsSchema) },
  responses: {
    200: jsonContent(PolicyViewSchema, "The policy now in force."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "CONFLICT", "SEALED"),
  },
});
const patchPolicyRoute = admin({
  method: "patch",
  path: "/security-policy",
  operationId: "updateSecurityPolicy",
  summary: "Change some settings of the tenant's security policy",
  description: policyStepUp,
  request: { body: jsonBody(SecuritySettingsPatchSchema) },
  responses: {
    200: jsonContent(PolicyViewSchema, "The policy now in force."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "VALIDATION_FAILED", "CONFLICT", "SEALED"),
  },
});

const tenantOf = (c: Context<AppEnv>) => c.get("principal").tenantId;

async function assertRoomFor(
  c: Context<AppEnv>,
  table: typeof alertChannels | typeof alertRules,
  max: number,
) {
  const row = await database(c.env.DB)
    .select({ n: count() })
    .from(table)
    .where(eq(table.tenantId, tenantOf(c)))
    .get();
  if ((row?.n ?? 0) >= max) throw new ApiError("CONFLICT", `A tenant has at most ${max} of these.`);
}

/** Writes a policy from settings after the checks every policy write passes (the wizard's commit does the same). */
async function writePolicy(c: Context<AppEnv>, settings: SecuritySettings) {
  const db = database(c.env.DB);
  assertSettingsMeetLevel(settings);
  assertInsideFence(settings, requestOrigin(c));
  // The policy sets the level floor, the allowlists and the 2FA requirement: a step-up (OWASP ASVS 5.0 V6.8).
  await assertStepUp(c, db);
  const before = await tenantSecurityPolicy(db, tenantOf(c));
  const values = policyValues(tenantOf(c), settings, { wizardId: "", now: Date.now() });
  const { statement, event } = policyWriteStatement(db, values, changedPolicyFields(before, values));
  await commitWithAudit(c.env, auditActor(c), [statement], [event]);
  return c.json(policyView(values), 200);
}

export const monitoringRoutes = createRouter()
  .openapi(channelsRoute, async (c) => {
    const rows = await database(c.env.DB)
      .select()
      .from(alertChannels)
      .where(eq(alertChannels.tenantId, tenantOf(c)))
      .orderBy(desc(alertChannels.createdAt))
      .limit(MAX_CHANNELS)
      .all();
    return c.json({ items: rows.map(channelView) }, 200);
  })
  .openapi(channelRoute, async (c) =>
    c.json(channelView(await requireChannel(database(c.env.DB), tenantOf(c), c.req.valid("param").id)), 200),
  )
  .openapi(createChannelRoute, async (c) => {
    const channel = c.req.valid("json");
    const db = database(c.env.DB);
    assertChannelDeliverable(c.env, channel);
    await assertChannelReferences(db, tenantOf(c), channel);
    await assertChannelNameFree(db, tenantOf(c), channel.name);
    await assertRoomFor(c, alertChannels, MAX_CHANNELS);
    const signingSecret = channel.kind === "webhook" ? newSigningSecret() : undefined;
    const spec = channelSpec(channel, signingSecret ? { signing_secret: signingSecret } : {});
    const channelId = newId("chan");
    const { statements, event } = await channelCreateStatements(
      await unseal(c.env, db),
      db,
      { tenantId: tenantOf(c), channelId, now: Date.now() },
      spec,
    );
    await commitWithAudit(c.env, auditActor(c), statements, [event]);
    const row = await requireChannel(db, tenantOf(c), channelId);
    return c.json(
      { channel: channelView(row), ...(signingSecret ? { signing_secret: signingSecret } : {}) },
      201,
      NO_STORE,
    );
  })
  .openapi(updateChannelRoute, async (c) => {
    const { id } = c.req.valid("param");
    const { rotate_signing_secret, credential_id, ...fields } = c.req.valid("json");
    const db = database(c.env.DB);
    const keys = await unseal(c.env, db);
    const row = await requireChannel(db, tenantOf(c), id);
    const before = await storedSpec(keys, db, row);
    const merged: Record<string, string> = { ...channelOf(before) };
    for (const [field, value] of Object.entries(fields)) if (value !== undefined) merged[field] = value;
    if (credential_id === null) delete merged.credential_id;
    else if (credential_id !== undefined) merged.credential_id = credential_id;
    const channel = parseChannel(merged);
    if (rotate_signing_secret && channel.kind !== "webhook") {
      throw new ApiError("VALIDATION_FAILED", "Only a webhook channel has a signing secret.", {
        errors: [{ path: "rotate_signing_secret", message: "only for webhook channels" }],
      });
    }
    assertChannelDeliverable(c.env, channel);
    await assertChannelReferences(db, tenantOf(c), channel);
    if (channel.name !== row.name) await assertChannelNameFree(db, tenantOf(c), channel.name, row.id);
    const signingSecret = rotate_signing_secret ? newSigningSecret() : undefined;
    const after = channelSpec(channel, {
      ...(before.secrets.signing_secret ? { signing_secret: before.secrets.signing_secret } : {}),
      ...(signingSecret ? { signing_secret: signingSecret } : {}),
    });
    const { statements, event } = await channelUpdateStatements(
      keys,
      db,
      { tenantId: tenantOf(c), channelId: id, now: Date.now() },
      after,
      changedChannelFields(before, after),
    );
    await commitWithAudit(c.env, auditActor(c), statements, [event]);
    return c.json(
      {
        channel: channelView(await requireChannel(db, tenantOf(c), id)),
        ...(signingSecret ? { signing_secret: signingSecret } : {}),
      },
      200,
      NO_STORE,
    );
  })
  .openapi(deleteChannelRoute, async (c) => {
    const db = database(c.env.DB);
    const row = await requireChannel(db, tenantOf(c), c.req.valid("param").id);
    const { statements, events } = channelDeleteStatements(db, { tenantId: tenantOf(c), now: Date.now() }, [
      row,
    ]);
    await commitWithAudit(c.env, auditActor(c), statements, events);
    return c.body(null, 204);
  })
  .openapi(testChannelRoute, async (c) => {
    const db = database(c.env.DB);
    const row = await requireChannel(db, tenantOf(c), c.req.valid("param").id);
    const tenant = await db
      .select({ name: tenants.name })
      .from(tenants)
      .where(eq(tenants.id, tenantOf(c)))
      .get();
    const target = await openChannel(await unseal(c.env, db), db, row);
    const text = `Keywarden test alert for ${tenant?.name ?? "your tenant"}: the "${row.name}" channel works.`;
    const result = await sendToChannel(
      c.env,
      target,
      { id: newId("msg"), message: renderTestMessage(text) },
      { now: Date.now() },
    );
    return c.json(result, 200);
  })
  .openapi(rulesRoute, async (c) => {
    const rows = await database(c.env.DB)
      .select()
      .from(alertRules)
      .where(eq(alertRules.tenantId, tenantOf(c)))
      .orderBy(desc(alertRules.createdAt))
      .limit(MAX_RULES)
      .all();
    return c.json({ items: rows.map(ruleView) }, 200);
  })
  .openapi(ruleRoute, async (c) =>
    c.json(ruleView(await requireRule(database(c.env.DB), tenantOf(c), c.req.valid("param").id)), 200),
  )
  .openapi(createRuleRoute, async (c) => {
    const draft = ruleDraft(c.req.valid("json"));
    const db = database(c.env.DB);
    await assertTenantChannels(db, tenantOf(c), draft.channelIds);
    await assertRuleNameFree(db, tenantOf(c), draft.name);
    await assertRoomFor(c, alertRules, MAX_RULES);
    const ruleId = newId("rule");
    const { statement, event } = ruleCreateStatement(
      db,
      { tenantId: tenantOf(c), ruleId, now: Date.now() },
      draft,
    );
    await commitWithAudit(c.env, auditActor(c), [statement], [event]);
    return c.json(ruleView(await requireRule(db, tenantOf(c), ruleId)), 201);
  })
  .openapi(updateRuleRoute, async (c) => {
    const { id } = c.req.valid("param");
    const db = database(c.env.DB);
    const row = await requireRule(db, tenantOf(c), id);
    const draft = patchedDraft(row, c.req.valid("json"));
    await assertTenantChannels(db, tenantOf(c), draft.channelIds);
    if (draft.name !== row.name) await assertRuleNameFree(db, tenantOf(c), draft.name, row.id);
    const { statement, event } = ruleUpdateStatement(
      db,
      { tenantId: tenantOf(c), ruleId: id, now: Date.now() },
      draft,
    );
    await commitWithAudit(c.env, auditActor(c), [statement], [event]);
    return c.json(ruleView(await requireRule(db, tenantOf(c), id)), 200);
  })
  .openapi(deleteRuleRoute, async (c) => {
    const db = database(c.env.DB);
    const row = await requireRule(db, tenantOf(c), c.req.valid("param").id);
    const { statement, event } = ruleDeleteStatement(db, tenantOf(c), row);
    await commitWithAudit(c.env, auditActor(c), [statement], [event]);
    return c.body(null, 204);
  })
  .openapi(policyRoute, async (c) => {
    const row = await tenantSecurityPolicy(database(c.env.DB), tenantOf(c));
    if (!row) throw new ApiError("NOT_FOUND", "No security policy has been set yet.");
    return c.json(policyView(row), 200);
  })
  .openapi(putPolicyRoute, async (c) => writePolicy(c, c.req.valid("json")))
  .openapi(patchPolicyRoute, async (c) => {
    const row = await tenantSecurityPolicy(database(c.env.DB), tenantOf(c));
    if (!row) throw new ApiError("NOT_FOUND", "No security policy yet: PUT a whole one first.");
    const patch = c.req.valid("json");
    const merged = SecuritySettingsSchema.parse({ ...settingsOfPolicy(row), ...patch });
    // A policy moving off "custom" drops its custom period, rather than keeping a stale one.
    if (merged.rotation_policy !== "custom" && patch.custom_rotation_days === undefined)
      delete merged.custom_rotation_days;
    return writePolicy(c, merged);
  });
