/**
 * Import of HashiCorp Vault KV version 2 secrets into catalogue credentials (POST /api/v1/import/vault).
 *
 * Read everything first, then write everything or nothing: every secret is read, its keys mapped to the
 * catalogue service's fields, validated like any credential (src/catalog/validate.ts through
 * `assertValidFields`) and matched against the tenant's credentials by (service, environment, name). A dry
 * run returns that plan. An import refuses the whole request (422) when any secret cannot be imported, and
 * otherwise writes every new credential and new version in ONE audited batch, through the same functions as
 * POST and PATCH /credentials (src/credentials/store-credential.ts). Importing the same secrets again changes
 * nothing: a secret whose values equal the credential's current version is `unchanged`.
 *
 * The Vault token is used for this request's reads only: never stored, logged, audited or echoed (threat
 * model case 18). Vault's address passes the outbound guard before any request (case 31).
 */
import { and, eq } from "drizzle-orm";
import type { AuditActor, AuditEvent } from "../audit/audit-log";
import { commitWithAudit } from "../audit/audit-log";
import type { ServiceDefinition } from "../catalog/types";
import {
  assertValidFields,
  type CredentialRow,
  findVersionRow,
  openVersion,
} from "../credentials/credential-versions";
import { isConcurrentChange } from "../credentials/preconditions";
import { requireService } from "../credentials/require-service";
import { createCredentialStatements, newCurrentVersionStatements } from "../credentials/store-credential";
import { type Database, database } from "../db/client";
import { inJsonList } from "../db/in-list";
import { credentials } from "../db/schema";
import { ApiError } from "../errors";
import { levelAtLeastPolicy, tenantSecurityPolicy } from "../policy/security-policy";
import type { KeyringEnv } from "../vault/kek-config";
import { type Unsealed, unseal } from "../vault/keyring";
import { vaultOrigin } from "../vault/vault-config";
import { VaultKvClient, VaultKvError, type VaultSecret } from "./vault-kv-client";
import {
  MAX_VAULT_SECRETS,
  VAULT_IMPORT_ACTIONS,
  type VaultImportItem,
  type VaultImportRequest,
  type VaultImportResult,
} from "./vault-kv-schemas";

export type VaultImportEnv = KeyringEnv & Pick<Env, "DB" | "AUDIT_CHAIN">;

/** Secrets read from Vault at once (Workers allow six simultaneous outbound connections per request). */
const READ_CONCURRENCY = 4;
/** Problem entries listed when an import is refused (the dry run lists them all, per item). */
const MAX_PROBLEM_ERRORS = 50;
/** Every audit row of an import says where its values came from. */
export const VAULT_IMPORT_SOURCE = "vault_kv";

type PathEntry = VaultImportRequest["paths"][number];

/** One secret to import: its request entry (and index, for error paths) and its path below the mount. */
interface Target {
  index: number;
  entry: PathEntry;
  service: ServiceDefinition;
  path: string;
}

interface PlannedItem {
  item: VaultImportItem;
  target?: Target;
  fields?: Record<string, string>;
  existing?: CredentialRow;
  securityLevel?: CredentialRow["securityLevel"];
}

/**
 * Vault outages and a sealed Vault fail the whole request (502): nothing is known about any path. What Vault
 * answers about one path (denied, not found, deleted) belongs to that path's item.
 */
function unavailable(error: VaultKvError): ApiError {
  return new ApiError(
    "UPSTREAM_UNAVAILABLE",
    error.failure === "sealed"
      ? "Vault is sealed: nothing was imported. Retry once Vault is unsealed."
      : `Vault could not be read (${error.message}): nothing was imported.`,
  );
}

function pathProblem(error: VaultKvError, path: string): string {
  switch (error.failure) {
    case "denied":
      return `Vault refused the token for ${path} (permission denied: it needs read on data/${path}, list on metadata/ for a folder)`;
    case "not_found":
      return `Vault has no secret or folder at ${path} (is the mount a KV version 2 engine?)`;
    case "deleted":
      return `the secret's version at ${path} is deleted or destroyed in Vault`;
    default:
      return `Vault refused the read of ${path} (${error.message})`;
  }
}

