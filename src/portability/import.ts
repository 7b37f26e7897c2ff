import { eq } from "drizzle-orm";
import { type AuditActor, type AuditEvent, commitWithAudit } from "../audit/audit-log";
import {
  assertValidFields,
  type CredentialRow,
  findVersionRow,
  openVersion,
  sealedVersionStatements,
} from "../credentials/credential-versions";
import { isConcurrentChange } from "../credentials/preconditions";
import { requireService } from "../credentials/require-service";
import { newCredentialRow, newCurrentVersionStatements } from "../credentials/store-credential";
import { newId } from "../crypto/random";
import { type Database, database } from "../db/client";
import { inJsonList } from "../db/in-list";
import { alertRules, apiKeys, credentials } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import { nextRotationAt } from "../keys/issue-key";
import { forgetCachedKey } from "../keys/key-record";
import { ratelimitColumns, usageLimitColumns } from "../keys/key-view";
import type { RequestOrigin } from "../keys/verify-key";
import {
  assertChannelDeliverable,
  assertChannelReferences,
  type ChannelSpec,
  channelCreateStatements,
  channelOf,
  channelSpec,
  channelUpdateStatements,
  diffChannels,
  parseChannel,
  storedSpec,
  tenantChannels,
} from "../monitoring/channels";
import {
  changedRuleFields,
  type RuleDraft,
  RuleInputSchema,
  type RuleRow,
  ruleCreateStatement,
  ruleDraft,
  ruleUpdateStatement,
} from "../monitoring/rules";
import {
  assertInsideFence,
  assertSettingsMeetLevel,
  changedPolicyFields,
  levelAtLeastPolicy,
  policyValues,
  policyWriteStatement,
  type SecurityPolicy,
  tenantSecurityPolicy,
} from "../policy/security-policy";
import { MAX_CHANNELS, MAX_RULES } from "../routes/monitoring";
import type { Unsealed } from "../vault/keyring";
import {
  BUNDLE_KINDS,
  type BundleChannel,
  type BundleCredential,
  type BundleKey,
  type BundleKind,
  type BundlePolicy,
  type BundleRule,
  type TenantBundle,
} from "./bundle";
import { tenantRowPages } from "./tenant-pages";

/**
 * Import merges a bundle into the calling tenant; it never removes anything the bundle does not name.
 * Each object is matched to what the tenant has:
 * - credentials by (service, environment, name): none → created with every version and stage label as
 *   exported; one whose current value equals the bundle's → unchanged; one that differs → updated (the
 *   bundle's current value becomes a new current version, the old one kept as previous); several → conflict;
 * - keys by their hash: absent → created (so the key string keeps verifying, now in this tenant); present in
 *   this tenant → unchanged; present in another tenant of this deployment → conflict (a key verifies in
 *   exactly one tenant: revoke or delete it there first);
 * - channels and rules by name (unique per tenant): created, updated to the bundle's settings, or unchanged;
 * - the security policy: created, updated or unchanged.
 * Whatever fails the checks an API write would pass (catalogue validation, the SSRF guard, limits, a policy
 * that would lock the caller out) is a conflict: listed with its reason and skipped. A second import of the
 * same bundle finds everything unchanged and writes nothing.
 */

export const OUTCOMES = ["create", "update", "unchanged", "conflict"] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** What the plan shows of one object: names, kinds, changed setting names and reasons; never a value. */
export interface PlanEntry {
  name: string;
  kind: string;
  fields?: string[];
  reason?: string;
}

export type KindPlan = {
  create: PlanEntry[];
  update: PlanEntry[];
  unchanged: PlanEntry[];
  conflicts: PlanEntry[];
};
export type ImportPlanView = Record<BundleKind, KindPlan>;

interface Step {
  outcome: Outcome;
  entry: PlanEntry;
  /** The object's id in this tenant (new for a create); "" for a conflict. */
  targetId: string;
}
interface CredentialStep extends Step {
  item: BundleCredential;
  row?: CredentialRow;
  securityLevel: CredentialRow["securityLevel"];
}
interface KeyStep extends Step {
  item: BundleKey;
}
interface ChannelStep extends Step {
  spec?: ChannelSpec;
}
interface RuleStep extends Step {
  draft?: RuleDraft;
}
interface PolicyStep extends Step {
  values?: SecurityPolicy;
}

export interface ImportPlan {
  tenantId: string;
  now: number;
  credentials: CredentialStep[];
  keys: KeyStep[];
  channels: ChannelStep[];
  rules: RuleStep[];
  policy: PolicyStep[];
}

