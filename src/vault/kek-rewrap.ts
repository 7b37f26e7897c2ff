import { desc, eq, type SQL, sql } from "drizzle-orm";
import { DEK_USE, IntegrityError, type UnwrapAs } from "../crypto/envelope";
import { database } from "../db/client";
import { rotationRuns } from "../db/schema";
import type { Bindings } from "../env";
import type { RotationParams } from "../lifecycle/rotation-params";
import {
  beginRun,
  claimRunStatement,
  finishRunStatement,
  rotationRunId,
  runStepStatement,
} from "../lifecycle/rotation-runs";
import { ROTATION_RETRY_MS } from "../lifecycle/rotation-steps";
import { type ClaimedRun, type RunSource, startRunsOf } from "../lifecycle/scheduler";
import { dekBinding } from "./data-keys";
import type { KeyringEnv } from "./kek-config";
import { KEK_PROVIDERS, type KekProvider, type KekRef, kekName } from "./kek-ref";
import type { WrappedKey } from "./key-encryption";
import { unseal } from "./keyring";
import { PURPOSE_KEY, systemKeyBinding } from "./system-keys";
import type { WrapBinding } from "./wrap-binding";

/**
 * The KEK re-wrap: every tenant DEK (active and retiring: both still decrypt fields) and every system key is
 * moved under the target KEK, in chunks, without downtime. The target is (master, KEK_VERSION) or Vault's
 * latest Transit key version; a key changes only its wrapping, never its material, so every field, audit
 * chain and session stays readable throughout. Run by KekRewrapWorkflow, started by the cron.
 */

/** Data keys per re-wrap step: one SELECT, this many unwrap + wrap (or Vault `rewrap`) calls, one D1 batch. */
export const REWRAP_CHUNK = 100;
/**
 * Passes over data_keys one run makes. The first moves everything; later ones catch keys created off target
 * meanwhile (an isolate still on the old configuration). Still finding keys after this many, the run fails
 * and the cron starts another after ROTATION_RETRY_MS.
 */
export const REWRAP_MAX_PASSES = 5;
/**
 * The pause between two re-wrap chunks. D1 runs one query at a time per database, so a re-wrap that wrote
 * chunk after chunk would queue every foreground read behind it; with this pause a chunk's batch holds the
 * database a small share of the time. 10,000 DEKs take about 10 s longer, a million about 17 minutes.
 */
export const REWRAP_PAUSE_MS = 100;
/** The re-wrap's rotation_runs subject: one run at a time for the whole deployment. */
export const KEYRING_SUBJECT = "keyring";
const SYSTEM_TENANT = "system";

type RewrapEnv = KeyringEnv & Pick<Bindings, "DB">;

/** What a re-wrap Workflow is started with; `chunk` (1..REWRAP_CHUNK) lets tests cross many chunk boundaries. */
export interface KekRewrapParams extends RotationParams {
  chunk?: number;
}

/** Where a pass over data_keys continues: the last key a chunk looked at, in (tenant_id, version) order. */
export interface RewrapCursor {
  tenantId: string;
  version: number;
}

/** One chunk's outcome: counts and where to go on, never key material (the engine stores step results). */
export interface RewrapChunk {
  /** The target the chunk moved keys to, e.g. `master:2`. */
  target: string;
  /** Keys found off target: data keys, and at the end of a pass the system keys. */
  found: number;
  /** Keys this chunk moved; one changed or deleted since it was read is left as it is (the next pass looks again). */
  rewrapped: number;
  /**
   * Keys found whose wrapping fails authentication (`<tenant>:<version>` or `system:<purpose>`): corrupt,
   * they stay as they are, and the rest of the chunk moves on without them.
   */
  unreadable: string[];
  /** Where the pass goes on; null when it has reached the end of data_keys (and did the system keys). */
  next: RewrapCursor | null;
}

/** The target KEK as it stands now: Vault's latest version is read afresh, not the isolate's copy. */
export async function rewrapTarget(env: RewrapEnv): Promise<KekRef> {
  return (await unseal(env, database(env.DB))).keks.currentTarget();
}

/**
 * SQL true when a row of `table` is wrapped under anything but `target`. Each branch is an equality or range
 * on (kek_provider, kek_version), so on data_keys every EXISTS is an index seek on data_keys_kek_idx and the
 * check costs the same for ten tenants or ten thousand.
 */
