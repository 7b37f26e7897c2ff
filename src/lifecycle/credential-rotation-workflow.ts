import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
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
import type { RotationParams } from "./rotation-params";
import { DB_STEP, messageOf, PROVIDER_STEP, stopping, waitForOverlapEnd } from "./rotation-steps";

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
