import { createRoute, z } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import type { Context } from "hono";
import { auditActor } from "../audit/actor";
import { type AuditEvent, commitWithAudit } from "../audit/audit-log";
import { requestOrigin, requireScope } from "../auth/authenticate";
import { secondFactorStateOf, secondFactorStateQueries } from "../auth/second-factor";
import { assertStepUp, TOTP_HEADER } from "../auth/step-up";
import { type ProbeResult, runProbe } from "../catalog/run-probe";
import { generateFieldValue, validateCredential } from "../catalog/validate";
import { ProbeResultSchema } from "../credentials/credential-schemas";
import { sealedVersionStatements } from "../credentials/credential-versions";
import { probeView } from "../credentials/credential-view";
import { providerFetch } from "../credentials/provider-fetch";
import { requireService } from "../credentials/require-service";
import { displayValues, openValues, sealValues } from "../credentials/sealed-fields";
import { newId } from "../crypto/random";
import { type Database, database } from "../db/client";
import { apiKeys, credentials, tenants, wizardCommits } from "../db/schema";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { mintKeyWithBackup } from "../keys/issue-key";
import { serviceKeySettings, tenantKeyPrefix } from "../keys/service-key";
import { RETEST_INTERVAL_MS } from "../lifecycle/retests";
import {
  assertChannelDeliverable,
  assertChannelReferences,
  channelSpec,
  maskedChannel,
} from "../monitoring/channels";
import { CHANGES } from "../monitoring/diff-by-name";
import { sendTestAlert } from "../monitoring/send-test-alert";
import { newSigningSecret } from "../monitoring/standard-webhooks";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  jsonBody,
  jsonContent,
  NO_STORE,
  problems,
} from "../openapi/shared";
import { assertInsideFence, assertSettingsMeetLevel } from "../policy/security-policy";
import { activeDekQuery } from "../vault/data-keys";
import { type Unsealed, unseal } from "../vault/keyring";
import {
  planReconcile,
  planView,
  readStoredSettings,
  reconcileStatements,
  storedSettingsOf,
  storedSettingsQueries,
  wizardRuleName,
} from "../wizard/reconcile";
import { rotationDays } from "../wizard/security-levels";
import {
  CHANNEL_SLOTS,
  channelSlot,
  channelSlotsOf,
  fieldsUnder,
  serviceSlots,
  serviceSlotsOf,
  slotsUnder,
} from "../wizard/slots";
import {
  type Channel,
  ChannelSchema,
  CommitStepSchema,
  ConfirmStepSchema,
  MonitoringStepSchema,
  SecurityStepSchema,
  ServicesStepSchema,
  STEPS,
  type Step,
  StepSchema,
} from "../wizard/steps";
import type { WizardResult, WizardSnapshot } from "../wizard/wizard-session";
import type { CommitSummary, MaskedChannel, WizardMutation, WizardState } from "../wizard/wizard-state";

const tags = ["Wizard"];
const WizardStateSchema = z
  .object({ id: z.string(), status: z.enum(["open", "committed"]) })
  .passthrough()
  .openapi("WizardState");
const IdParam = z.object({ id: z.string().max(100) });
/** Another tenant's wizard, or a wiped one, is NOT_FOUND on every route. */
const authProblems = [...AUTH_PROBLEMS, "NOT_FOUND"] as const;

type ApiKeyRow = typeof apiKeys.$inferSelect;

function unwrap<T>(result: WizardResult<T>): T {
  if (!result.ok) throw new ApiError(result.code, result.detail);
  return result.value;
}

/** A malformed id is simply not found, exactly like another tenant's. */
function wizardStub(c: Context<AppEnv>, id: string) {
  try {
    return c.env.WIZARD_SESSION.get(c.env.WIZARD_SESSION.idFromString(id));
  } catch {
    throw new ApiError("NOT_FOUND", "No such wizard.");
  }
}

async function apply(c: Context<AppEnv>, id: string, mutation: WizardMutation): Promise<WizardState> {
  return unwrap(await wizardStub(c, id).apply(c.get("principal").tenantId, mutation));
}

async function readState(c: Context<AppEnv>, id: string): Promise<WizardState> {
  return unwrap(await wizardStub(c, id).read(c.get("principal").tenantId));
}

/** The state and the sealed values, in one call to the wizard. */
async function readSnapshot(c: Context<AppEnv>, id: string): Promise<WizardSnapshot> {
  return unwrap(await wizardStub(c, id).snapshot(c.get("principal").tenantId));
}

function assertOpen(state: WizardState) {
  if (state.status !== "open") throw new ApiError("CONFLICT", "This wizard has been committed.");
}