/** The reason an ApiError gives, with its field paths and messages (which never echo values). */
function reasonOf(error: unknown): string {
  if (!(error instanceof ApiError)) throw error;
  const details = (error.extras.errors ?? []).slice(0, 3).map((e) => `${e.path}: ${e.message}`);
  return details.length ? `${error.detail} (${details.join("; ")})` : error.detail;
}

function conflict<T extends Step>(entry: PlanEntry, reason: string, extra: Omit<T, keyof Step>): T {
  return { outcome: "conflict", entry: { ...entry, reason }, targetId: "", ...extra } as T;
}

const sameFields = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) => {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => b[key] === a[key]);
};

const credentialKey = (c: { service: string; environment: string; name: string }) =>
  JSON.stringify([c.service, c.environment, c.name]);

/** The tenant's credentials, read in bounded keyset pages (no secrets: rows only). */
async function tenantCredentialRows(db: Database, tenantId: string): Promise<CredentialRow[]> {
  const all: CredentialRow[] = [];
  for await (const page of tenantRowPages(db, credentials, tenantId, 500)) all.push(...page);
  return all;
}

async function planCredentials(
  keys: Unsealed,
  db: Database,
  tenantId: string,
  items: readonly BundleCredential[],
): Promise<CredentialStep[]> {
  const policy = await tenantSecurityPolicy(db, tenantId);
  const byKey = new Map<string, CredentialRow[]>();
  for (const row of await tenantCredentialRows(db, tenantId)) {
    const key = credentialKey({ service: row.serviceId, environment: row.environment, name: row.name });
    byKey.set(key, [...(byKey.get(key) ?? []), row]);
  }
  const seen = new Set<string>();
  const steps: CredentialStep[] = [];
  for (const item of items) {
    const entry: PlanEntry = { name: item.name, kind: `${item.service}/${item.environment}` };
    const securityLevel = levelAtLeastPolicy(item.security_level, policy);
    const base = { item, securityLevel };
    const key = credentialKey(item);
    if (seen.has(key)) {
      steps.push(
        conflict(entry, "the bundle holds two credentials of this service, environment and name", base),
      );
      continue;
    }
    seen.add(key);
    const current = item.versions.find((v) => v.version === item.current_version)?.fields ?? {};
    const matches = byKey.get(key) ?? [];
    if (matches.length > 1) {
      steps.push(
        conflict(entry, "several credentials of this tenant have this service, environment and name", base),
      );
      continue;
    }
    try {
      const service = requireService(item.service);
      const known = new Set(service.fields.map((field) => field.name));
      if (item.versions.some((v) => Object.keys(v.fields).some((field) => !known.has(field))))
        throw new ApiError(
          "VALIDATION_FAILED",
          "A version holds fields the catalogue service does not have.",
        );
      assertValidFields(service, { environment: item.environment, securityLevel }, current);
    } catch (error) {
      steps.push(conflict(entry, reasonOf(error), base));
      continue;
    }
    const row = matches[0];
    if (!row) {
      steps.push({ ...base, outcome: "create", entry, targetId: newId("cred") });
      continue;
    }
    const stored = await findVersionRow(db, row, row.currentVersion);
    const same = stored ? sameFields(await openVersion(keys, db, stored), current) : false;
    steps.push({ ...base, outcome: same ? "unchanged" : "update", entry, targetId: row.id, row });
  }
  return steps;
}

async function planKeys(db: Database, tenantId: string, items: readonly BundleKey[]): Promise<KeyStep[]> {
  const found = new Map<string, { id: string; tenantId: string }>();
  for (let i = 0; i < items.length; i += 100) {
    const hashes = items.slice(i, i + 100).map((item) => item.hash);
    const rows = await db
      .select({ id: apiKeys.id, tenantId: apiKeys.tenantId, hash: apiKeys.hash })
      .from(apiKeys)
      .where(inJsonList(apiKeys.hash, hashes))
      .all();
    for (const row of rows) found.set(row.hash, row);
  }
  const seen = new Set<string>();
  return items.map((item) => {
    const entry: PlanEntry = { name: item.name, kind: `${item.start}…${item.last4}` };
    const existing = found.get(item.hash);
    if (seen.has(item.hash)) return conflict<KeyStep>(entry, "the bundle holds this key twice", { item });
    seen.add(item.hash);
    if (!existing) return { item, outcome: "create", entry, targetId: newId("key") };
    if (existing.tenantId === tenantId) return { item, outcome: "unchanged", entry, targetId: existing.id };
    return conflict<KeyStep>(
      entry,
      "this key is registered in another tenant of this deployment: revoke or delete it there first",
      { item },
    );
  });
}

