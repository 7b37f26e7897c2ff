import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import type { Bindings } from "../env";
import { DB_STEP } from "../lifecycle/rotation-steps";
import {
  chunkOf,
  closeAuditChain,
  completeErasure,
  ERASURE_MAX_PASSES,
  ERASURE_SETTLE_MS,
  ERASURE_SETTLED,
  type ErasureParams,
  eraseChunk,
  findErasure,
  markStep,
  shredDataKeys,
  tablesWithRows,
} from "./tenant-erasure";
import { TENANT_TABLES } from "./tenant-tables";

/**
 * The erasure of one tenant (docs/erasure.md). The DELETE request has already refused the tenant everywhere
 * (step 1); this destroys its DEKs (step 2), deletes its rows and Durable Object state table by table in
 * bounded chunks (step 3; passes until no table holds a row of the tenant), waits until nothing can
 * still write for the tenant, sweeps again (step 4), and writes the receipt (step 5). Every step is an
 * idempotent domain function in ./tenant-erasure, so a crash or a thrown step resumes where it stopped. Step
 * results are counts only.
 */
export class TenantErasureWorkflow extends WorkflowEntrypoint<Bindings, ErasureParams> {
  override async run(event: Readonly<WorkflowEvent<ErasureParams>>, step: WorkflowStep): Promise<string> {
    const params = event.payload;
    const env = this.env;
    const state = await step.do(
      "begin",
      DB_STEP,
      async () => (await findErasure(env, params.tenantId))?.state ?? null,
    );
    if (state === null) return "skipped";
    if (state === "completed") return "completed";

    await step.do("shred", DB_STEP, () => shredDataKeys(env, params));
    await deleteEverything(step, env, params, "rows");
    await step.do("settling", DB_STEP, () => markStep(env, params, "settling"));
    await settle(step);
    await step.do("sweeping", DB_STEP, () => markStep(env, params, "sweep"));
    await deleteEverything(step, env, params, "sweep");
    await step.do("receipt", DB_STEP, () => completeErasure(env, params));
    return "completed";
  }
}

/**
 * Waits ERASURE_SETTLE_MS: deployed, nothing sends ERASURE_SETTLED and the wait times out, by which time every
 * wizard session of the tenant has expired and nothing that read the tenant before the request still runs.
 * Tests end the wait with the event (after writing a late row, to see the sweep take it).
 */
async function settle(step: WorkflowStep): Promise<void> {
  try {
    await step.waitForEvent("settle", { type: ERASURE_SETTLED, timeout: ERASURE_SETTLE_MS });
  } catch {
    // The timeout: the wait is over.
  }
}

/**
 * Passes over the tenant's tables until none holds a row of it: each pass asks which tables still do
 * (`<phase>:remaining`, later passes `<phase>-<n>:remaining`), then empties each in chunks
 * (`<phase>:<table>:<chunk>`). A table is left when a chunk comes back short; a row that arrives after that
 * is found by the next pass's question.
 */
async function deleteEverything(
  step: WorkflowStep,
  env: Bindings,
  params: ErasureParams,
  phase: "rows" | "sweep",
): Promise<void> {
  for (let pass = 1; pass <= ERASURE_MAX_PASSES; pass++) {
    const label = pass === 1 ? phase : `${phase}-${pass}`;
    await step.do(`${label}:audit_chain`, DB_STEP, () => closeAuditChain(env, params));
    const remaining = await step.do(`${label}:remaining`, DB_STEP, () => tablesWithRows(env, params));
    if (remaining.length === 0) return;
    for (const spec of TENANT_TABLES) {
      if (!remaining.includes(spec.table)) continue;
      for (let n = 0; ; n++) {
        const outcome = await step.do(`${label}:${spec.table}:${n}`, DB_STEP, () =>
          eraseChunk(env, params, spec, phase),
        );
        if (outcome.blocked || outcome.deleted < chunkOf(params, spec)) break;
      }
    }
  }
  throw new Error(`Rows of the tenant kept arriving through ${ERASURE_MAX_PASSES} passes.`);
}
