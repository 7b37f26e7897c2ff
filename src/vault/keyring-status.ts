import { type SQL, sql } from "drizzle-orm";
import { SQLiteAsyncDialect } from "drizzle-orm/sqlite-core";
import type { Database } from "../db/client";
import { ApiError } from "../errors";
import { decodeIdCursor, encodeIdCursor } from "../openapi/cursor";
import { isoTime } from "../openapi/shared";
import type { DataKeyState } from "./data-key-states";
import { type KeyringEnv, kekSettingsFrom, masterSecretsFrom } from "./kek-config";
import { KEK_PROVIDERS, type KekProvider, type KekRef, kekName, masterSecretName } from "./kek-ref";
import { unseal } from "./keyring";
import { SEALED_SOURCES, type SealedSource } from "./sealed-records";

/** Where new DEKs are wrapped; `version` is null while Vault is the provider and cannot be reached. */
export interface StatusTarget {
  provider: KekProvider;
  version: number | null;
}

export interface KekStatus {
  provider: KekProvider;
  version: number;
  /** The Workers secret holding a master version; null for Vault (Vault keeps its key versions). */
  secret: string | null;
  secret_present: boolean | null;
  data_keys: number;
  retiring_data_keys: number;
  fields: number;
  system_keys: number;
  current: boolean;
  removable: boolean;
}

export interface TenantDataKey {
  version: number;
  status: DataKeyState;
  kek: KekRef;
  fields: number;
}

export interface KeyringStatus {
  target: StatusTarget | null;
  sealed: { code: "SEALED"; detail: string } | null;
  keks: KekStatus[];
  data_keys: { active: number; retiring: number; rotation_due: number };
  rotations: {
    kek_rewrap: { run_id: string; step: string; started_at: string } | null;
    data_keys_in_progress: number;
  };
  tenants: { items: { tenant_id: string; data_keys: TenantDataKey[] }[]; next_cursor: string | null };
}

export interface StatusPage {
  limit: number;
  cursor?: string | undefined;
}

/**
 * What the keyring depends on, for operators: per KEK, the data keys, sealed rows and system keys wrapped
 * under it and whether its secret can be removed; per tenant (paginated), the DEKs not yet on the target.
 * Answers while sealed: it reads D1 and the configuration and never unwraps a key. Every figure comes from
 * GROUP BY aggregates over indexed columns, in one D1 batch.
 */
export async function keyringStatus(
  env: KeyringEnv,
  db: Database,
  page: StatusPage,
  now = Date.now(),
): Promise<KeyringStatus> {
  const after = page.cursor ? decodeIdCursor(page.cursor) : "";
  const { target, sealed } = await openedOrSealed(env, db);
  const pageTenants = tenantPageQuery(target, after, page.limit + 1);
  const fixed = [
    sql`SELECT kek_version AS version FROM keyring`,
    sql`SELECT kek_provider AS provider, kek_version AS version, count(*) AS n,
               sum(status = 'retiring') AS retiring
        FROM data_keys GROUP BY kek_provider, kek_version`,
    sql`SELECT kek_provider AS provider, kek_version AS version, count(*) AS n
        FROM system_keys GROUP BY kek_provider, kek_version`,
    sql`SELECT (SELECT count(*) FROM data_keys WHERE status = 'active') AS active,
               (SELECT count(*) FROM data_keys WHERE status = 'retiring') AS retiring,
               (SELECT count(*) FROM data_keys
                 WHERE next_rotation_at <= ${now} AND status = 'active') AS rotation_due`,
    sql`SELECT id, step, started_at FROM rotation_runs
        WHERE state = 'in_progress' AND subject_type = 'keyring' ORDER BY started_at DESC LIMIT 1`,
    sql`SELECT count(*) AS n FROM rotation_runs WHERE state = 'in_progress' AND subject_type = 'data_key'`,
    sql`WITH page AS (${pageTenants})
        SELECT d.tenant_id, d.version, d.status, d.kek_provider, d.kek_version
        FROM page p JOIN data_keys d ON d.tenant_id = p.tenant_id
        ORDER BY d.tenant_id, d.version`,
  ];
  // One statement per sealed table rather than a UNION ALL: D1 caps a compound SELECT at 5 terms.
  const results = await readBatch(db, [
    ...fixed,
    ...SEALED_SOURCES.map((source) => sealedRowsPerKek(source)),
    ...SEALED_SOURCES.map((source) => sealedRowsOfPage(source, pageTenants)),
  ]);
  const [keyringRows, dataKeyRows, systemKeyRows, summary, rewrap, dekRuns, pageDeks] = results as [
    { version: number }[],
    DataKeyCountRow[],
    KekCountRow[],
    { active: number; retiring: number; rotation_due: number }[],
    { id: string; step: string; started_at: number }[],
    { n: number }[],
    TenantDekRow[],
  ];
  const sources = SEALED_SOURCES.length;
  const fieldRows = results.slice(fixed.length, fixed.length + sources).flat() as KekCountRow[];
  const pageFieldRows = results.slice(fixed.length + sources).flat() as PageFieldRow[];

  const counts = summary[0];
  const run = rewrap[0];
  return {
    target,
    sealed,
    keks: kekStatuses(env, target, {
      recordedMaster: keyringRows.map((row) => row.version),
      dataKeys: dataKeyRows,
      systemKeys: systemKeyRows,
      fields: fieldRows,
    }),
    data_keys: {
      active: counts?.active ?? 0,
      retiring: counts?.retiring ?? 0,
      rotation_due: counts?.rotation_due ?? 0,
    },
    rotations: {
      kek_rewrap: run
        ? { run_id: run.id, step: run.step, started_at: isoTime(run.started_at) as string }
        : null,
      data_keys_in_progress: dekRuns[0]?.n ?? 0,
    },
    tenants: tenantPage(pageDeks, pageFieldRows, page.limit),
  };
}