const SIGNING_SECRET = /^whsec_[A-Za-z0-9+/]{20,200}={0,2}$/;

async function planChannels(
  env: Pick<Bindings, "ALLOW_LOOPBACK_WEBHOOKS">,
  keys: Unsealed,
  db: Database,
  tenantId: string,
  items: readonly BundleChannel[],
  credentialSteps: readonly CredentialStep[],
): Promise<ChannelStep[]> {
  const storedRows = await tenantChannels(db, tenantId);
  const stored = await Promise.all(
    storedRows.map(async (row) => ({ row, spec: await storedSpec(keys, db, row) })),
  );
  const credentialIds = new Map(credentialSteps.map((step) => [step.item.id, step]));
  const steps: ChannelStep[] = [];
  const valid: ChannelSpec[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const entry: PlanEntry = { name: item.name, kind: item.kind };
    try {
      if (seen.has(item.name)) throw new ApiError("CONFLICT", "The bundle holds two channels of this name.");
      seen.add(item.name);
      const config = { ...item.config };
      if (config.credential_id !== undefined) {
        // The bundle names its own credential: it must come along, as a SendGrid credential that is imported.
        const step = credentialIds.get(config.credential_id);
        if (
          !step ||
          step.outcome === "conflict" ||
          step.item.service !== "sendgrid" ||
          step.item.status !== "active"
        )
          throw new ApiError(
            "VALIDATION_FAILED",
            "It sends through a SendGrid credential that is not imported.",
          );
        config.credential_id = step.targetId;
      }
      const channel = parseChannel(channelOf({ ...item, config }));
      assertChannelDeliverable(env, channel);
      if (channel.kind !== "email" || channel.via !== "sendgrid")
        await assertChannelReferences(db, tenantId, channel);
      const signing = item.secrets.signing_secret;
      if (channel.kind === "webhook" && !(signing && SIGNING_SECRET.test(signing)))
        throw new ApiError(
          "VALIDATION_FAILED",
          "A webhook channel needs its Standard Webhooks signing secret.",
        );
      valid.push(
        channelSpec(channel, channel.kind === "webhook" ? { signing_secret: signing as string } : {}),
      );
    } catch (error) {
      steps.push(conflict(entry, reasonOf(error), {}));
    }
  }
  let room = MAX_CHANNELS - storedRows.length;
  for (const change of diffChannels(stored, valid)) {
    if (change.change === "removed") continue;
    const spec = valid.find((s) => s.name === change.name) as ChannelSpec;
    const entry: PlanEntry = { name: change.name, kind: change.kind };
    if (change.change === "added") {
      if (room <= 0) {
        steps.push(conflict(entry, `a tenant has at most ${MAX_CHANNELS} channels`, {}));
        continue;
      }
      room -= 1;
      steps.push({ outcome: "create", entry, targetId: newId("chan"), spec });
    } else if (change.change === "changed") {
      steps.push({
        outcome: "update",
        entry: { ...entry, fields: change.fields },
        targetId: change.id as string,
        spec,
      });
    } else steps.push({ outcome: "unchanged", entry, targetId: change.id as string, spec });
  }
  return steps;
}