function offTargetExists(table: "data_keys" | "system_keys", target: KekRef): SQL {
  const others: KekProvider[] = KEK_PROVIDERS.filter((provider) => provider !== target.provider);
  const exists = (condition: SQL) => sql`EXISTS (SELECT 1 FROM ${sql.raw(table)} WHERE ${condition})`;
  return sql.join(
    [
      exists(sql`kek_provider = ${target.provider} AND kek_version < ${target.version}`),
      exists(sql`kek_provider = ${target.provider} AND kek_version > ${target.version}`),
      ...others.map((provider) => exists(sql`kek_provider = ${provider}`)),
    ],
    sql` OR `,
  );
}

/** One row, `needed`: whether any data key or system key is wrapped under anything but `target`. */
export function offTargetQuery(target: KekRef): SQL {
  return sql`SELECT (${offTargetExists("data_keys", target)}) OR (${offTargetExists("system_keys", target)}) AS needed`;
}

/** Whether any data key or system key is not on the target KEK (one D1 read, plus Vault's key info). */
export async function kekRewrapNeeded(env: RewrapEnv): Promise<{ target: KekRef; needed: boolean }> {
  const db = database(env.DB);
  const target = await rewrapTarget(env);
  const row = await db.get<{ needed: number }>(offTargetQuery(target));
  return { target, needed: Boolean(row?.needed) };
}

interface WrappedRow {
  kek_provider: KekProvider;
  kek_version: number;
  wrapped_key: string;
}

const stored = (row: WrappedRow): WrappedKey => ({
  kek: { provider: row.kek_provider, version: row.kek_version },
  wrapped: row.wrapped_key,
});

/**
 * One chunk of a pass: up to `size` data keys off target after `cursor`, in (tenant_id, version) order,
 * re-wrapped and written back in one D1 batch of compare-and-set UPDATEs (on the old wrapped key: a DEK
 * another run re-wrapped or a DEK rotation deleted meanwhile is left as it is). The chunk that reaches the
 * end of data_keys also re-wraps the system keys. Idempotent: run again, it finds only what is still off
 * target. With `run`, the same batch marks the run's step `rewrap` (the status route shows it).
 */
export async function rewrapChunk(
  env: RewrapEnv,
  options: { cursor: RewrapCursor | null; size?: number; run?: { id: string; now: number } },
): Promise<RewrapChunk> {
  const size = options.size ?? REWRAP_CHUNK;
  const db = database(env.DB);
  const keys = await unseal(env, db);
  const target = await keys.keks.currentTarget();
  const offTarget = sql`NOT (kek_provider = ${target.provider} AND kek_version = ${target.version})`;
  const after = options.cursor
    ? sql`AND (tenant_id, version) > (${options.cursor.tenantId}, ${options.cursor.version})`
    : sql``;
  const dataKeyRows = await db.all<WrappedRow & { tenant_id: string; version: number }>(
    sql`SELECT tenant_id, version, kek_provider, kek_version, wrapped_key FROM data_keys
        WHERE ${offTarget} ${after} ORDER BY tenant_id, version LIMIT ${size}`,
  );
  const passEnds = dataKeyRows.length < size;
  const systemKeyRows = passEnds
    ? await db.all<WrappedRow & { purpose: string }>(
        sql`SELECT purpose, kek_provider, kek_version, wrapped_key FROM system_keys
            WHERE ${offTarget} ORDER BY purpose`,
      )
    : [];

  // A key that fails authentication is skipped, not fatal: one corrupt DEK must not hold every other
  // tenant's keys on the old KEK. Vault or D1 out of reach throws, and the step is retried.
  const unreadable: string[] = [];
  const rewrap = async (name: string, row: WrappedRow, binding: WrapBinding, as: UnwrapAs) => {
    try {
      return await keys.keks.rewrap(stored(row), binding, as);
    } catch (error) {
      if (!(error instanceof IntegrityError)) throw error;
      unreadable.push(name);
      return null;
    }
  };
  const updates = (
    await Promise.all([
      ...dataKeyRows.map(async (row) => {
        const moved = await rewrap(
          `${row.tenant_id}:${row.version}`,
          row,
          dekBinding(row.tenant_id, row.version),
          DEK_USE,
        );
        return (
          moved &&
          env.DB.prepare(
            `UPDATE data_keys SET kek_provider = ?1, kek_version = ?2, wrapped_key = ?3
             WHERE tenant_id = ?4 AND version = ?5 AND wrapped_key = ?6`,
          ).bind(
            moved.kek.provider,
            moved.kek.version,
            moved.wrapped,
            row.tenant_id,
            row.version,
            row.wrapped_key,
          )
        );
      }),
      ...systemKeyRows.map(async (row) => {
        const moved = await rewrap(`system:${row.purpose}`, row, systemKeyBinding(row.purpose), PURPOSE_KEY);
        return (
          moved &&
          env.DB.prepare(
            `UPDATE system_keys SET kek_provider = ?1, kek_version = ?2, wrapped_key = ?3
             WHERE purpose = ?4 AND wrapped_key = ?5`,
          ).bind(moved.kek.provider, moved.kek.version, moved.wrapped, row.purpose, row.wrapped_key)
        );
      }),
    ])
  ).filter((update) => update !== null);
  let rewrapped = 0;
  if (updates.length > 0) {
    const step = options.run && runStepStatement(db, options.run.id, "rewrap", options.run.now).toSQL();
    const progress = step ? [env.DB.prepare(step.sql).bind(...step.params)] : [];
    const results = await env.DB.batch([...updates, ...progress]);
    rewrapped = results.slice(0, updates.length).reduce((sum, result) => sum + result.meta.changes, 0);
  }
  const last = dataKeyRows.at(-1);
  return {
    target: kekName(target),
    found: dataKeyRows.length + systemKeyRows.length,
    rewrapped,
    unreadable: unreadable.sort(),
    next: passEnds || !last ? null : { tenantId: last.tenant_id, version: last.version },
  };
}

