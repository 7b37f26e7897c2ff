import { buildApp } from "./app";
import type { Bindings } from "./env";
import { runScheduledJobs } from "./jobs/scheduled";
import { consumeRetests, type RetestMessage } from "./lifecycle/retests";

const app = buildApp();

export default {
  fetch: app.fetch,
  scheduled: (controller, env, ctx) => {
    ctx.waitUntil(runScheduledJobs(controller, env));
  },
  queue: (batch, env) => consumeRetests(batch as MessageBatch<RetestMessage>, env),
} satisfies ExportedHandler<Bindings>;

export { AuditChain } from "./audit/audit-chain";
export { CredentialRotationWorkflow } from "./lifecycle/credential-rotation-workflow";
export { KeyRotationWorkflow } from "./lifecycle/key-rotation-workflow";
export { KeyLimiter } from "./limits/key-limiter";
export { DataKeyRotationWorkflow } from "./vault/dek-rotation-workflow";
export { KekRewrapWorkflow } from "./vault/kek-rewrap-workflow";
export { WizardSession } from "./wizard/wizard-session";