/** Maps `fn` over `items`, at most `limit` at a time, keeping order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function withoutTrailingSlash(path: string): string {
  return path === "/" ? "" : path.replace(/\/$/, "");
}

/** Expands folders into their secrets (one level: sub-folders are listed as skipped). */
async function targetsOf(client: VaultKvClient, request: VaultImportRequest): Promise<PlannedItem[]> {
  // Every service is checked before Vault hears of the request.
  const services = request.paths.map((entry, index) =>
    requireService(entry.service, `paths.${index}.service`),
  );
  const planned: PlannedItem[] = [];
  for (const [index, entry] of request.paths.entries()) {
    const service = services[index] as ServiceDefinition;
    const base = { service: service.id, environment: entry.environment };
    if (!entry.path.endsWith("/")) {
      planned.push({
        item: { ...base, path: entry.path, action: "create" },
        target: { index, entry, service, path: entry.path },
      });
      continue;
    }
    const folder = withoutTrailingSlash(entry.path);
    let keys: string[];
    try {
      keys = await client.list(folder);
    } catch (error) {
      if (!(error instanceof VaultKvError)) throw error;
      if (error.failure === "sealed" || error.failure === "unavailable") throw unavailable(error);
      planned.push({
        item: invalidItem(
          { ...base, path: entry.path },
          `paths.${index}.path`,
          pathProblem(error, entry.path),
        ),
      });
      continue;
    }
    const prefix = folder === "" ? "" : `${folder}/`;
    for (const key of [...keys].sort()) {
      const path = `${prefix}${key}`;
      if (key.endsWith("/")) {
        planned.push({
          item: {
            ...base,
            path,
            action: "skipped",
            warnings: ["a sub-folder: list it as its own path to import it"],
          },
        });
      } else {
        planned.push({ item: { ...base, path, action: "create" }, target: { index, entry, service, path } });
      }
    }
  }
  const secrets = planned.filter((p) => p.target).length;
  if (secrets > MAX_VAULT_SECRETS) {
    throw new ApiError(
      "VALIDATION_FAILED",
      `The paths hold ${secrets} secrets; import at most ${MAX_VAULT_SECRETS} at a time.`,
      {
        errors: [
          { path: "paths", message: `must hold at most ${MAX_VAULT_SECRETS} secrets (folders expanded)` },
        ],
      },
    );
  }
  return planned;
}

function invalidItem(item: Omit<VaultImportItem, "action">, path: string, message: string): VaultImportItem {
  return { ...item, action: "invalid", errors: [...(item.errors ?? []), { path, message }] };
}

/**
 * The secret's values per catalogue field: `field_map[field]` names the Vault key, otherwise the key of the
 * same name. Messages name fields and keys, never values (Vault documents key names as not secret; values are).
 */
function mapFields(service: ServiceDefinition, entry: PathEntry, secret: VaultSecret, at: string) {
  const fields: Record<string, string> = {};
  const errors: { path: string; message: string }[] = [];
  const used = new Set<string>();
  const known = new Set(service.fields.map((field) => field.name));
  for (const field of Object.keys(entry.field_map ?? {})) {
    if (!known.has(field)) {
      errors.push({ path: `${at}.field_map.${field}`, message: `${service.name} has no field ${field}` });
    }
  }
  for (const spec of service.fields) {
    const key = entry.field_map?.[spec.name] ?? spec.name;
    if (!Object.hasOwn(secret.data, key)) {
      if (entry.field_map?.[spec.name] !== undefined) {
        errors.push({ path: `${at}.field_map.${spec.name}`, message: `the secret has no key ${key}` });
      }
      continue;
    }
    used.add(key);
    const value = secret.data[key];
    if (typeof value !== "string") {
      errors.push({ path: `${at}.fields.${spec.name}`, message: `the secret's key ${key} is not a string` });
      continue;
    }
    fields[spec.name] = value;
  }
  const ignored = Object.keys(secret.data)
    .filter((key) => !used.has(key))
    .sort();
  return { fields, errors, ignored };
}

/** Validation through the catalogue, as for any credential: the problem's per-field errors, re-rooted. */
function validationOf(
  service: ServiceDefinition,
  row: Pick<CredentialRow, "environment" | "securityLevel">,
  fields: Record<string, string>,
  at: string,
): { warnings: string[]; errors: { path: string; message: string }[] } {
  try {
    return { warnings: assertValidFields(service, row, fields), errors: [] };
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== "VALIDATION_FAILED") throw error;
    return {
      warnings: [],
      errors: (error.extras.errors ?? []).map((entry) => ({
        path: `${at}.${entry.path}`,
        message: entry.message,
      })),
    };
  }
}

