/**
 * The crash matrix of the KEK re-wrap (threat model case 20: a rotation interrupted at any point resumes,
 * and loses nothing): seven DEKs (one of them retiring, its fields not yet re-encrypted) and the system keys,
 * re-wrapped from master:1 to master:2 three DEKs a chunk. At every step boundary, (a) the step throws once
 * and is retried, and (b) the step's work commits and then everything the engine knew is lost (the domain
 * functions run directly up to that step, then the Workflow runs from scratch). Every case must end as the
 * fault-free run: every key on master:2, the same key material, every field decrypting without MASTER_KEY.
 */
import { introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import { newDataKey } from "../../src/vault/data-keys";
import {
  beginKekRewrap,
  finishKekRewrap,
  type KekRewrapParams,
  type RewrapChunk,
  type RewrapCursor,
  rewrapChunk,
} from "../../src/vault/kek-rewrap";
import { forgetKeys, unseal } from "../../src/vault/keyring";
import {
  claimRewrap,
  createSystemKeysWith,
  createTenantWith,
  envWith,
  expectAllReveal,
  keyMaterial,
  MASTER_1_ONLY,
  rewrapRuns,
  type StoredCredential,
  storeWith,
  type WrappedKeyRow,
  wrappedKeys,
} from "./kek-fixtures";

const CHUNK = 3;
/** Every step of the fault-free run: 7 DEKs in chunks of 3, the system keys with the last, a pass finding none. */
const STEPS = ["begin", "rewrap-0", "rewrap-1", "rewrap-2", "rewrap-3", "finish"] as const;
type Step = (typeof STEPS)[number];
/** Far from any real time: nothing here depends on the wall clock. */
const T0 = Date.UTC(2031, 0, 1);
const MASTER_2_ONLY = envWith({ MASTER_KEY: undefined });

const credentials: StoredCredential[] = [];
let seeded: WrappedKeyRow[];
let seededMaterial: Record<string, string>;
let runs = 0;

beforeAll(async () => {
  await createSystemKeysWith(MASTER_1_ONLY);
  const tenants = [];
  for (let i = 0; i < 6; i++) {
    const tenant = await createTenantWith(MASTER_1_ONLY, `crash matrix ${i}`);
    tenants.push(tenant);
    credentials.push(await storeWith(MASTER_1_ONLY, tenant));
  }
  // The last tenant is mid DEK rotation: DEK 2 active, DEK 1 retiring with a field still sealed under it.
  const rotating = tenants[5];
  if (!rotating) throw new Error("no tenant");
  const db = database(env.DB);
  const dek2 = await newDataKey(await unseal(MASTER_1_ONLY, db), rotating.id, 2, Date.now());
  await env.DB.batch([
    env.DB.prepare(
      "UPDATE data_keys SET status = 'retiring', next_rotation_at = NULL WHERE tenant_id = ?",
    ).bind(rotating.id),
    env.DB.prepare(
      `INSERT INTO data_keys (tenant_id, version, kek_provider, kek_version, wrapped_key, encryption_count,
         status, next_rotation_at, retire_after, created_at) VALUES (?, 2, ?, ?, ?, 0, 'active', ?, NULL, ?)`,
    ).bind(
      rotating.id,
      dek2.kekProvider,
      dek2.kekVersion,
      dek2.wrappedKey,
      dek2.nextRotationAt,
      dek2.createdAt,
    ),
  ]);
  credentials.push(await storeWith(MASTER_1_ONLY, rotating));

  seeded = await wrappedKeys();
  expect(
    seeded.map((row) => `${row.kind} ${row.status ?? ""} ${row.kek_provider}:${row.kek_version}`).sort(),
  ).toEqual([
    ...Array.from({ length: 6 }, () => "data active master:1"),
    "data retiring master:1",
    "system  master:1",
    "system  master:1",
  ]);
  seededMaterial = await keyMaterial(await unseal(MASTER_1_ONLY, db));
});

/** Every key back under master:1 exactly as seeded, so each case starts from the same keyring. */
beforeEach(async () => {
  forgetKeys();
  await env.DB.batch(
    seeded.map((row) =>
      row.kind === "data"
        ? env.DB.prepare(
            "UPDATE data_keys SET kek_provider = ?, kek_version = ?, wrapped_key = ? WHERE tenant_id || ':' || version = ?",
          ).bind(row.kek_provider, row.kek_version, row.wrapped_key, row.id)
        : env.DB.prepare(
            "UPDATE system_keys SET kek_provider = ?, kek_version = ?, wrapped_key = ? WHERE purpose = ?",
          ).bind(row.kek_provider, row.kek_version, row.wrapped_key, row.id),
    ),
  );
});

type Modifier = Parameters<
  Parameters<Awaited<ReturnType<typeof introspectWorkflowInstance>>["modify"]>[0]
>[0];

async function newRun(): Promise<KekRewrapParams> {
  return claimRewrap(T0 + ++runs * 60_000, CHUNK);
}

/** Starts the run's Workflow and waits for its end; `modify` injects the fault. */
async function runWorkflow(
  params: KekRewrapParams,
  modify: (m: Modifier) => Promise<void> = async () => {},
  inspect: (
    instance: Awaited<ReturnType<typeof introspectWorkflowInstance>>,
  ) => Promise<void> = async () => {},
): Promise<unknown> {
  await using instance = await introspectWorkflowInstance(env.KEK_REWRAP, params.runId);
  await instance.modify(async (m) => {
    await m.disableRetryDelays();
    await modify(m);
  });
  await env.KEK_REWRAP.create({ id: params.runId, params });
  await instance.waitForStatus("complete");
  await inspect(instance);
  return instance.getOutput();
}

/**
 * The run's steps as the Workflow makes them, run directly up to and including `last`: what a crash right
 * after that step's commit, before the engine recorded it, leaves behind.
 */
async function runStepsDirectly(params: KekRewrapParams, last: Step): Promise<void> {
  await beginKekRewrap(env, params);
  if (last === "begin") return;
  let n = 0;
  let found = 0;
  let cursor: RewrapCursor | null = null;
  for (;;) {
    const chunk: RewrapChunk = await rewrapChunk(env, {
      cursor,
      size: CHUNK,
      run: { id: params.runId, now: params.now },
    });
    if (last === `rewrap-${n++}`) return;
    found += chunk.found;
    cursor = chunk.next;
    if (cursor) continue;
    if (found === 0) break;
    found = 0;
  }
  await finishKekRewrap(env, params, { state: "completed" });
}

/** What the fault-free run leaves, and every case must leave too. */
async function expectFaultFreeOutcome(): Promise<void> {
  expect((await wrappedKeys()).map(({ wrapped_key: _, ...row }) => row)).toEqual(
    seeded.map(({ wrapped_key: _, ...row }) => ({ ...row, kek_provider: "master", kek_version: 2 })),
  );
  forgetKeys();
  expect(await keyMaterial(await unseal(env, database(env.DB)))).toEqual(seededMaterial);
  expect((await rewrapRuns()).at(-1)).toEqual({ state: "completed", step: "rewrap", error: null });
  // A cold isolate without MASTER_KEY: every DEK is unwrapped from its new wrapping.
  forgetKeys();
  await expectAllReveal(MASTER_2_ONLY, credentials);
}

describe("KEK re-wrap crash matrix (threat model case 20)", () => {
  it("re-wraps fault-free in the chunks the matrix interrupts: 3, 3, 1 DEK + 2 system keys, then a pass finding none", async () => {
    const params = await newRun();
    const output = await runWorkflow(params, undefined, async (instance) => {
      const results = [];
      for (const name of STEPS.filter((step) => step.startsWith("rewrap-")))
        results.push(await instance.waitForStepResult({ name }));
      expect(results).toEqual([
        {
          target: "master:2",
          found: 3,
          rewrapped: 3,
          unreadable: [],
          next: expect.objectContaining({ version: expect.any(Number) }),
        },
        {
          target: "master:2",
          found: 3,
          rewrapped: 3,
          unreadable: [],
          next: expect.objectContaining({ version: expect.any(Number) }),
        },
        { target: "master:2", found: 3, rewrapped: 3, unreadable: [], next: null },
        { target: "master:2", found: 0, rewrapped: 0, unreadable: [], next: null },
      ]);
    });
    expect(output).toBe("completed");
    await expectFaultFreeOutcome();
  });

  for (const step of STEPS) {
    it(`retries step "${step}" after it throws once and ends as the fault-free run`, async () => {
      const params = await newRun();
      const output = await runWorkflow(params, async (m) => {
        await m.mockStepError({ name: step }, new Error(`injected fault in ${step}`), 1);
      });
      expect(output).toBe("completed");
      await expectFaultFreeOutcome();
    });

    it(`resumes after a crash between step "${step}" committing and the engine recording it`, async () => {
      const params = await newRun();
      await runStepsDirectly(params, step);
      const output = await runWorkflow(params);
      // Crashed after "finish", the run had ended: the new instance finds it so and does nothing.
      expect(output).toBe(step === "finish" ? "skipped" : "completed");
      await expectFaultFreeOutcome();
    });
  }
});