/** The Durable Object enforces step order too; checking first means nothing is sealed for a refused call. */
function assertReached(state: WizardState, step: Step) {
  assertOpen(state);
  if (STEPS.indexOf(state.furthest_step) < STEPS.indexOf(step)) {
    throw new ApiError("CONFLICT", `Finish the "${state.furthest_step}" step first.`);
  }
}

function securityOf(state: WizardState) {
  if (!state.steps.security) throw new ApiError("CONFLICT", 'Finish the "security" step first.');
  return state.steps.security;
}

/**
 * Values are validated when entered, under the settings of that moment; a later change of level or
 * environment (basic to enterprise, test to production) can make them unacceptable, e.g. a test-mode key
 * that basic only warned about. The commit checks them again under the settings it is about to write, and
 * before the commit lease, so a refusal leaves the wizard free for the admin to re-enter them.
 */
async function assertEnteredValuesStillValid(
  keys: Unsealed,
  db: Database,
  tenantId: string,
  wizardId: string,
  { state, sealed }: WizardSnapshot,
) {
  const security = securityOf(state);
  const plain = await openForWizard(keys, db, tenantId, wizardId, sealed);
  // Services still missing values are the commit lease's refusal (409), not this one.
  const entered = (state.steps.services?.service_ids ?? []).filter(
    (serviceId) => state.steps.keys.services[serviceId]?.complete,
  );
  const stale = entered.filter(
    (serviceId) =>
      !validateCredential(
        requireService(serviceId, "service_ids"),
        fieldsUnder(plain, serviceSlots(serviceId)),
        {
          environment: security.environment,
          securityLevel: security.security_level,
        },
      ).ok,
  );
  if (stale.length) {
    throw new ApiError("VALIDATION_FAILED", "Some credentials no longer pass under the security settings.", {
      errors: stale.map((serviceId) => ({
        path: `steps.keys.services.${serviceId}`,
        message: "no longer valid for this security level or environment: enter it again",
      })),
    });
  }
}

/**
 * A channel created or renamed through the API between the plan and the batch takes a name the plan meant
 * to add: the unique index refuses the batch as a whole, and the admin reviews the new difference.
 */
function reconcileConflictOf(error: unknown): ApiError | null {
  const text = String((error as { cause?: unknown })?.cause ?? error);
  return text.includes("UNIQUE constraint failed: alert_channels")
    ? new ApiError(
        "CONFLICT",
        "The tenant's channels changed during the commit: review the changes and commit again.",
      )
    : null;
}

/** Values entered in the wizard are sealed with the tenant DEK, AAD-bound to this wizard. */
const wizardRecord = (tenantId: string, wizardId: string) => ({ tenantId, recordId: `wizard:${wizardId}` });

async function sealForWizard(c: Context<AppEnv>, wizardId: string, values: Record<string, string>) {
  const db = database(c.env.DB);
  const keys = await unseal(c.env, db);
  const { sealed, countEncryptions } = await sealValues(
    keys,
    db,
    wizardRecord(c.get("principal").tenantId, wizardId),
    values,
  );
  await countEncryptions;
  return sealed;
}

async function openForWizard(
  keys: Unsealed,
  db: Database,
  tenantId: string,
  wizardId: string,
  blobs: Record<string, string>,
) {
  return openValues(keys, db, wizardRecord(tenantId, wizardId), blobs);
}

/** Splits a channel into its secret settings and the rest; webhook channels get a signing secret once. */
async function channelSecrets(c: Context<AppEnv>, wizardId: string, channel: Channel, path: string) {
  assertChannelDeliverable(c.env, channel, path);
  const secrets: Record<string, string> = { ...channelSpec(channel).secrets };
  let created: string | undefined;
  if (channel.kind === "webhook") {
    const slot = channelSlot(channel.name, "signing_secret");
    const blob = unwrap(await wizardStub(c, wizardId).sealed(c.get("principal").tenantId))[slot];
    if (blob) {
      const db = database(c.env.DB);
      const opened = await openForWizard(await unseal(c.env, db), db, c.get("principal").tenantId, wizardId, {
        [slot]: blob,
      });
      secrets.signing_secret = opened[slot] as string;
    } else {
      created = newSigningSecret();
      secrets.signing_secret = created;
    }
  }
  return { secrets, created };
}

const route = <T extends Parameters<typeof createRoute>[0]>(config: T) =>
  createRoute({ tags, security: bearerSecurity, middleware: [requireScope("wizard")] as const, ...config });
const stateResponse = (description: string) => ({
  200: jsonContent(WizardStateSchema, description),
  ...problems(...authProblems, "VALIDATION_FAILED", "CONFLICT"),
});

