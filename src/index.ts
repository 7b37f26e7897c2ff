import { buildApp } from "./app";
import type { Bindings } from "./env";
import { runScheduledJobs } from "./jobs/scheduled";

const app = buildApp();

export default {
  fetch: app.fetch,
  scheduled: (controller, env, ctx) => {
    ctx.waitUntil(runScheduledJobs(controller, env));
  },
} satisfies ExportedHandler<Bindings>;

export { AuditChain } from "./audit/audit-chain";
export { KeyLimiter } from "./limits/key-limiter";
export { WizardSession } from "./wizard/wizard-session";
