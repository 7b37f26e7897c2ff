import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import type { Bindings } from "../env";
import { DB_STEP, messageOf } from "../lifecycle/rotation-steps";
import {
  beginKekRewrap,
  finishKekRewrap,
  type KekRewrapParams,
  REWRAP_CHUNK,
  REWRAP_MAX_PASSES,
  REWRAP_PAUSE_MS,
  type RewrapChunk,
  type RewrapCursor,
  rewrapChunk,
} from "./kek-rewrap";

/**
 * The re-wrap of every DEK and system key under the target KEK (./kek-rewrap): `begin` → `rewrap-0`,
 * `rewrap-1`, … (one chunk per step, a short pause between two, passes over data_keys until a whole pass finds
 * nothing off target) →
 * `finish`. Every chunk is idempotent compare-and-set work, so a thrown step is retried and a crash resumes
 * from the last recorded step; a run started again from scratch only finds what is still off target. Step
 * results are counts, a (tenant id, version) cursor and the ids of unreadable keys, never key material.
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
        const unreadable: string[] = [];
        let cursor: RewrapCursor | null = null;
        do {
          const from: RewrapCursor | null = cursor;
          const chunk: RewrapChunk = await step.do(`rewrap-${n++}`, DB_STEP, () =>
            rewrapChunk(env, { cursor: from, size, run }),
          );
          found += chunk.found;
          unreadable.push(...chunk.unreadable);
          cursor = chunk.next;
          if (cursor) await step.sleep(`pause-${n}`, REWRAP_PAUSE_MS);
        } while (cursor);
        // Every other key has moved; the corrupt ones stay, and another pass would only find them again.
        if (unreadable.length > 0) throw new UnreadableKeys(unreadable);
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

/** How many unreadable keys the failed run's error names. */
const UNREADABLE_SHOWN = 10;

/**
 * The end of a pass that found keys whose wrapping fails authentication: the run fails and names them (ids
 * only), every other key having moved; the cron tries again after ROTATION_RETRY_MS.
 */
class UnreadableKeys extends Error {
  constructor(names: readonly string[]) {
    const shown = names.slice(0, UNREADABLE_SHOWN).join(", ");
    const more = names.length > UNREADABLE_SHOWN ? ` and ${names.length - UNREADABLE_SHOWN} more` : "";
    super(
      `${names.length} wrapped key(s) failed authentication and stay under their old KEK: ${shown}${more}.`,
    );
    this.name = "UnreadableKeys";
  }
}
