import type { Principal } from "./auth/principal";

/** Optional settings that `wrangler types` cannot see because they are unset in production. */
export interface Bindings extends Env {
  /** Milliseconds to buffer verification counters before one batched D1 write. Default 1000. */
  USAGE_FLUSH_MS?: string;
  /** "off" turns the usage recorder off (no counts, origins or last_used_at); any other value or unset: on. */
  USAGE_ANALYTICS?: string;
  /** Local development and e2e only: route provider probes to a loopback stand-in. Unset in production. */
  PROVIDER_STANDIN_ORIGIN?: string;
  /** Local development and e2e only: "true" lets webhook channels target http://127.0.0.1. Unset in production. */
  ALLOW_LOOPBACK_WEBHOOKS?: string;
  /** Which KEK wraps new data keys: "master" (default, MASTER_KEY / MASTER_KEY_<KEK_VERSION>) or "vault". */
  KEK_PROVIDER?: string;
  /** HashiCorp Vault Transit as a KEK provider (docs/storage.md, "Vault Transit"). */
  VAULT_ADDR?: string;
  VAULT_TOKEN?: string;
  VAULT_ROLE_ID?: string;
  VAULT_SECRET_ID?: string;
  VAULT_APPROLE_MOUNT?: string;
  VAULT_NAMESPACE?: string;
  VAULT_TRANSIT_MOUNT?: string;
  VAULT_TRANSIT_KEY?: string;
}

export type AppEnv = {
  Bindings: Bindings;
  Variables: {
    requestId: string;
    principal: Principal;
  };
};