const startRoute = route({
  method: "post",
  path: "/",
  operationId: "startWizard",
  summary: "Start a wizard",
  responses: { 201: jsonContent(WizardStateSchema, "The new wizard."), ...problems(...authProblems) },
});
const getRoute = route({
  method: "get",
  path: "/{id}",
  operationId: "getWizard",
  summary: "The whole wizard state",
  request: { params: IdParam },
  responses: stateResponse("State."),
});
const servicesRoute = route({
  method: "put",
  path: "/{id}/steps/services",
  operationId: "selectWizardServices",
  summary: "Step 1: select services",
  request: { params: IdParam, body: jsonBody(ServicesStepSchema) },
  responses: stateResponse("State."),
});
const securityRoute = route({
  method: "put",
  path: "/{id}/steps/security",
  operationId: "setWizardSecurity",
  summary: "Step 2: security level, environment, rotation, access controls, compliance",
  request: { params: IdParam, body: jsonBody(SecurityStepSchema) },
  responses: stateResponse("State, with the compliance checklist."),
});
const serviceKeysRoute = route({
  method: "post",
  path: "/{id}/keys/{service_id}",
  operationId: "enterWizardServiceCredentials",
  summary: "Step 3: enter one service's credentials (validated, then stored encrypted in the wizard)",
  request: {
    params: IdParam.extend({ service_id: z.string().max(64) }),
    body: jsonBody(z.strictObject({ fields: z.record(z.string().max(64), z.string().max(4096)) })),
  },
  responses: {
    200: jsonContent(
      z.object({ state: WizardStateSchema, validation: z.object({}).passthrough() }),
      "Stored.",
    ),
    ...problems(...authProblems, "VALIDATION_FAILED", "CONFLICT", "SEALED"),
  },
});
const generateRoute = route({
  method: "post",
  path: "/{id}/keys/generate",
  operationId: "issueWizardKeys",
  summary:
    "Step 3: issue a Keywarden key per service and generate what the catalogue allows (plaintext once)",
  request: { params: IdParam, body: jsonBody(ConfirmStepSchema) },
  responses: {
    200: jsonContent(
      z.object({ state: WizardStateSchema, generated: z.record(z.string(), z.object({}).passthrough()) }),
      "Shown once.",
    ),
    ...problems(...authProblems, "CONFLICT", "SEALED"),
  },
});
const testsRoute = route({
  method: "post",
  path: "/{id}/tests",
  operationId: "runWizardTests",
  summary: "Step 4: run the live checks",
  request: {
    params: IdParam,
    body: jsonBody(z.strictObject({ service_ids: z.array(z.string().max(64)).max(20).optional() })),
  },
  responses: {
    200: jsonContent(
      z.object({ state: WizardStateSchema, results: z.record(z.string(), ProbeResultSchema) }),
      "Results.",
    ),
    ...problems(...authProblems, "CONFLICT", "SEALED", "INTEGRITY_ERROR"),
  },
});
const confirmKeysRoute = route({
  method: "put",
  path: "/{id}/steps/keys",
  operationId: "confirmWizardKeys",
  summary: "Step 3: confirm (every service complete)",
  request: { params: IdParam, body: jsonBody(ConfirmStepSchema) },
  responses: stateResponse("State."),
});
const confirmTestingRoute = route({
  method: "put",
  path: "/{id}/steps/testing",
  operationId: "confirmWizardTesting",
  summary: "Step 4: confirm (every service tested, none invalid)",
  request: { params: IdParam, body: jsonBody(ConfirmStepSchema) },
  responses: stateResponse("State."),
});
const monitoringRoute = route({
  method: "put",
  path: "/{id}/steps/monitoring",
  operationId: "setWizardMonitoring",
  summary: "Step 5: alert channels and rules",
  request: { params: IdParam, body: jsonBody(MonitoringStepSchema) },
  responses: {
    200: jsonContent(
      z.object({ state: WizardStateSchema, signing_secrets: z.record(z.string(), z.string()) }),
      "State; new webhook signing secrets shown once.",
    ),
    ...problems(...authProblems, "VALIDATION_FAILED", "CONFLICT", "SEALED"),
  },
});
const testChannelRoute = route({
  method: "post",
  path: "/{id}/monitoring/test",
  operationId: "testWizardChannel",
  summary: "Step 5: send a test message through a channel",
  request: { params: IdParam, body: jsonBody(z.strictObject({ channel: ChannelSchema })) },
  responses: {
    200: jsonContent(
      z.object({
        delivered: z.boolean(),
        status: z.number().optional(),
        reason: z.string().optional(),
        signing_secret: z.string().optional(),
      }),
      "Delivery result; a new webhook signing secret is shown once.",
    ),
    ...problems(...authProblems, "VALIDATION_FAILED", "CONFLICT", "SEALED"),
  },
});
const navigateRoute = route({
  method: "post",
  path: "/{id}/navigate",
  operationId: "navigateWizard",
  summary: "Go back to a step already reached",
  request: { params: IdParam, body: jsonBody(z.strictObject({ step: StepSchema })) },
  responses: stateResponse("State."),
});
const commitRoute = route({
  method: "post",
  path: "/{id}/commit",
  operationId: "commitWizard",
  summary: "Step 6: write everything to D1 in one batch (idempotent)",
  description:
    "The commit replaces the tenant's security policy, so it is a step-up: a browser session must have " +
    "signed in within the last 5 minutes, and a key that enrolled 2FA (or any key, once the tenant's " +
    `policy requires 2FA) sends a current code as \`totp\` or in the \`${TOTP_HEADER}\` header. A retry of a ` +
    "finished commit needs neither and returns the same summary.",
  request: { params: IdParam, body: jsonBody(CommitStepSchema) },
  responses: {
    200: jsonContent(
      z.object({ state: WizardStateSchema, generated: z.record(z.string(), z.object({}).passthrough()) }),
      "Committed.",
    ),
    ...problems(...authProblems, "VALIDATION_FAILED", "CONFLICT", "SEALED", "INTEGRITY_ERROR"),
  },
});
const ChangeSchema = z.enum(CHANGES);
const ChangesSchema = z
  .object({
    channels: z.array(
      z.object({
        name: z.string(),
        kind: z.string(),
        change: ChangeSchema,
        id: z.string().nullable(),
        fields: z.array(z.string()).describe("Which settings differ (names only, never values)."),
      }),
    ),
    rules: z.array(
      z.object({
        name: z.string(),
        kind: z.string(),
        change: ChangeSchema,
        id: z.string().nullable(),
        fields: z.array(z.string()),
      }),
    ),
    policy: z.object({ change: ChangeSchema, fields: z.array(z.string()) }),
  })
  .openapi("WizardChanges");