const sameValues = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>) =>
  Object.keys(a).length === Object.keys(b).length &&
  Object.entries(a).every(([key, value]) => b[key] === value);

/** The tenant's active credentials bearing the import's names (one query; names bound as one parameter). */
async function namedCredentials(db: Database, tenantId: string, names: string[]) {
  if (names.length === 0) return [];
  return db
    .select()
    .from(credentials)
    .where(
      and(
        eq(credentials.tenantId, tenantId),
        eq(credentials.status, "active"),
        inJsonList(credentials.name, names),
      ),
    )
    .all();
}

/** Reads, maps, validates and matches every secret: the plan, with nothing written. */
async function plan(
  env: VaultImportEnv,
  keys: Unsealed,
  tenantId: string,
  request: VaultImportRequest,
  fetcher: typeof fetch,
): Promise<PlannedItem[]> {
  const address = vaultOrigin(request.address, "address");
  const client = new VaultKvClient(
    {
      address,
      token: request.token,
      mount: request.mount,
      ...(request.namespace ? { namespace: request.namespace } : {}),
    },
    fetcher,
  );
  const db = database(env.DB);
  const planned = await targetsOf(client, request);
  const secrets = await mapLimited(planned, READ_CONCURRENCY, async ({ target }) => {
    if (!target) return null;
    try {
      return await client.read(target.path, target.entry.version);
    } catch (error) {
      if (!(error instanceof VaultKvError)) throw error;
      if (error.failure === "sealed" || error.failure === "unavailable") throw unavailable(error);
      return error;
    }
  });

  const policy = await tenantSecurityPolicy(db, tenantId);
  for (const [position, entry] of planned.entries()) {
    const { target } = entry;
    const secret = secrets[position];
    if (!target || !secret) continue;
    const at = `paths.${target.index}`;
    const name = target.entry.name ?? target.path;
    entry.item.name = name;
    if (secret instanceof VaultKvError) {
      entry.item = invalidItem(entry.item, `${at}.path`, pathProblem(secret, target.path));
      continue;
    }
    entry.item.vault_version = secret.version;
    const mapped = mapFields(target.service, target.entry, secret, at);
    entry.item.fields = Object.keys(mapped.fields).sort();
    if (mapped.ignored.length > 0) entry.item.ignored_keys = mapped.ignored;
    if (name.length > 100) {
      mapped.errors.push({
        path: `${at}.name`,
        message: "the path is longer than a name may be (100): give a name",
      });
    }
    entry.fields = mapped.fields;
    entry.securityLevel = levelAtLeastPolicy(target.entry.security_level, policy);
    if (mapped.errors.length > 0) entry.item = { ...entry.item, action: "invalid", errors: mapped.errors };
  }

  // Two secrets of one request cannot fill the same credential.
  const keyOf = (item: VaultImportItem) => JSON.stringify([item.service, item.environment, item.name]);
  const claimed = new Map<string, number>();
  for (const { item, target } of planned)
    if (target) claimed.set(keyOf(item), (claimed.get(keyOf(item)) ?? 0) + 1);

  const existing = await namedCredentials(db, tenantId, [
    ...new Set(planned.flatMap(({ item, target }) => (target && item.name ? [item.name] : []))),
  ]);
  for (const entry of planned) {
    const { item, target, fields } = entry;
    if (!target || !fields || item.action !== "create") continue;
    const at = `paths.${target.index}`;
    if ((claimed.get(keyOf(item)) ?? 0) > 1) {
      entry.item = invalidItem(
        item,
        `${at}.name`,
        `another secret of this import also fills ${item.name}: give each a name`,
      );
      continue;
    }
    const matches = existing.filter(
      (row) =>
        row.serviceId === item.service && row.environment === item.environment && row.name === item.name,
    );
    if (matches.length > 1) {
      entry.item = invalidItem(
        item,
        `${at}.name`,
        `${matches.length} credentials are named ${item.name}: give a name no other credential has`,
      );
      continue;
    }
    const row = matches[0];
    const level = row
      ? row
      : { environment: item.environment, securityLevel: entry.securityLevel ?? "enhanced" };
    const { warnings, errors } = validationOf(target.service, level, fields, at);
    if (warnings.length > 0) item.warnings = [...(item.warnings ?? []), ...warnings];
    if (errors.length > 0) {
      entry.item = { ...item, action: "invalid", errors };
      continue;
    }
    if (!row) continue;
    entry.existing = row;
    item.credential_id = row.id;
    const current = await findVersionRow(db, row, row.currentVersion);
    const currentValues = current ? await openVersion(keys, db, current) : {};
    item.action = sameValues(currentValues, fields) ? "unchanged" : "update";
  }
  return planned;
}

