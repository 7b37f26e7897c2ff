/**
 * The cron's scheduler on its own: real D1, and a recording stand-in for the Workflow bindings, so a tick
 * over hundreds of due keys can be re-run with a fault at every call boundary without running hundreds of
 * rotations.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import type { Bindings } from "../../src/env";
import { beginRun } from "../../src/lifecycle/rotation-runs";
import {
  CREATE_INTERVAL_MS,
  DEK_ROTATIONS_PER_SECOND,
  QUEUED_RESTART_MS,
  runRotationTick,
} from "../../src/lifecycle/scheduler";
import { createTenant } from "../helpers/api";

const DAY = 86_400_000;
/** Chunks of 4 keep the crash matrix small; the chunking code is the same as with the default 100. */
const CHUNK = 4;
const DUE_KEYS = 2 * CHUNK + 2;

interface Fault {
  at: number;
  after: boolean;
}

/** Counts every D1 call and Workflow start of a tick, and throws at call `fault.at`, before or after it ran. */
class Boundaries {
  calls = 0;
  constructor(private readonly fault: Fault | null) {}
  async cross<T>(work: () => Promise<T>): Promise<T> {
    this.calls++;
    const hit = this.fault?.at === this.calls;
    if (hit && !this.fault?.after) throw new Error(`injected fault before call ${this.calls}`);
    const result = await work();
    if (hit && this.fault?.after) throw new Error(`injected fault after call ${this.calls}`);
    return result;
  }
}

type Wrapped = { real: D1PreparedStatement };

function faultyDb(real: D1Database, boundaries: Boundaries): D1Database {
  const wrap = (statement: D1PreparedStatement): D1PreparedStatement & Wrapped =>
    ({
      real: statement,
      bind: (...values: unknown[]) => wrap(statement.bind(...values)),
      all: () => boundaries.cross(() => statement.all()),
      first: (column?: string) => boundaries.cross(() => statement.first(column as string)),
      run: () => boundaries.cross(() => statement.run()),
    }) as unknown as D1PreparedStatement & Wrapped;
  return {
    prepare: (sql: string) => wrap(real.prepare(sql)),
    batch: (statements: (D1PreparedStatement & Wrapped)[]) =>
      boundaries.cross(() => real.batch(statements.map((statement) => statement.real))),
  } as unknown as D1Database;
}

/**
 * Workflows' createBatch as documented: an id that already exists is skipped, so a start counts once. A new
 * instance begins at once, as the engine's would: its first step marks the run begun (`beginRun`).
 */
function recordingWorkflow(boundaries: Boundaries, started: Map<string, number>) {
  return {
    createBatch: ({ instances }: { instances: { id: string; params: { now: number } }[] }) =>
      boundaries.cross(async () => {
        const errors = [];
        for (const [index, { id, params }] of instances.entries()) {
          if (started.has(id)) {
            errors.push({ index, id, code: 10405, message: "workflows.api.error.instance.already_exists" });
            continue;
          }
          started.set(id, 1);
          await beginRun(database(env.DB), { runId: id, now: params.now });
        }
        return { created: [], errors };
      }),
    get: async () => ({ sendEvent: async () => {} }),
  };
}

function tickEnv(boundaries: Boundaries, started: Map<string, number>): Bindings {
  const workflow = recordingWorkflow(boundaries, started);
  return {
    ...env,
    DB: faultyDb(env.DB, boundaries),
    KEY_ROTATION: workflow,
    CREDENTIAL_ROTATION: workflow,
    DEK_ROTATION: workflow,
  } as unknown as Bindings;
}

let batchCounter = 0;

/** DUE_KEYS keys of a new tenant, all due before `now`, inserted in one statement. */
async function seedDueKeys(now: number) {
  const tenant = await createTenant(`bulk ${++batchCounter}`);
  const prefix = `key_bulk${batchCounter}x`;
  await env.DB.prepare(
    `WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?3)
     INSERT INTO api_keys (id, tenant_id, name, hash, start, last4, environment, security_level, scopes, enabled,
       limits_version, rotation_days, rotation_overlap_seconds, next_rotation_at, created_at, updated_at)
     SELECT ?1 || x, ?2, 'bulk', lower(hex(randomblob(32))), 'kw_live_', 'abcd', 'live', 'basic', '[]', 1, 1, 30,
       86400, ?4 - x * 1000, ?4 - 30 * 86400000, ?4 - 30 * 86400000 FROM n`,
  )
    .bind(prefix, tenant.id, DUE_KEYS, now)
    .run();
  // Only the keys are due: data keys (due 90 days after their tenant's creation) stay out of these ticks.
  await env.DB.prepare("UPDATE data_keys SET next_rotation_at = NULL").run();
  return tenant.id;
}