const changesRoute = route({
  method: "get",
  path: "/{id}/changes",
  operationId: "getWizardChanges",
  summary: "Step 6: what the commit would add, change, remove or leave unchanged",
  description:
    "Channels are matched by name and wizard rules by what they watch; stored channels missing from the " +
    "monitoring step, and stored rules of the kinds the wizard offers that it does not list, are removed.",
  request: { params: IdParam },
  responses: {
    200: jsonContent(ChangesSchema, "The difference."),
    ...problems(...authProblems, "CONFLICT", "SEALED", "INTEGRITY_ERROR"),
  },
});
const abandonRoute = route({
  method: "delete",
  path: "/{id}",
  operationId: "abandonWizard",
  summary: "Abandon: wipe the wizard",
  request: { params: IdParam },
  responses: { 204: { description: "Wiped." }, ...problems(...authProblems) },
});

/** Issues the Keywarden keys of the given services under the wizard's security settings. */
async function mintServiceKeys(
  c: Context<AppEnv>,
  state: WizardState,
  serviceIds: string[],
  /** The tenant's key prefix (`tenantKeyPrefix`). */
  prefix: string,
) {
  const security = securityOf(state);
  const principal = c.get("principal");
  const days = rotationDays(security.security_level, security.rotation_policy, security.custom_rotation_days);
  const minted: Record<string, Awaited<ReturnType<typeof mintKeyWithBackup>>> = {};
  for (const serviceId of serviceIds) {
    minted[serviceId] = await mintKeyWithBackup(
      principal.tenantId,
      serviceKeySettings(requireService(serviceId, "service_ids"), {
        environment: security.environment,
        securityLevel: security.security_level,
        prefix,
        rotationDays: days,
        ipAllowlist: security.ip_allowlist,
        countryAllowlist: security.country_allowlist,
        metadata: { wizard_id: state.id, environment: security.environment },
        createdBy: principal.keyId,
      }),
    );
  }
  return minted;
}

