import type { WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import type { AuditActor } from "../audit/audit-log";
import { OVERLAP_ENDED, type OverlapEndedPayload, type RotationParams } from "./rotation-params";
import { RotatorError } from "./rotators/provider-rotator";

/** What the key and credential rotation Workflows share: step settings, refusals, the overlap wait. */

/** D1 steps: brief unavailability is retried with backoff before the rotation gives up. */
export const DB_STEP = {
  retries: { limit: 5, delay: "5 seconds", backoff: "exponential" },
  timeout: "1 minute",
} as const;

/**
 * Steps that call a provider or an endpoint: 5xx, 429 and timeouts are retried with backoff (10 s, 20 s, ...
 * 160 s), which also covers an AWS key that takes seconds to start working.
 */
export const PROVIDER_STEP = {
  retries: { limit: 5, delay: "10 seconds", backoff: "exponential" },
  timeout: "2 minutes",
} as const;

/** A failed scheduled rotation is tried again this much later (and raises `rotation.failed` each time). */
export const ROTATION_RETRY_MS = 60 * 60_000;

/** The audit actor of a rotation run: the system, with the run id as the request id. */
export function rotationActor(params: Pick<RotationParams, "tenantId" | "runId">): AuditActor {
  return { tenantId: params.tenantId, actorType: "system", actorId: "rotation", requestId: params.runId };
}

/** A rotation that must stop without retrying (the subject changed under it, or its test failed). */
export class RotationStopped extends Error {
  override name = "RotationStopped";
}

/**
 * A domain refusal or a provider's refusal is final: retrying sends the same refused request. The engine
 * recognises a NonRetryableError by its name, so the error keeps the class's default name.
 */
export async function stopping<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof RotationStopped || (error instanceof RotatorError && error.failure === "refused")) {
      throw new NonRetryableError(error.message);
    }
    throw error;
  }
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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
