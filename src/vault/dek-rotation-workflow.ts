import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import type { Bindings } from "../env";
import { DB_STEP, messageOf, stopping, waitForOverlapEnd } from "../lifecycle/rotation-steps";
import {
  beginDekRotation,
  beginRetireWait,
  createSuccessorDek,
  DEK_REENCRYPT_CHUNK,
  DEK_RETIRE_ATTEMPTS,
  type DekRotationParams,
  failDekRotation,
  reencryptChunk,
  retireOldDeks,
} from "./dek-rotation";

/**
 * Rotation of one tenant's DEK: create v+1 (new writes use it at once) → re-encrypt every sealed row in
 * chunks → wait until no wizard can hold a blob under v → sweep again → delete v. Each step is an idempotent
 * domain function in ./dek-rotation, so a crash or a thrown step resumes where it stopped (threat model
 * case 20). Step results are versions and counts only, never key material or plaintext.
 */
export class DataKeyRotationWorkflow extends WorkflowEntrypoint<Bindings, DekRotationParams> {
  override async run(event: Readonly<WorkflowEvent<DekRotationParams>>, step: WorkflowStep): Promise<string> {
    const params = event.payload;
    const env = this.env;
    const mine = await step.do("begin", DB_STEP, () => beginDekRotation(env, params));
    if (!mine) return "skipped";

    let newVersion: number;
    try {
      newVersion = await step.do("create", DB_STEP, () => stopping(() => createSuccessorDek(env, params)));
    } catch (error) {
      // Nothing changed: the active DEK stays, due again after ROTATION_RETRY_MS.
      await step.do("fail", DB_STEP, () =>
        failDekRotation(env, params, { step: "create", error: messageOf(error) }),
      );
      return "failed";
    }

    // From here on the new DEK stays whatever happens: a failure keeps the old one retiring (its fields
    // still decrypt) and the next rotation re-encrypts and retires it.
    let current = "reencrypt";
    try {
      const reencrypt = (label: string) => reencryptAll(step, env, params, newVersion, label);
      await reencrypt("reencrypt");
      current = "overlap";
      const retireAfter = await step.do("overlap", DB_STEP, () => beginRetireWait(env, params, newVersion));
      const endedAt = await waitForOverlapEnd(step, params, retireAfter);
      for (let attempt = 1; attempt <= DEK_RETIRE_ATTEMPTS; attempt++) {
        const suffix = attempt === 1 ? "" : `-${attempt}`;
        current = "sweep";
        await reencrypt(`sweep${suffix}`);
        current = "retire";
        const retired = await step.do(`retire${suffix}`, DB_STEP, () =>
          retireOldDeks(env, params, newVersion, endedAt),
        );
        if (retired !== null) return "completed";
      }
      throw new Error("Fields kept arriving under the retiring data key; it was kept.");
    } catch (error) {
      await step.do("fail", DB_STEP, () =>
        failDekRotation(env, params, { step: current, error: messageOf(error) }),
      );
      return "failed";
    }
  }
}

/** Re-encryption chunks `<label>-0`, `<label>-1`, … until one finds no row under an older DEK. */
async function reencryptAll(
  step: WorkflowStep,
  env: Bindings,
  params: DekRotationParams,
  newVersion: number,
  label: string,
): Promise<void> {
  const chunk = params.chunk ?? DEK_REENCRYPT_CHUNK;
  for (let n = 0; ; n++) {
    const { found } = await step.do(`${label}-${n}`, DB_STEP, () =>
      reencryptChunk(env, params.tenantId, newVersion, chunk),
    );
    if (found === 0) return;
  }
}
