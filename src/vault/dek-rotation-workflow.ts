import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import type { Bindings } from "../env";
import type { RotationParams } from "../lifecycle/rotation-params";

/** Rotation of one tenant's DEK (placeholder: being built). */
export class DataKeyRotationWorkflow extends WorkflowEntrypoint<Bindings, RotationParams> {
  override async run(_event: Readonly<WorkflowEvent<RotationParams>>, _step: WorkflowStep): Promise<string> {
    throw new Error("not built yet");
  }
}
