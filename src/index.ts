import { buildApp } from "./app";
import type { Bindings } from "./env";
import { runScheduledJobs } from "./jobs/scheduled";
import { consumeRetests, type RetestMessage } from "./lifecycle/retests";
import { consumeAlertDeliveries, consumeDeadDeliveries } from "./monitoring/delivery-consumer";

const app = buildApp();

export default {
  fetch: app.fetch,
  scheduled: (controller, env, ctx) => {
    ctx.waitUntil(runScheduledJobs(controller, env));
  },
  // One Worker consumes every queue (wrangler.toml); the batch names its queue.
  queue: async (batch, env) => {
    switch (batch.queue) {
      case "keywarden-retests":
        return consumeRetests(batch as MessageBatch<RetestMessage>, env);
      case "keywarden-alerts":
        return consumeAlertDeliveries(batch, env);
      case "keywarden-alerts-dlq":
        return consumeDeadDeliveries(batch, env);
      default:
        // A queue this Worker was never meant to consume: retry rather than lose its messages silently.
        console.error(JSON.stringify({ event: "unknown_queue", queue: batch.queue }));
        batch.retryAll();
    }
  },
} satisfies ExportedHandler<Bindings>;

export { AuditChain } from "./audit/audit-chain";
export { TenantErasureWorkflow } from "./erasure/tenant-erasure-workflow";
export { CredentialRotationWorkflow } from "./lifecycle/credential-rotation-workflow";
export { KeyRotationWorkflow } from "./lifecycle/key-rotation-workflow";
export { KeyLimiter } from "./limits/key-limiter";
export { DataKeyRotationWorkflow } from "./vault/dek-rotation-workflow";
export { KekRewrapWorkflow } from "./vault/kek-rewrap-workflow";
export { WizardSession } from "./wizard/wizard-session";