async function planRules(
  db: Database,
  tenantId: string,
  items: readonly BundleRule[],
  channelSteps: readonly ChannelStep[],
): Promise<RuleStep[]> {
  const storedRules = await db
    .select()
    .from(alertRules)
    .where(eq(alertRules.tenantId, tenantId))
    .limit(MAX_RULES)
    .all();
  const byName = new Map(storedRules.map((row) => [row.name, row]));
  // The channels this tenant will have after the import, by name: its own and the ones imported.
  const channelIds = new Map<string, string>();
  for (const row of await tenantChannels(db, tenantId)) channelIds.set(row.name, row.id);
  for (const step of channelSteps)
    if (step.outcome !== "conflict") channelIds.set(step.entry.name, step.targetId);
  let room = MAX_RULES - storedRules.length;
  const seen = new Set<string>();
  const steps: RuleStep[] = [];
  for (const item of items) {
    const entry: PlanEntry = { name: item.name, kind: item.kind };
    let draft: RuleDraft;
    try {
      if (seen.has(item.name)) throw new ApiError("CONFLICT", "The bundle holds two rules of this name.");
      seen.add(item.name);
      const missing = item.channels.filter((name) => !channelIds.has(name));
      if (missing.length) throw new ApiError("VALIDATION_FAILED", "It names channels that are not imported.");
      const input = RuleInputSchema.safeParse({
        kind: item.kind,
        name: item.name,
        service_id: item.service_id,
        settings: item.settings,
        channel_ids: item.channels.map((name) => channelIds.get(name)),
        severity: item.severity,
        cooldown_seconds: item.cooldown_seconds,
        enabled: item.enabled,
      });
      if (!input.success) throw new ApiError("VALIDATION_FAILED", "The rule is not valid.");
      draft = ruleDraft(input.data);
    } catch (error) {
      steps.push(conflict(entry, reasonOf(error), {}));
      continue;
    }
    const row: RuleRow | undefined = byName.get(draft.name);
    if (!row) {
      if (room <= 0) {
        steps.push(conflict(entry, `a tenant has at most ${MAX_RULES} rules`, {}));
        continue;
      }
      room -= 1;
      steps.push({ outcome: "create", entry, targetId: newId("rule"), draft });
      continue;
    }
    const shape = (r: Pick<RuleDraft, "name" | "kind" | "serviceId" | "settings" | "channelIds">) => ({
      name: r.name,
      kind: r.kind,
      serviceId: r.serviceId,
      settings: r.settings,
      channels: r.channelIds,
    });
    const fields = [
      ...changedRuleFields(shape(row), shape(draft)),
      ...(["severity", "cooldownSeconds", "enabled"] as const)
        .filter((field) => row[field] !== draft[field])
        .map((field) => (field === "cooldownSeconds" ? "cooldown_seconds" : field)),
    ];
    steps.push({
      outcome: fields.length ? "update" : "unchanged",
      entry: fields.length ? { ...entry, fields } : entry,
      targetId: row.id,
      draft,
    });
  }
  return steps;
}

async function planPolicy(
  db: Database,
  tenantId: string,
  settings: BundlePolicy | null,
  origin: RequestOrigin,
  now: number,
): Promise<PolicyStep[]> {
  if (!settings) return [];
  const entry: PlanEntry = { name: "security policy", kind: settings.security_level };
  try {
    assertSettingsMeetLevel(settings);
    // The policy's allowlists fence every later admin call: one that excludes this caller is not applied.
    assertInsideFence(settings, origin);
  } catch (error) {
    return [conflict(entry, reasonOf(error), {})];
  }
  const before = await tenantSecurityPolicy(db, tenantId);
  const values = policyValues(tenantId, settings, { wizardId: "", now });
  const fields = changedPolicyFields(before, values);
  const outcome: Outcome = before ? (fields.length ? "update" : "unchanged") : "create";
  return [{ outcome, entry: fields.length ? { ...entry, fields } : entry, targetId: tenantId, values }];
}

/** Compares the bundle with the tenant. Reads only: a dry run is this and nothing more. */
export async function planImport(
  env: Pick<Bindings, "ALLOW_LOOPBACK_WEBHOOKS">,
  keys: Unsealed,
  db: Database,
  bundle: TenantBundle,
  target: { tenantId: string; origin: RequestOrigin; now: number },
): Promise<ImportPlan> {
  const { tenantId } = target;
  const credentialSteps = await planCredentials(keys, db, tenantId, bundle.credentials);
  const channelSteps = await planChannels(env, keys, db, tenantId, bundle.channels, credentialSteps);
  return {
    tenantId,
    now: target.now,
    credentials: credentialSteps,
    keys: await planKeys(db, tenantId, bundle.keys),
    channels: channelSteps,
    rules: await planRules(db, tenantId, bundle.rules, channelSteps),
    policy: await planPolicy(db, tenantId, bundle.policy, target.origin, target.now),
  };
}

/** The plan as the API shows it. */
export function planView(plan: ImportPlan): ImportPlanView {
  const view = {} as ImportPlanView;
  for (const kind of BUNDLE_KINDS) {
    const steps: Step[] = plan[kind];
    view[kind] = {
      create: steps.filter((s) => s.outcome === "create").map((s) => s.entry),
      update: steps.filter((s) => s.outcome === "update").map((s) => s.entry),
      unchanged: steps.filter((s) => s.outcome === "unchanged").map((s) => s.entry),
      conflicts: steps.filter((s) => s.outcome === "conflict").map((s) => s.entry),
    };
  }
  return view;
}

