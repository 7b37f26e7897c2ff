import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";
import type { Bindings } from "../env";
import type { RotationParams } from "../lifecycle/rotation-params";

/** Re-wrap of every DEK under the target KEK (placeholder: being built). */
export class KekRewrapWorkflow extends WorkflowEntrypoint<Bindings, RotationParams> {
  override async run(_event: Readonly<WorkflowEvent<RotationParams>>, _step: WorkflowStep): Promise<string> {
    throw new Error("not built yet");
  }
}