/** Per due key of the tenant: its schedule, its runs, and how often its Workflow was started. */
async function outcome(tenantId: string, started: Map<string, number>) {
  const keys = await env.DB.prepare(
    `SELECT k.id, k.next_rotation_at, group_concat(r.id) AS runs, count(r.id) AS run_count
     FROM api_keys k LEFT JOIN rotation_runs r ON r.subject_id = k.id
     WHERE k.tenant_id = ? AND k.name = 'bulk' GROUP BY k.id`,
  )
    .bind(tenantId)
    .all<{ id: string; next_rotation_at: number | null; runs: string | null; run_count: number }>();
  return keys.results.map((key) => ({
    ...key,
    starts: key.runs ? (started.get(key.runs) ?? 0) : 0,
    runIsItsDueTime: key.runs?.startsWith(`${key.id}-`) ?? false,
  }));
}

const NO_WAIT = { wait: async () => {}, chunk: CHUNK };

const EXPECTED = { next_rotation_at: null, run_count: 1, starts: 1, runIsItsDueTime: true };

describe("the scheduler's chunks survive a fault at every call boundary (threat model case 20)", () => {
  it(`claims ${DUE_KEYS} due keys over 3 chunks of ${CHUNK}, each with exactly one run and one Workflow`, async () => {
    const now = Date.now() + 400 * DAY;
    const tenantId = await seedDueKeys(now);
    const started = new Map<string, number>();
    const boundaries = new Boundaries(null);
    const report = await runRotationTick(tickEnv(boundaries, started), now, NO_WAIT);
    expect(report.started).toBe(DUE_KEYS);
    const keys = await outcome(tenantId, started);
    expect(keys).toHaveLength(DUE_KEYS);
    for (const key of keys) expect(key).toMatchObject(EXPECTED);
  });

  it("re-run after a fault before or after any D1 call or Workflow start, ends with the fault-free state", async () => {
    const probe = new Boundaries(null);
    const base = Date.now() + 500 * DAY;
    await seedDueKeys(base);
    await runRotationTick(tickEnv(probe, new Map()), base, NO_WAIT);
    const boundaryCount = probe.calls;
    expect(boundaryCount).toBeGreaterThanOrEqual(3 * 3);

    let round = 0;
    for (let at = 1; at <= boundaryCount; at++) {
      for (const after of [false, true]) {
        const now = base + ++round * DAY;
        const tenantId = await seedDueKeys(now);
        const started = new Map<string, number>();
        const faulty = runRotationTick(tickEnv(new Boundaries({ at, after }), started), now, NO_WAIT);
        const failure = await faulty.then(
          () => null,
          (error: unknown) => error,
        );
        expect(failure, `fault ${after ? "after" : "before"} call ${at}`).toBeInstanceOf(AggregateError);
        expect(String((failure as AggregateError).errors)).toMatch(/injected fault/);
        // The next ticks: one at the same time (a retried invocation) and one after the queued-run restart.
        await runRotationTick(tickEnv(new Boundaries(null), started), now, NO_WAIT);
        await runRotationTick(tickEnv(new Boundaries(null), started), now + QUEUED_RESTART_MS + 1, NO_WAIT);
        const keys = await outcome(tenantId, started);
        expect(keys).toHaveLength(DUE_KEYS);
        for (const key of keys)
          expect(key, `fault ${after ? "after" : "before"} call ${at}`).toMatchObject(EXPECTED);
      }
    }
  });
});

