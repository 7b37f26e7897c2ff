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
import { QUEUED_RESTART_MS, runRotationTick, SCHEDULER_CHUNK } from "../../src/lifecycle/scheduler";
import { createTenant } from "../helpers/api";

const DAY = 86_400_000;
const DUE_KEYS = 2 * SCHEDULER_CHUNK + 50;

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
    createBatch: (batch: { id: string; params: { now: number } }[]) =>
      boundaries.cross(async () => {
        for (const { id, params } of batch) {
          if (started.has(id)) continue;
          started.set(id, 1);
          await beginRun(database(env.DB), { runId: id, now: params.now });
        }
        return [];
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

const EXPECTED = { next_rotation_at: null, run_count: 1, starts: 1, runIsItsDueTime: true };

describe("the scheduler's chunks survive a fault at every call boundary (threat model case 20)", () => {
  it(`claims ${DUE_KEYS} due keys over 3 chunks, each with exactly one run and one Workflow`, async () => {
    const now = Date.now() + 400 * DAY;
    const tenantId = await seedDueKeys(now);
    const started = new Map<string, number>();
    const boundaries = new Boundaries(null);
    const report = await runRotationTick(tickEnv(boundaries, started), now);
    expect(report.started).toBe(DUE_KEYS);
    const keys = await outcome(tenantId, started);
    expect(keys).toHaveLength(DUE_KEYS);
    for (const key of keys) expect(key).toMatchObject(EXPECTED);
  });

  it("re-run after a fault before or after any D1 call or Workflow start, ends with the fault-free state", async () => {
    const probe = new Boundaries(null);
    const base = Date.now() + 500 * DAY;
    await seedDueKeys(base);
    await runRotationTick(tickEnv(probe, new Map()), base);
    const boundaryCount = probe.calls;
    expect(boundaryCount).toBeGreaterThanOrEqual(3 * 3);

    let round = 0;
    for (let at = 1; at <= boundaryCount; at++) {
      for (const after of [false, true]) {
        const now = base + ++round * DAY;
        const tenantId = await seedDueKeys(now);
        const started = new Map<string, number>();
        const faulty = runRotationTick(tickEnv(new Boundaries({ at, after }), started), now);
        await expect(faulty, `fault ${after ? "after" : "before"} call ${at}`).rejects.toThrow(
          /injected fault/,
        );
        // The next ticks: one at the same time (a retried invocation) and one after the queued-run restart.
        await runRotationTick(tickEnv(new Boundaries(null), started), now);
        await runRotationTick(tickEnv(new Boundaries(null), started), now + QUEUED_RESTART_MS + 1);
        const keys = await outcome(tenantId, started);
        expect(keys).toHaveLength(DUE_KEYS);
        for (const key of keys)
          expect(key, `fault ${after ? "after" : "before"} call ${at}`).toMatchObject(EXPECTED);
      }
    }
  });
});
