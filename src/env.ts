import type { Principal } from "./auth/principal";

/** Optional settings that `wrangler types` cannot see because they are unset in production. */
export interface Bindings extends Env {
  /** Milliseconds to buffer verification counters before one batched D1 write. Default 1000. */
  USAGE_FLUSH_MS?: string;
  /** Local development and e2e only: route provider probes to a loopback stand-in. Unset in production. */
  PROVIDER_STANDIN_ORIGIN?: string;
  /** Local development and e2e only: "true" lets webhook channels target http://127.0.0.1. Unset in production. */
  ALLOW_LOOPBACK_WEBHOOKS?: string;
}

export type AppEnv = {
  Bindings: Bindings;
  Variables: {
    requestId: string;
    principal: Principal;
  };
};
