import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import type { Bindings } from "../env";
import { DB_STEP } from "../lifecycle/rotation-steps";
import {
  closeAuditChain,
  completeErasure,
  ERASURE_MAX_PASSES,
  ERASURE_SETTLE_MS,
  type ErasureParams,
  eraseChunk,
  findErasure,
  markStep,
  shredDataKeys,
} from "./tenant-erasure";
import { TENANT_TABLES } from "./tenant-tables";

/**
 * The erasure of one tenant (docs/erasure.md). The DELETE request has already refused the tenant everywhere
 * (step 1); this destroys its DEKs (step 2), deletes its rows and Durable Object state table by table in
 * bounded chunks (step 3; a pass over every table, repeated until one finds nothing), waits until nothing can
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
    // Deployed, this waits out every wizard session's idle expiry (ERASURE_SETTLE_MS); tests disable sleeps.
    await step.sleepUntil("settle", params.requestedAt + ERASURE_SETTLE_MS);
    await step.do("sweeping", DB_STEP, () => markStep(env, params, "sweep"));
    await deleteEverything(step, env, params, "sweep");
    await step.do("receipt", DB_STEP, () => completeErasure(env, params));
    return "completed";
  }
}

/**
 * Passes over every tenant table (`<phase>:<table>:<chunk>`, later passes `<phase>-<n>:…`) until one deletes
 * nothing and leaves the tenant row gone.
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
    let deleted = 0;
    let blocked = false;
    for (const spec of TENANT_TABLES) {
      for (let n = 0; ; n++) {
        const outcome = await step.do(`${label}:${spec.table}:${n}`, DB_STEP, () =>
          eraseChunk(env, params, spec, phase),
        );
        deleted += outcome.deleted;
        blocked ||= outcome.blocked;
        if (outcome.deleted === 0) break;
      }
    }
    if (deleted === 0 && !blocked) return;
  }
  throw new Error(`Rows of the tenant kept arriving through ${ERASURE_MAX_PASSES} passes.`);
}