export const wizardRoutes = createRouter()
  .openapi(startRoute, async (c) => {
    const principal = c.get("principal");
    const stub = c.env.WIZARD_SESSION.get(c.env.WIZARD_SESSION.newUniqueId());
    return c.json(unwrap(await stub.create(principal.tenantId, principal.keyId)), 201);
  })
  .openapi(getRoute, async (c) => c.json(await readState(c, c.req.valid("param").id), 200))
  .openapi(servicesRoute, async (c) => {
    const data = c.req.valid("json");
    const ids = [...new Set(data.service_ids)];
    for (const [index, serviceId] of ids.entries()) requireService(serviceId, `service_ids.${index}`);
    return c.json(
      await apply(c, c.req.valid("param").id, { type: "services", data: { service_ids: ids } }),
      200,
    );
  })
  .openapi(securityRoute, async (c) => {
    const data = c.req.valid("json");
    assertSettingsMeetLevel(data);
    return c.json(await apply(c, c.req.valid("param").id, { type: "security", data }), 200);
  })
  // Registered before /keys/{service_id}, which would otherwise take "generate" as a service id.
  .openapi(generateRoute, async (c) => {
    const { id } = c.req.valid("param");
    let state = await readState(c, id);
    const security = securityOf(state);
    const selected = state.steps.services?.service_ids ?? [];
    const minted = await mintServiceKeys(
      c,
      state,
      selected,
      await tenantKeyPrefix(database(c.env.DB), c.get("principal").tenantId),
    );
    const generated: Record<string, { key: string; backup_key?: string; secrets: Record<string, string> }> =
      {};
    for (const serviceId of selected) {
      const service = requireService(serviceId, "service_ids");
      const secrets = Object.fromEntries(
        service.generatable.map((spec) => [spec.field, generateFieldValue(spec)]),
      );
      const keys = minted[serviceId] as Awaited<ReturnType<typeof mintKeyWithBackup>>;
      generated[serviceId] = {
        key: keys.primary.key,
        ...(keys.backup ? { backup_key: keys.backup.key } : {}),
        secrets,
      };
      if (Object.keys(secrets).length) {
        const previous = state.steps.keys.services[serviceId];
        const merged = { ...(previous?.fields ?? {}), ...displayValues(service.fields, secrets) };
        state = await apply(c, id, {
          type: "serviceFields",
          serviceId,
          // Generating adds values; whatever the admin entered before stays.
          keep: Object.keys(previous?.fields ?? {}),
          sealed: await sealForWizard(c, id, serviceSlotsOf(serviceId, secrets)),
          entry: {
            fields: merged,
            generated: [...new Set([...(previous?.generated ?? []), ...Object.keys(secrets)])],
            complete: service.fields.every((f) => !f.required || merged[f.name] !== undefined),
            warnings: previous?.warnings ?? [],
          },
        });
      }
    }
    state = await apply(c, id, {
      type: "issuedKeys",
      security,
      issued: Object.fromEntries(
        Object.entries(minted).map(([serviceId, keys]) => [
          serviceId,
          {
            key_id: keys.primary.row.id,
            start: keys.primary.row.start,
            ...(keys.backup ? { backup_key_id: keys.backup.row.id } : {}),
          },
        ]),
      ),
      // Rows carry only hashes and display parts; the plaintext exists in this response alone.
      rows: Object.fromEntries(Object.entries(minted).map(([serviceId, keys]) => [serviceId, keys.rows])),
    });
    return c.json({ state, generated }, 200, NO_STORE);
  })
  .openapi(serviceKeysRoute, async (c) => {
    const { id, service_id } = c.req.valid("param");
    const { fields } = c.req.valid("json");
    const state = await readState(c, id);
    const security = securityOf(state);
    const service = requireService(service_id, "service_id");
    // Refuse before sealing anything: a rejected request must not spend the DEK's encryption budget.
    assertOpen(state);
    if (!state.steps.services?.service_ids.includes(service.id)) {
      throw new ApiError("CONFLICT", "That service is not selected in this wizard.");
    }
    const previous = state.steps.keys.services[service.id];
    const generated = (previous?.generated ?? []).filter((name) => fields[name] === undefined);
    const validation = validateCredential(service, fields, {
      environment: security.environment,
      securityLevel: security.security_level,
    });
    // A generated value is not re-sent by the browser; its absence here is not an error.
    const fieldErrors = validation.fields
      .filter((f) => f.errors.length && !(generated.includes(f.field) && fields[f.field] === undefined))
      .flatMap((f) => f.errors.map((message) => ({ path: `fields.${f.field}`, message })));
    const errors = [...validation.errors.map((message) => ({ path: "fields", message })), ...fieldErrors];
    if (errors.length)
      throw new ApiError("VALIDATION_FAILED", `The ${service.name} credentials did not pass validation.`, {
        errors,
      });
    const sealed = await sealForWizard(c, id, serviceSlotsOf(service.id, fields));
    const kept = Object.fromEntries(
      Object.entries(previous?.fields ?? {}).filter(([field]) => generated.includes(field)),
    );
    const merged = { ...kept, ...displayValues(service.fields, fields) };
    const next = await apply(c, id, {
      type: "serviceFields",
      serviceId: service.id,
      sealed,
      keep: generated,
      entry: {
        fields: merged,
        generated,
        complete: service.fields.every((f) => !f.required || merged[f.name] !== undefined),
        warnings: validation.warnings,
      },
    });
    return c.json({ state: next, validation: { ...validation } }, 200);
  })
  .openapi(testsRoute, async (c) => {
    const { id } = c.req.valid("param");
    const { state, sealed: blobs } = await readSnapshot(c, id);
    const security = securityOf(state);
    const selected = state.steps.services?.service_ids ?? [];
    const wanted = c.req.valid("json").service_ids?.filter((s) => selected.includes(s)) ?? selected;
    const tenantId = c.get("principal").tenantId;
    const db = database(c.env.DB);
    const keys = await unseal(c.env, db);
    const results = Object.fromEntries(
      await Promise.all(
        wanted.map(async (serviceId) => {
          const slots = serviceSlots(serviceId);
          const values = fieldsUnder(
            await openForWizard(keys, db, tenantId, id, slotsUnder(blobs, slots)),
            slots,
          );
          const result = await runProbe(requireService(serviceId, "service_ids"), values, {
            fetch: providerFetch(c.env),
            environment: security.environment,
          }).catch((): ProbeResult => ({ status: "unknown", reason: "missing_fields", latency_ms: 0 }));
          return [serviceId, result] as const;
        }),
      ),
    );
    const next = await apply(c, id, { type: "testResults", results });
    const view = Object.fromEntries(
      Object.entries(results).map(([serviceId, result]) => [serviceId, probeView(result)]),
    );
    return c.json({ state: next, results: view }, 200);
  })
  .openapi(confirmKeysRoute, async (c) =>
    c.json(await apply(c, c.req.valid("param").id, { type: "confirm", step: "keys" }), 200),
  )
  .openapi(confirmTestingRoute, async (c) =>
    c.json(await apply(c, c.req.valid("param").id, { type: "confirm", step: "testing" }), 200),
  )
  .openapi(monitoringRoute, async (c) => {
    const { id } = c.req.valid("param");
    const data = c.req.valid("json");
    const state = await readState(c, id);
    assertReached(state, "monitoring");
    const names = data.channels.map((ch) => ch.name);
    const errors: { path: string; message: string }[] = [];
    if (new Set(names).size !== names.length)
      errors.push({ path: "channels", message: "channel names must be unique" });
    const ruleNames = new Set<string>();
    data.rules.forEach((rule, index) => {
      const ruleName = wizardRuleName(rule);
      if (ruleNames.has(ruleName))
        errors.push({ path: `rules.${index}`, message: "watches the same thing as an earlier rule" });
      ruleNames.add(ruleName);
      if (rule.channel_names.some((name) => !names.includes(name)))
        errors.push({ path: `rules.${index}.channel_names`, message: "names an unknown channel" });
      if ("service_id" in rule && !state.steps.services?.service_ids.includes(rule.service_id)) {
        errors.push({ path: `rules.${index}.service_id`, message: "is not a selected service" });
      }
    });
    if (errors.length)
      throw new ApiError("VALIDATION_FAILED", "The monitoring settings are not consistent.", { errors });
    const secretsToSeal: Record<string, string> = {};
    const signingSecrets: Record<string, string> = {};
    const masked: MaskedChannel[] = [];
    for (const [index, channel] of data.channels.entries()) {
      await assertChannelReferences(
        database(c.env.DB),
        c.get("principal").tenantId,
        channel,
        `channels.${index}`,
      );
      const { secrets, created } = await channelSecrets(c, id, channel, `channels.${index}`);
      if (created) signingSecrets[channel.name] = created;
      Object.assign(secretsToSeal, channelSlotsOf(channel.name, secrets));
      masked.push(maskedChannel(channelSpec(channel, secrets)) as MaskedChannel);
    }
    const sealed = Object.keys(secretsToSeal).length ? await sealForWizard(c, id, secretsToSeal) : {};
    const next = await apply(c, id, { type: "monitoring", data, masked, sealed });
    return c.json({ state: next, signing_secrets: signingSecrets }, 200, NO_STORE);
  })
  .openapi(testChannelRoute, async (c) => {
    const { id } = c.req.valid("param");
    const { channel } = c.req.valid("json");
    assertReached(await readState(c, id), "monitoring");
    const { secrets, created } = await channelSecrets(c, id, channel, "channel");
    if (created) {
      const slot = channelSlot(channel.name, "signing_secret");
      const sealed = await sealForWizard(c, id, { [slot]: created });
      await apply(c, id, { type: "channelSecret", slot, blob: sealed[slot] as string });
    }
    const tenant = await database(c.env.DB)
      .select()
      .from(tenants)
      .where(eq(tenants.id, c.get("principal").tenantId))
      .get();
    const result = await sendTestAlert(c.env, channel, secrets, {
      tenantName: tenant?.name ?? "",
      text: `Keywarden test alert for ${tenant?.name ?? "your tenant"}: the "${channel.name}" channel works.`,
    });
    return c.json({ ...result, ...(created ? { signing_secret: created } : {}) }, 200, NO_STORE);
  })
  .openapi(changesRoute, async (c) => {
    const { id } = c.req.valid("param");
    const tenantId = c.get("principal").tenantId;
    const { state, sealed: blobs } = await readSnapshot(c, id);
    assertReached(state, "review");
    const db = database(c.env.DB);
    const keys = await unseal(c.env, db);
    const plan = await planReconcile(
      keys,
      db,
      {
        tenantId,
        wizardId: id,
        security: securityOf(state),
        monitoring: state.steps.monitoring,
        plain: await openForWizard(keys, db, tenantId, id, slotsUnder(blobs, CHANNEL_SLOTS)),
        now: Date.now(),
      },
      await readStoredSettings(db, tenantId),
    );
    return c.json(planView(plan), 200);
  })
  .openapi(navigateRoute, async (c) =>
    c.json(
      await apply(c, c.req.valid("param").id, { type: "navigate", step: c.req.valid("json").step }),
      200,
    ),
  )
  .openapi(commitRoute, async (c) => {
    const { id } = c.req.valid("param");
    const principal = c.get("principal");
    const { tenantId } = principal;
    const stub = wizardStub(c, id);
    const db = database(c.env.DB);
    // A retry of a finished commit changes nothing, so it answers without a step-up.
    const before = await readSnapshot(c, id);
    if (before.state.commit) return c.json({ state: before.state, generated: {} }, 200);

    // Everything the commit reads from D1, in one round trip of single-table queries: whether it already
    // landed, the step-up state, the tenant's key prefix and sealing DEK, and the stored settings the
    // reconcile plan compares with. Each is used at the point it was read before, so refusals come in the
    // same order.
    const [landedRows, totpRows, requireRows, tenantRows, activeDek, ...stored] = await db.batch([
      db.select().from(wizardCommits).where(eq(wizardCommits.wizardId, id)),
      ...secondFactorStateQueries(db, principal),
      db.select({ keyPrefix: tenants.keyPrefix }).from(tenants).where(eq(tenants.id, tenantId)),
      activeDekQuery(db, tenantId),
      ...storedSettingsQueries(db, tenantId),
    ]);

    // A commit that landed in D1 but crashed before telling the wizard: finish it, create nothing twice.
    const landed = landedRows[0];
    if (landed) {
      const state = unwrap(await stub.finishCommit(tenantId, landed.summary as unknown as CommitSummary));
      return c.json({ state, generated: {} }, 200);
    }

    // The commit replaces the tenant's security policy (level floor, allowlists, 2FA requirement): a
    // step-up, like revealing a credential (OWASP ASVS 5.0 V6.8). Checked before the commit lease is
    // taken, so a refused attempt does not hold the wizard.
    await assertStepUp(c, db, c.req.valid("json").totp, secondFactorStateOf(totpRows, requireRows));
    assertInsideFence(securityOf(before.state), requestOrigin(c), "steps.security");
    const keys = await unseal(c.env, db);
    await assertEnteredValuesStillValid(keys, db, tenantId, id, before);
    const begun = unwrap(await stub.beginCommit(tenantId));
    if (begun.kind === "done") return c.json({ state: begun.state, generated: {} }, 200);

    // What the commit writes from is the wizard as it was when the lease was taken.
    const { state, sealed: blobs } = begun;
    const security = securityOf(state);
    const selected = state.steps.services?.service_ids ?? [];
    const plain = await openForWizard(keys, db, tenantId, id, blobs);
    const now = Date.now();

    // Only keys staged under the wizard's current settings, for services still selected, are committed
    // (the wizard drops the others); every other service's key is issued now and shown in this response only.
    const staged = begun.issuedRows as Record<string, ApiKeyRow[]>;
    const generated: Record<string, { key: string; backup_key?: string }> = {};
    const missing = selected.filter((serviceId) => !staged[serviceId]);
    // The prefix as `tenantKeyPrefix` reads it (src/keys/service-key.ts): `kw` when the tenant has none.
    const prefix = tenantRows[0]?.keyPrefix ?? "kw";
    const minted = missing.length ? await mintServiceKeys(c, state, missing, prefix) : {};
    for (const [serviceId, m] of Object.entries(minted)) {
      generated[serviceId] = { key: m.primary.key, ...(m.backup ? { backup_key: m.backup.key } : {}) };
    }
    const issuedRows = selected.flatMap((serviceId) => staged[serviceId] ?? minted[serviceId]?.rows ?? []);

    const statements = [];
    const events: AuditEvent[] = [];
    for (const row of issuedRows) {
      statements.push(db.insert(apiKeys).values(row));
      events.push({
        action: "key.create",
        targetType: "key",
        targetId: row.id,
        detail: { service: row.serviceId, via: "wizard" },
      });
    }
    const credentialIds: string[] = [];
    for (const serviceId of selected) {
      const service = requireService(serviceId, "service_ids");
      const values = fieldsUnder(plain, serviceSlots(serviceId));
      const credentialId = newId("cred");
      const version = await sealedVersionStatements(keys, db, {
        tenantId: principal.tenantId,
        credentialId,
        serviceId,
        version: 1,
        fields: values,
        stage: "current",
        createdBy: principal.keyId,
        now,
        activeDek,
      });
      const probe = state.steps.testing?.results[serviceId];
      statements.push(
        db.insert(credentials).values({
          id: credentialId,
          tenantId: principal.tenantId,
          serviceId,
          environment: security.environment,
          securityLevel: security.security_level,
          name: `${service.name} (${security.environment})`,
          currentVersion: 1,
          status: "active",
          deletedAt: null,
          lastTestStatus: probe?.status ?? null,
          lastTestReason: probe?.reason ?? null,
          lastTestLatencyMs: probe?.latency_ms ?? null,
          lastTestedAt: probe ? Date.parse(probe.tested_at) : null,
          providerExpiresAt: probe?.expires_at ?? null,
          providerAccount: probe?.account ?? null,
          nextTestAt: now + RETEST_INTERVAL_MS,
          createdBy: principal.keyId,
          createdAt: now,
          updatedAt: now,
        }),
        ...version,
      );
      credentialIds.push(credentialId);
      events.push({
        action: "credential.create",
        targetType: "credential",
        targetId: credentialId,
        detail: { service: serviceId, via: "wizard" },
      });
    }
    // Channels, rules and the policy are reconciled with what the tenant has (src/wizard/reconcile.ts): the
    // same plan the review step showed, computed again here from the same state.
    const plan = await planReconcile(
      keys,
      db,
      { tenantId, wizardId: id, security, monitoring: state.steps.monitoring, plain, now },
      storedSettingsOf(...stored),
    );
    const reconciled = await reconcileStatements(keys, db, plan, { tenantId, now }, activeDek);
    statements.push(...reconciled.statements);
    events.push(...reconciled.events);
    const summary: CommitSummary = {
      committed_at: new Date(now).toISOString(),
      created: {
        keys: issuedRows.map((row) => row.id),
        credentials: credentialIds,
        channels: reconciled.channelIds.added,
        rules: reconciled.ruleIds.added,
        policy: true,
      },
      reconciled: { channels: reconciled.channelIds, rules: reconciled.ruleIds },
      changes: planView(plan),
    };
    // The marker row makes a second commit of this wizard fail as a whole instead of creating twice.
    statements.push(
      db
        .insert(wizardCommits)
        .values({ wizardId: id, tenantId: principal.tenantId, summary: { ...summary }, committedAt: now }),
    );
    events.push({
      action: "wizard.commit",
      targetType: "wizard",
      targetId: id,
      detail: { services: selected },
    });

    try {
      await commitWithAudit(c.env, auditActor(c), statements, events);
    } catch (error) {
      const existing = await db.select().from(wizardCommits).where(eq(wizardCommits.wizardId, id)).get();
      if (!existing) {
        const conflict = reconcileConflictOf(error);
        if (!conflict) throw error;
        unwrap(await stub.releaseCommit(principal.tenantId));
        throw conflict;
      }
      const finished = unwrap(
        await stub.finishCommit(principal.tenantId, existing.summary as unknown as CommitSummary),
      );
      return c.json({ state: finished, generated: {} }, 200);
    }
    const finished = unwrap(await stub.finishCommit(principal.tenantId, summary));
    return c.json({ state: finished, generated }, 200, NO_STORE);
  })
  .openapi(abandonRoute, async (c) => {
    unwrap(await wizardStub(c, c.req.valid("param").id).abandon(c.get("principal").tenantId));
    return c.body(null, 204);
  });