type Statement = Parameters<typeof commitWithAudit>[2][number];
interface Write {
  statements: Statement[];
  events: AuditEvent[];
  after?: () => void;
}

const ms = (iso: string | null) => (iso === null ? null : Date.parse(iso));

/** What every write of one applied plan shares. */
interface Writer {
  keys: Unsealed;
  db: Database;
  plan: ImportPlan;
  actorId: string;
}

/** The statements that create one credential with every exported version, stage labels as they were. */
async function credentialCreate({ keys, db, plan, actorId }: Writer, step: CredentialStep): Promise<Write> {
  const { item } = step;
  const row = newCredentialRow(
    {
      id: step.targetId,
      tenantId: plan.tenantId,
      serviceId: item.service,
      environment: item.environment,
      securityLevel: step.securityLevel,
      name: item.name,
      currentVersion: item.current_version,
      status: item.status,
      deletedAt: ms(item.deleted_at),
      createdBy: actorId,
      createdAt: ms(item.created_at) as number,
    },
    plan.now,
  );
  const statements: Statement[] = [db.insert(credentials).values(row)];
  for (const version of item.versions) {
    statements.push(
      ...(await sealedVersionStatements(keys, db, {
        tenantId: plan.tenantId,
        credentialId: row.id,
        serviceId: row.serviceId,
        version: version.version,
        fields: version.fields,
        stage: version.stage,
        providerKeyId: version.provider_key_id,
        createdBy: actorId,
        now: ms(version.created_at) as number,
      })),
    );
  }
  return {
    statements,
    events: [
      {
        action: "credential.import",
        targetType: "credential",
        targetId: row.id,
        detail: { service: row.serviceId, environment: row.environment, versions: item.versions.length },
      },
    ],
  };
}

/** The bundle's current value as this credential's new current version: the same path as an admin's PATCH. */
async function credentialUpdate({ keys, db, plan, actorId }: Writer, step: CredentialStep): Promise<Write> {
  const fields = step.item.versions.find((v) => v.version === step.item.current_version)?.fields ?? {};
  const { next, statements } = await newCurrentVersionStatements(
    keys,
    db,
    step.row as CredentialRow,
    fields,
    {
      createdBy: actorId,
      now: plan.now,
    },
  );
  return {
    statements,
    events: [
      {
        action: "credential.update",
        targetType: "credential",
        targetId: next.id,
        detail: { version: next.currentVersion, fields: Object.keys(fields).sort(), via: "import" },
      },
    ],
  };
}

function keyCreate({ db, plan, actorId }: Writer, step: KeyStep, keyIds: ReadonlyMap<string, string>): Write {
  const { item } = step;
  const link = (id: string | null) => (id === null ? null : (keyIds.get(id) ?? null));
  const revokedAt = ms(item.revoked_at);
  const row: typeof apiKeys.$inferInsert = {
    id: step.targetId,
    tenantId: plan.tenantId,
    name: item.name,
    hash: item.hash,
    start: item.start,
    last4: item.last4,
    environment: item.environment,
    securityLevel: item.security_level,
    scopes: item.scopes,
    enabled: item.enabled,
    revokedAt,
    expiresAt: ms(item.expires_at),
    ipAllowlist: item.ip_allowlist,
    countryAllowlist: item.country_allowlist,
    ...ratelimitColumns(item.ratelimit),
    ...usageLimitColumns(item.usage_limit),
    limitsVersion: 1,
    metadata: item.metadata,
    backupOfId: link(item.backup_of_id),
    rotatedToId: link(item.rotated_to_id),
    rotatedFromId: link(item.rotated_from_id),
    serviceId: item.service_id,
    rotationDays: item.rotation_days,
    rotationOverlapSeconds: item.rotation_overlap_seconds,
    // The schedule starts again in this tenant; a revoked or rotated-away key is never rotated.
    nextRotationAt:
      revokedAt === null && item.rotated_to_id === null ? nextRotationAt(item.rotation_days, plan.now) : null,
    lastRotatedAt: ms(item.last_rotated_at),
    createdBy: actorId,
    createdAt: ms(item.created_at) as number,
    updatedAt: plan.now,
    lastUsedAt: null,
  };
  return {
    statements: [db.insert(apiKeys).values(row)],
    events: [
      {
        action: "key.import",
        targetType: "key",
        targetId: step.targetId,
        detail: { scopes: item.scopes, environment: item.environment, security_level: item.security_level },
      },
    ],
    // A miss for this hash may be cached by verify in this isolate (src/keys/key-record.ts).
    after: () => forgetCachedKey(item.hash),
  };
}

