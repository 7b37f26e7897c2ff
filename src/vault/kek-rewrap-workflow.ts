import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import { IntegrityError } from "../crypto/envelope";
import type { Bindings } from "../env";
import { DB_STEP, messageOf } from "../lifecycle/rotation-steps";
import {
  beginKekRewrap,
  finishKekRewrap,
  type KekRewrapParams,
  REWRAP_CHUNK,
  REWRAP_MAX_PASSES,
  type RewrapChunk,
  type RewrapCursor,
  rewrapChunk,
} from "./kek-rewrap";

/**
 * The re-wrap of every DEK and system key under the target KEK (./kek-rewrap): `begin` → `rewrap-0`,
 * `rewrap-1`, … (one chunk per step, passes over data_keys until a whole pass finds nothing off target) →
 * `finish`. Every chunk is idempotent compare-and-set work, so a thrown step is retried and a crash resumes
 * from the last recorded step; a run started again from scratch only finds what is still off target. Step
 * results are counts and a (tenant id, version) cursor, never key material.
 */
export class KekRewrapWorkflow extends WorkflowEntrypoint<Bindings, KekRewrapParams> {
  override async run(event: Readonly<WorkflowEvent<KekRewrapParams>>, step: WorkflowStep): Promise<string> {
    const params = event.payload;
    const env = this.env;
    const mine = await step.do("begin", DB_STEP, () => beginKekRewrap(env, params));
    if (!mine) return "skipped";

    const size = chunkSize(params.chunk);
    const run = { id: params.runId, now: params.now };
    let n = 0;
    try {
      for (let pass = 1; ; pass++) {
        if (pass > REWRAP_MAX_PASSES)
          throw new Error(`Keys kept appearing off the target KEK after ${REWRAP_MAX_PASSES} passes.`);
        let found = 0;
        let cursor: RewrapCursor | null = null;
        do {
          const from: RewrapCursor | null = cursor;
          const chunk: RewrapChunk = await step.do(`rewrap-${n++}`, DB_STEP, () =>
            finalOnIntegrity(() => rewrapChunk(env, { cursor: from, size, run })),
          );
          found += chunk.found;
          cursor = chunk.next;
        } while (cursor);
        if (found === 0) break;
      }
    } catch (error) {
      await step.do("fail", DB_STEP, () =>
        finishKekRewrap(env, params, { state: "failed", step: "rewrap", error: messageOf(error) }),
      );
      return "failed";
    }
    await step.do("finish", DB_STEP, () => finishKekRewrap(env, params, { state: "completed" }));
    return "completed";
  }
}

function chunkSize(requested: number | undefined): number {
  return requested !== undefined && Number.isInteger(requested) && requested >= 1 && requested <= REWRAP_CHUNK
    ? requested
    : REWRAP_CHUNK;
}

/**
 * A wrapped key that fails authentication stays corrupt however often it is retried: the run stops at once
 * and says so (the key is left as it is, and the sealed error names nothing secret). Vault or D1 being out
 * of reach is retried with the step's backoff.
 */
async function finalOnIntegrity<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof IntegrityError) throw new NonRetryableError(error.message);
    throw error;
  }
}