describe("the scheduler keeps to the platform's Workflow creation rate", () => {
  it("sends one createBatch a second per Workflow", async () => {
    const now = Date.now() + 900 * DAY;
    await seedDueKeys(now);
    const waits: number[] = [];
    const report = await runRotationTick(tickEnv(new Boundaries(null), new Map()), now, {
      wait: async (ms) => void waits.push(ms),
      chunk: CHUNK,
    });
    expect(report.started).toBe(DUE_KEYS);
    expect(waits).toEqual([CREATE_INTERVAL_MS, CREATE_INTERVAL_MS]);
  });

  it("starts DEK rotations at DEK_ROTATIONS_PER_SECOND, one createBatch of that many a second", async () => {
    const now = Date.now() + 950 * DAY;
    const due = 2 * DEK_ROTATIONS_PER_SECOND + 5;
    // Tenants and their DEKs straight into D1: the recorder starts nothing, so the wrapped keys are never read.
    await env.DB.batch([
      env.DB.prepare("UPDATE data_keys SET next_rotation_at = NULL"),
      env.DB.prepare(
        `WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
         INSERT INTO tenants (id, name, key_prefix, created_at) SELECT 'ten_dekrate' || x, 'dek rate', 'kw', ?2 FROM n`,
      ).bind(due, now - 100 * DAY),
      env.DB.prepare(
        `INSERT INTO data_keys (tenant_id, version, kek_provider, kek_version, wrapped_key, encryption_count, status,
           next_rotation_at, created_at)
         SELECT id, 1, 'master', 1, 'unused', 0, 'active', ?1, ?2 FROM tenants WHERE id LIKE 'ten_dekrate%'`,
      ).bind(now - 60_000, now - 100 * DAY),
    ]);
    const batches: number[] = [];
    const started = new Map<string, number>();
    const workflow = recordingWorkflow(new Boundaries(null), started);
    const dekWorkflow = {
      ...workflow,
      createBatch: (request: Parameters<typeof workflow.createBatch>[0]) => {
        batches.push(request.instances.length);
        return workflow.createBatch(request);
      },
    };
    const waits: number[] = [];
    const report = await runRotationTick(
      { ...tickEnv(new Boundaries(null), started), DEK_ROTATION: dekWorkflow } as unknown as Bindings,
      now,
      { wait: async (ms) => void waits.push(ms) },
    );
    expect(report.started).toBe(due);
    expect(batches).toEqual([DEK_ROTATIONS_PER_SECOND, DEK_ROTATIONS_PER_SECOND, 5]);
    expect(waits).toEqual([CREATE_INTERVAL_MS, CREATE_INTERVAL_MS]);
  });

  it("a createBatch the platform refuses leaves its runs first in line for the next tick, and credentials still start", async () => {
    const now = Date.now() + 1000 * DAY;
    const tenantId = await seedDueKeys(now);
    const credentialTenant = await createTenant("due credential");
    await env.DB.batch([
      env.DB.prepare(
        `INSERT INTO credentials (id, tenant_id, service_id, environment, security_level, name, current_version,
           revision, status, created_by, created_at, updated_at)
         VALUES ('cred_schedulerdue', ?1, 'sendgrid', 'production', 'basic', 'sg', 1, 1, 'active', 'test', ?2, ?2)`,
      ).bind(credentialTenant.id, now - DAY),
      env.DB.prepare(
        `INSERT INTO credential_rotations (credential_id, tenant_id, method, rotation_days, overlap_seconds,
           next_rotation_at, settings, created_at, updated_at)
         VALUES ('cred_schedulerdue', ?1, 'provider', 30, 3600, ?2, '{}', ?2, ?2)`,
      ).bind(credentialTenant.id, now - 1),
    ]);
    const started = new Map<string, number>();
    const refusing = {
      createBatch: async () => {
        throw new Error("429 Too Many Requests");
      },
      get: async () => ({ sendEvent: async () => {} }),
    };
    const env1 = { ...tickEnv(new Boundaries(null), started), KEY_ROTATION: refusing } as unknown as Bindings;
    await expect(runRotationTick(env1, now, NO_WAIT)).rejects.toThrow(/rotation tick/);
    expect(started.has(`cred_schedulerdue-${now - 1}`)).toBe(true);
    const marked = await env.DB.prepare(
      "SELECT count(*) AS n FROM rotation_runs WHERE tenant_id = ? AND updated_at = 0 AND step = 'queued'",
    )
      .bind(tenantId)
      .first<{ n: number }>();
    expect(marked?.n).toBe(CHUNK);

    // The next tick, five minutes later, starts the refused chunk first, then claims the rest.
    await runRotationTick(tickEnv(new Boundaries(null), started), now + 300_000, NO_WAIT);
    const keys = await outcome(tenantId, started);
    for (const key of keys) expect(key).toMatchObject(EXPECTED);
  });
});