/**
 * The reads in one D1 batch: one transaction, so the figures agree with each other. Sent to D1 directly:
 * drizzle's batch cannot run a parameterised `sql` template (it prepares only query-builder statements).
 */
async function readBatch(db: Database, queries: SQL[]): Promise<unknown[][]> {
  const dialect = new SQLiteAsyncDialect();
  const statements = queries.map((query) => {
    const compiled = dialect.sqlToQuery(query);
    return db.$client.prepare(compiled.sql).bind(...compiled.params);
  });
  return (await db.$client.batch(statements)).map((result) => result.results);
}

/**
 * The target KEK, from the opened keyring (for Vault, the Transit key's latest version, read now), or the sealed
 * reason and the target as configured. Opening the keyring is what the rest of the service does on its
 * first request, so the reason shown here is the one every other route answers with.
 */
async function openedOrSealed(
  env: KeyringEnv,
  db: Database,
): Promise<{ target: StatusTarget | null; sealed: KeyringStatus["sealed"] }> {
  try {
    const keys = await unseal(env, db);
    return { target: await keys.keks.currentTarget(), sealed: null };
  } catch (error) {
    if (!(error instanceof ApiError) || error.code !== "SEALED") throw error;
    return { target: configuredTarget(env), sealed: { code: "SEALED", detail: error.detail } };
  }
}

function configuredTarget(env: KeyringEnv): StatusTarget | null {
  try {
    const settings = kekSettingsFrom(env);
    return settings.provider === "master"
      ? { provider: "master", version: settings.masterVersion }
      : { provider: "vault", version: null };
  } catch (error) {
    // A malformed setting: the sealed detail names it; which KEK is meant cannot be known.
    if (error instanceof ApiError) return null;
    throw error;
  }
}

interface KekCountRow {
  provider: KekProvider;
  version: number;
  n: number;
}

type DataKeyCountRow = KekCountRow & { retiring: number };

/** Whether `ref` is the target; null when that cannot be known (the target's version is unknown). */
function isTarget(target: StatusTarget | null, ref: KekRef): boolean | null {
  if (!target) return null;
  if (target.provider !== ref.provider) return false;
  return target.version === null ? null : target.version === ref.version;
}

function kekStatuses(
  env: KeyringEnv,
  target: StatusTarget | null,
  counts: {
    recordedMaster: number[];
    dataKeys: DataKeyCountRow[];
    systemKeys: KekCountRow[];
    fields: KekCountRow[];
  },
): KekStatus[] {
  const presentSecrets = masterSecretsFrom(env);
  const byName = new Map<string, KekStatus>();
  const entry = (ref: KekRef): KekStatus => {
    const name = kekName(ref);
    let status = byName.get(name);
    if (!status) {
      const master = ref.provider === "master";
      status = {
        provider: ref.provider,
        version: ref.version,
        secret: master ? masterSecretName(ref.version) : null,
        secret_present: master ? presentSecrets.has(ref.version) : null,
        data_keys: 0,
        retiring_data_keys: 0,
        fields: 0,
        system_keys: 0,
        current: false,
        removable: false,
      };
      byName.set(name, status);
    }
    return status;
  };
  for (const version of counts.recordedMaster) entry({ provider: "master", version });
  if (target?.version != null) entry({ provider: target.provider, version: target.version });
  for (const row of counts.dataKeys) {
    const status = entry(row);
    status.data_keys = row.n;
    status.retiring_data_keys = row.retiring;
  }
  for (const row of counts.systemKeys) entry(row).system_keys = row.n;
  for (const row of counts.fields) entry(row).fields += row.n;

  for (const status of byName.values()) {
    const current = isTarget(target, status);
    status.current = current === true;
    // The signal docs/storage.md tells operators to wait for before deleting a secret: nothing is wrapped
    // under the version, and it is known not to be where new keys are wrapped. Sealed rows are not counted
    // separately: a row is readable only through its DEK, which counts in `data_keys`.
    status.removable = current === false && status.data_keys === 0 && status.system_keys === 0;
  }
  return [...byName.values()].sort(
    (a, b) => KEK_PROVIDERS.indexOf(a.provider) - KEK_PROVIDERS.indexOf(b.provider) || a.version - b.version,
  );
}

