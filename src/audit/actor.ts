import type { Context } from "hono";
import type { AppEnv } from "../env";
import type { AuditActor } from "./audit-log";

/** The audit actor of an authenticated request: its tenant, the key or session behind it, and its request id. */
export function auditActor(c: Context<AppEnv>): AuditActor {
  const principal = c.get("principal");
  return {
    tenantId: principal.tenantId,
    actorType: principal.via,
    actorId: principal.keyId,
    requestId: c.get("requestId"),
  };
}
