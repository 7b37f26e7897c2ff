import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import type { Bindings } from "../env";
import { deliverHandoff, HandoffDeliveryError } from "./key-handoff";
import {
  beginKeyRotation,
  createKeySuccessor,
  failKeyRotation,
  promoteKeySuccessor,
  RotationStopped,
  recordDeliveryFailure,
  retireKeyRotation,
  testKeySuccessor,
} from "./key-rotation";
import { OVERLAP_ENDED, type OverlapEndedPayload, type RotationParams } from "./rotation-params";

/** D1 and the delivery endpoint can be briefly unavailable: retry with backoff before giving up. */
const STEP = {
  retries: { limit: 5, delay: "5 seconds", backoff: "exponential" },
  timeout: "1 minute",
} as const;

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
    const mine = await step.do("begin", STEP, () => beginKeyRotation(env, params));
    if (!mine) return "skipped";

    let successorId: string;
    let overlapEndsAt: number;
    let current = "create";
    try {
      successorId = await step.do("create", STEP, () => stopping(createKeySuccessor(env, params)));
      current = "deliver";
      await deliverOrKeepForPickup(step, env, params, successorId);
      current = "test";
      await step.do("test", STEP, () => stopping(testKeySuccessor(env, params, successorId)));
      current = "promote";
      overlapEndsAt = await step.do("promote", STEP, () =>
        stopping(promoteKeySuccessor(env, params, successorId)),
      );
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      await step.do("fail", STEP, () => failKeyRotation(env, params, { step: current, error: reason }));
      return "failed";
    }

    const endedAt = await waitForOverlapEnd(step, params, overlapEndsAt);
    await step.do("retire", STEP, () => retireKeyRotation(env, params, successorId, endedAt));
    return "completed";
  }
}

/**
 * Waits until the overlap ends: the cron's `overlap-ended` event (sent when its clock, possibly fast-forwarded,
 * passes `overlapEndsAt`) or, deployed, the timeout at the same moment. Returns the time the overlap ended.
 */
export async function waitForOverlapEnd(
  step: WorkflowStep,
  params: RotationParams,
  overlapEndsAt: number,
): Promise<number> {
  try {
    const ended = await step.waitForEvent<OverlapEndedPayload>("overlap", {
      type: OVERLAP_ENDED,
      timeout: Math.max(1_000, overlapEndsAt - params.now),
    });
    return ended.payload.now;
  } catch {
    return overlapEndsAt;
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
    await step.do("deliver", STEP, async () => {
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
    const reason = error instanceof Error ? error.message : String(error);
    await step.do("delivery failed", STEP, () => recordDeliveryFailure(env, params, successorId, reason));
  }
}

/** A domain refusal (`RotationStopped`) is final: the engine must not retry it. */
async function stopping<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (error instanceof RotationStopped) throw new NonRetryableError(error.message);
    throw error;
  }
}