function summaryOf(items: VaultImportItem[]): VaultImportResult["summary"] {
  const summary = Object.fromEntries(
    VAULT_IMPORT_ACTIONS.map((action) => [action, 0]),
  ) as VaultImportResult["summary"];
  for (const item of items) summary[item.action] += 1;
  return summary;
}

/**
 * Runs a Vault KV import for `actor`'s tenant: the plan (dry run), or the plan applied in one audited batch.
 * An import with any invalid secret is refused as a whole (422, errors per path), nothing written.
 */
export async function importFromVaultKv(
  env: VaultImportEnv,
  actor: AuditActor,
  request: VaultImportRequest,
  fetcher: typeof fetch = fetch,
): Promise<VaultImportResult> {
  const db = database(env.DB);
  const keys = await unseal(env, db);
  const planned = await plan(env, keys, actor.tenantId, request, fetcher);
  const items = () => planned.map(({ item }) => item);
  if (request.dry_run) return { dry_run: true, summary: summaryOf(items()), items: items() };

  const invalid = items().filter((item) => item.action === "invalid");
  if (invalid.length > 0) {
    throw new ApiError(
      "VALIDATION_FAILED",
      `${invalid.length} of the secrets cannot be imported; nothing was written. Send dry_run: true for the whole plan.`,
      { errors: invalid.flatMap((item) => item.errors ?? []).slice(0, MAX_PROBLEM_ERRORS) },
    );
  }

  const now = Date.now();
  const statements: { toSQL(): { sql: string; params: unknown[] } }[] = [];
  const events: AuditEvent[] = [];
  const by = { createdBy: actor.actorId, now };
  for (const entry of planned) {
    const { item, target, fields } = entry;
    if (!target || !fields) continue;
    if (item.action === "create") {
      const created = await createCredentialStatements(keys, db, {
        tenantId: actor.tenantId,
        service: target.service,
        environment: item.environment,
        securityLevel: entry.securityLevel ?? "enhanced",
        ...(item.name === undefined ? {} : { name: item.name }),
        fields,
        ...by,
      });
      item.credential_id = created.row.id;
      statements.push(...created.statements);
      events.push({ ...created.event, detail: { ...created.event.detail, source: VAULT_IMPORT_SOURCE } });
    } else if (item.action === "update" && entry.existing) {
      const { next, statements: update } = await newCurrentVersionStatements(
        keys,
        db,
        entry.existing,
        fields,
        by,
      );
      statements.push(...update);
      events.push({
        action: "credential.update",
        targetType: "credential",
        targetId: next.id,
        detail: {
          version: next.currentVersion,
          fields: Object.keys(fields).sort(),
          source: VAULT_IMPORT_SOURCE,
        },
      });
    }
  }
  const summary = summaryOf(items());
  if (events.length > 0) {
    events.push({
      action: "import.vault_kv",
      targetType: "tenant",
      targetId: actor.tenantId,
      detail: {
        mount: request.mount,
        created: summary.create,
        updated: summary.update,
        unchanged: summary.unchanged,
      },
    });
    await commitWithAudit(env, actor, statements, events).catch((error: unknown) => {
      // A credential changed between the plan and the batch: its revision compare-and-set aborted everything.
      if (isConcurrentChange(error)) {
        throw new ApiError(
          "CONFLICT",
          "A credential this import updates changed meanwhile; nothing was written. Run it again.",
        );
      }
      throw error;
    });
  }
  return { dry_run: false, summary, items: items() };
}
