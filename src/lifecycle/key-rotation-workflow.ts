import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import type { Bindings } from "../env";
import { deliverHandoff, HandoffDeliveryError } from "./key-handoff";
import {
  beginKeyRotation,
  createKeySuccessor,
  failKeyRotation,
  promoteKeySuccessor,
  recordDeliveryFailure,
  retireKeyRotation,
  testKeySuccessor,
} from "./key-rotation";
import type { RotationParams } from "./rotation-params";
import { DB_STEP, messageOf, PROVIDER_STEP, stopping, waitForOverlapEnd } from "./rotation-steps";

/**
 * Rotation of an issued key: create the successor (and its JWE or sealed pickup) → deliver → test → promote
 * → wait out the overlap → retire the old key. Each step is a domain function in ./key-rotation that is
 * idempotent, so a crash or a thrown step resumes where it stopped (threat model cases 20, 32). Steps
 * return ids and times only: the engine stores step results, and no plaintext may be among them (case 30).
 */
export class KeyRotationWorkflow extends WorkflowEntrypoint<Bindings, RotationParams> {
  override async run(event: Readonly<WorkflowEvent<RotationParams>>, step: WorkflowStep): Promise<string> {
    const params = event.payload;
    const env = this.env;
    const mine = await step.do("begin", DB_STEP, () => beginKeyRotation(env, params));
    if (!mine) return "skipped";

    let successorId: string;
    let overlapEndsAt: number;
    let current = "create";
    try {
      successorId = await step.do("create", DB_STEP, () => stopping(() => createKeySuccessor(env, params)));
      current = "deliver";
      await deliverOrKeepForPickup(step, env, params, successorId);
      current = "test";
      await step.do("test", DB_STEP, () => stopping(() => testKeySuccessor(env, params, successorId)));
      current = "promote";
      overlapEndsAt = await step.do("promote", DB_STEP, () =>
        stopping(() => promoteKeySuccessor(env, params, successorId)),
      );
    } catch (error) {
      await step.do("fail", DB_STEP, () =>
        failKeyRotation(env, params, { step: current, error: messageOf(error) }),
      );
      return "failed";
    }

    const endedAt = await waitForOverlapEnd(step, params, overlapEndsAt);
    await step.do("retire", DB_STEP, () => retireKeyRotation(env, params, successorId, endedAt));
    return "completed";
  }
}

/**
 * Pushes the JWE to the tenant's endpoint. An endpoint that still refuses after the retries does not stop
 * the rotation: the JWE stays for one-time pickup during the overlap (only the tenant's private key opens
 * it), and `rotation.delivery_failed` says so.
 */
async function deliverOrKeepForPickup(
  step: WorkflowStep,
  env: Bindings,
  params: RotationParams,
  successorId: string,
): Promise<void> {
  try {
    // The webhook timestamp is the send time: receivers refuse one outside their tolerance.
    await step.do("deliver", PROVIDER_STEP, async () => {
      try {
        return await deliverHandoff(env, successorId, Date.now());
      } catch (error) {
        if (error instanceof HandoffDeliveryError && error.permanent) {
          throw new NonRetryableError(error.message);
        }
        throw error;
      }
    });
  } catch (error) {
    const reason = messageOf(error);
    await step.do("delivery failed", DB_STEP, () => recordDeliveryFailure(env, params, successorId, reason));
  }
}