/**
 * Sealed rows of one table per KEK, through the DEK that sealed them. Counted per `(tenant_id, dek_version)`
 * over the table's index first, then joined to `data_keys`. A row's blobs are sealed together (one
 * `sealValues` call), so a row counts once however many fields it holds; rows that hold no ciphertext have a
 * NULL `dek_version` and are not counted.
 */
function sealedRowsPerKek(source: SealedSource): SQL {
  return sql`SELECT d.kek_provider AS provider, d.kek_version AS version, sum(s.n) AS n
    FROM (SELECT tenant_id, dek_version, count(*) AS n FROM ${sql.identifier(source.table)}
          WHERE dek_version IS NOT NULL GROUP BY tenant_id, dek_version) s
    JOIN data_keys d ON d.tenant_id = s.tenant_id AND d.version = s.dek_version
    GROUP BY d.kek_provider, d.kek_version`;
}

/** Sealed rows of one table per DEK, for the tenants of the page only. */
function sealedRowsOfPage(source: SealedSource, pageTenants: SQL): SQL {
  return sql`WITH page AS (${pageTenants})
    SELECT tenant_id, dek_version, count(*) AS n FROM ${sql.identifier(source.table)}
    WHERE tenant_id IN (SELECT tenant_id FROM page) AND dek_version IS NOT NULL
    GROUP BY tenant_id, dek_version`;
}

interface TenantDekRow {
  tenant_id: string;
  version: number;
  status: DataKeyState;
  kek_provider: KekProvider;
  kek_version: number;
}

interface PageFieldRow {
  tenant_id: string;
  dek_version: number;
  n: number;
}

/**
 * The first `take` tenants after `after` (by id) that still depend on something other than the target: a
 * DEK wrapped under another KEK, or a retiring DEK. While the target is unknown, every tenant with a DEK.
 * Walks the data_keys primary key in order and stops at `take` tenants.
 */
function tenantPageQuery(target: StatusTarget | null, after: string, take: number): SQL {
  const offTarget =
    target?.version == null
      ? sql`1`
      : sql`(status = 'retiring' OR kek_provider <> ${target.provider} OR kek_version <> ${target.version})`;
  return sql`SELECT DISTINCT tenant_id FROM data_keys WHERE tenant_id > ${after} AND ${offTarget}
    ORDER BY tenant_id LIMIT ${take}`;
}

/**
 * Groups the page's DEKs (at most `limit + 1` tenants' few keys) by tenant, with their sealed-row counts;
 * the extra tenant only says that more follow.
 */
function tenantPage(deks: TenantDekRow[], fields: PageFieldRow[], limit: number): KeyringStatus["tenants"] {
  const fieldsOf = new Map<string, number>();
  for (const row of fields) {
    const key = `${row.tenant_id}:${row.dek_version}`;
    fieldsOf.set(key, (fieldsOf.get(key) ?? 0) + row.n);
  }
  const items: KeyringStatus["tenants"]["items"] = [];
  for (const row of deks) {
    let item = items.at(-1);
    if (item?.tenant_id !== row.tenant_id) {
      item = { tenant_id: row.tenant_id, data_keys: [] };
      items.push(item);
    }
    item.data_keys.push({
      version: row.version,
      status: row.status,
      kek: { provider: row.kek_provider, version: row.kek_version },
      fields: fieldsOf.get(`${row.tenant_id}:${row.version}`) ?? 0,
    });
  }
  const more = items.length > limit;
  const shown = items.slice(0, limit);
  const last = shown.at(-1);
  return { items: shown, next_cursor: more && last ? encodeIdCursor(last.tenant_id) : null };
}
