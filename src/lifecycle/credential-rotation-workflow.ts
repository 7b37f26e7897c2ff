import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import { NonRetryableError } from "cloudflare:workflows";
import type { Bindings } from "../env";
import {
  beginCredentialRotation,
  createPendingVersion,
  discardPendingVersion,
  failCredentialRotation,
  promotePendingVersion,
  type RotationPlan,
  retirePreviousVersion,
  testPendingVersion,
} from "./credential-rotation";
import { RotationStopped } from "./key-rotation";
import { waitForOverlapEnd } from "./key-rotation-workflow";
import type { RotationParams } from "./rotation-params";
import { RotatorError } from "./rotators/provider-rotator";

/** D1 steps: brief unavailability is retried. */
const DB_STEP = {
  retries: { limit: 5, delay: "5 seconds", backoff: "exponential" },
  timeout: "1 minute",
} as const;
/**
 * Steps that call a provider or the tenant's endpoint: 5xx, 429 and timeouts are retried with backoff
 * (10 s, 20 s, ... 160 s), which also covers an AWS key that takes seconds to start working.
 */
const PROVIDER_STEP = {
  retries: { limit: 5, delay: "10 seconds", backoff: "exponential" },
  timeout: "2 minutes",
} as const;

export type CredentialRotationOutcome = "skipped" | "completed" | "failed";

/**
 * Rotation of a third-party credential: begin → create (mint the pending version at the provider or the
 * tenant's endpoint; skipped for an admin's entered value) → test (live probe) → promote (pending becomes
 * current) → wait out the overlap → retire (revoke the old key). Each step is an idempotent domain function
 * in ./credential-rotation, so a throw or a crash at any boundary resumes where it stopped, and a failure
 * before promote is compensated without ever moving "current" (threat model cases 20, 32).
 */
export class CredentialRotationWorkflow extends WorkflowEntrypoint<Bindings, RotationParams> {
  override async run(
    event: Readonly<WorkflowEvent<RotationParams>>,
    step: WorkflowStep,
  ): Promise<CredentialRotationOutcome> {
    const params = event.payload;
    const env = this.env;
    let plan: RotationPlan | null = null;
    let version: number;
    let overlapEndsAt: number | null;
    let current = "begin";
    try {
      plan = await step.do("begin", DB_STEP, () => stopping(() => beginCredentialRotation(env, params)));
      if (!plan) return "skipped";
      const begun = plan;
      current = "create";
      version =
        begun.pendingVersion ??
        (await step.do("create", PROVIDER_STEP, () =>
          stopping(() => createPendingVersion(env, params, begun)),
        ));
      current = "test";
      await step.do("test", PROVIDER_STEP, () =>
        stopping(() => testPendingVersion(env, params, begun, version)),
      );
      current = "promote";
      ({ overlapEndsAt } = await step.do("promote", DB_STEP, () =>
        stopping(() => promotePendingVersion(env, params, begun, version)),
      ));
    } catch (error) {
      const failed = plan;
      let orphan: string | null = null;
      try {
        await step.do("compensate", PROVIDER_STEP, () => discardPendingVersion(env, params, failed, true));
      } catch {
        orphan = await step.do("discard", DB_STEP, () => discardPendingVersion(env, params, failed, false));
      }
      const reason = messageOf(error);
      await step.do("fail", DB_STEP, () =>
        failCredentialRotation(env, params, {
          step: current,
          error: orphan
            ? `The new key ${orphan} could not be revoked: revoke it at the provider. ${reason}`
            : reason,
        }),
      );
      return "failed";
    }
    if (overlapEndsAt === null) return "completed";

    const begun = plan;
    const endedAt = await waitForOverlapEnd(step, params, overlapEndsAt);
    try {
      await step.do("retire", PROVIDER_STEP, () =>
        stopping(() => retirePreviousVersion(env, params, begun, version, endedAt)),
      );
    } catch (error) {
      await step.do("fail", DB_STEP, () =>
        failCredentialRotation(env, params, { step: "retire", error: messageOf(error) }),
      );
      return "failed";
    }
    return "completed";
  }
}

/**
 * A domain refusal or a provider's refusal is final: retrying sends the same refused request. The engine
 * recognises a NonRetryableError by its name, so the error keeps the class's default name.
 */
async function stopping<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof RotationStopped || (error instanceof RotatorError && error.failure === "refused")) {
      throw new NonRetryableError(error.message);
    }
    throw error;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