/** Objects written per audited batch (one D1 batch each, through the tenant's AuditChain). */
export const IMPORT_BATCH_SIZE = 20;

async function commitInBatches(
  env: Parameters<typeof commitWithAudit>[0],
  actor: AuditActor,
  writes: readonly Write[],
) {
  for (let i = 0; i < writes.length; i += IMPORT_BATCH_SIZE) {
    const batch = writes.slice(i, i + IMPORT_BATCH_SIZE);
    try {
      await commitWithAudit(
        env,
        actor,
        batch.flatMap((w) => w.statements),
        batch.flatMap((w) => w.events),
      );
    } catch (error) {
      const text = String((error as { cause?: unknown })?.cause ?? error);
      if (isConcurrentChange(error) || text.includes("UNIQUE constraint failed"))
        throw new ApiError(
          "CONFLICT",
          "The tenant changed while importing. Run the import again: what was written is kept and not written twice.",
        );
      throw error;
    }
    for (const write of batch) write.after?.();
  }
}

/**
 * Writes a plan through the domain modules' own statement builders, kind by kind (credentials before the
 * channels that send through them, channels before the rules naming them), in audited batches. A batch is
 * atomic; an import stopped between batches is completed by running it again. Finally one `tenant.import`
 * audit row records the counts.
 */
export async function applyImport(
  env: Parameters<typeof commitWithAudit>[0],
  keys: Unsealed,
  actor: AuditActor,
  plan: ImportPlan,
): Promise<void> {
  const db = database(env.DB);
  const writer: Writer = { keys, db, plan, actorId: actor.actorId };
  const credentialWrites: Write[] = [];
  for (const step of plan.credentials) {
    if (step.outcome === "create") credentialWrites.push(await credentialCreate(writer, step));
    if (step.outcome === "update") credentialWrites.push(await credentialUpdate(writer, step));
  }
  await commitInBatches(env, actor, credentialWrites);

  const keyIds = new Map(
    plan.keys.filter((s) => s.outcome !== "conflict").map((s) => [s.item.id, s.targetId]),
  );
  await commitInBatches(
    env,
    actor,
    plan.keys.filter((s) => s.outcome === "create").map((s) => keyCreate(writer, s, keyIds)),
  );

  const channelWrites: Write[] = [];
  for (const step of plan.channels) {
    if (step.outcome !== "create" && step.outcome !== "update") continue;
    const target = { tenantId: plan.tenantId, channelId: step.targetId, now: plan.now };
    const spec = step.spec as ChannelSpec;
    const write =
      step.outcome === "create"
        ? await channelCreateStatements(keys, db, target, spec)
        : await channelUpdateStatements(keys, db, target, spec, step.entry.fields ?? []);
    channelWrites.push({ statements: write.statements, events: [write.event] });
  }
  await commitInBatches(env, actor, channelWrites);

  const ruleWrites = plan.rules.flatMap((step): Write[] => {
    const target = { tenantId: plan.tenantId, ruleId: step.targetId, now: plan.now };
    const draft = step.draft as RuleDraft;
    if (step.outcome === "create") {
      const { statement, event } = ruleCreateStatement(db, target, draft);
      return [{ statements: [statement], events: [event] }];
    }
    if (step.outcome === "update") {
      const { statement, event } = ruleUpdateStatement(db, target, draft);
      return [{ statements: [statement], events: [event] }];
    }
    return [];
  });
  await commitInBatches(env, actor, ruleWrites);

  const policyWrites = plan.policy.flatMap((step): Write[] => {
    if (step.outcome !== "create" && step.outcome !== "update") return [];
    const { statement, event } = policyWriteStatement(
      db,
      step.values as SecurityPolicy,
      step.entry.fields ?? [],
    );
    return [{ statements: [statement], events: [event] }];
  });
  await commitInBatches(env, actor, policyWrites);

  const detail: Record<string, number> = {};
  for (const kind of BUNDLE_KINDS) {
    for (const outcome of OUTCOMES) {
      detail[`${kind}_${outcome}`] = (plan[kind] as Step[]).filter((s) => s.outcome === outcome).length;
    }
  }
  await commitWithAudit(
    env,
    actor,
    [],
    [{ action: "tenant.import", targetType: "tenant", targetId: plan.tenantId, detail }],
  );
}