/** Step "begin": whether this run is the deployment's re-wrap (see beginRun). */
export function beginKekRewrap(env: Pick<Bindings, "DB">, params: KekRewrapParams): Promise<boolean> {
  return beginRun(database(env.DB), params);
}

/** Steps "finish" and "fail": the run ends; ending an ended run changes nothing. */
export async function finishKekRewrap(
  env: Pick<Bindings, "DB">,
  params: KekRewrapParams,
  outcome: { state: "completed" } | { state: "failed"; step: string; error: string },
): Promise<void> {
  await finishRunStatement(database(env.DB), params.runId, outcome, params.now);
}

const KEK_REWRAP_SOURCE: RunSource = { subjectType: "keyring", workflow: (env) => env.KEK_REWRAP };

/**
 * The cron's part, every tick: when a data key or system key is off the target KEK and no re-wrap is in
 * progress, claims the `keyring` run and starts its Workflow. A run claimed by a tick that died before
 * creating its Workflow is started again, as every rotation run is (scheduler.ts); a failed run is tried again
 * ROTATION_RETRY_MS after it started. Sealed (a secret or Vault missing), it throws and claims nothing.
 * Returns the id of the run it claimed, if any.
 */
export async function startKekRewrap(env: Bindings, now: number): Promise<string | null> {
  const db = database(env.DB);
  const { needed } = await kekRewrapNeeded(env);
  const latest = await db
    .select({ state: rotationRuns.state, startedAt: rotationRuns.startedAt })
    .from(rotationRuns)
    .where(eq(rotationRuns.subjectId, KEYRING_SUBJECT))
    .orderBy(desc(rotationRuns.startedAt))
    .limit(1)
    .get();
  const waiting =
    latest?.state === "in_progress" ||
    (latest?.state === "failed" && latest.startedAt > now - ROTATION_RETRY_MS);
  let claimed: ClaimedRun[] = [];
  if (needed && !waiting) {
    // The partial unique index on in-progress runs makes a concurrent second claim a no-op.
    claimed = await claimRunStatement(db, {
      id: rotationRunId(KEYRING_SUBJECT, now),
      tenantId: SYSTEM_TENANT,
      subjectType: "keyring",
      subjectId: KEYRING_SUBJECT,
      trigger: "schedule",
      now,
    }).returning({
      id: rotationRuns.id,
      tenant_id: rotationRuns.tenantId,
      subject_id: rotationRuns.subjectId,
    });
  }
  await startRunsOf(KEK_REWRAP_SOURCE, env, now, claimed);
  return claimed[0]?.id ?? null;
}
