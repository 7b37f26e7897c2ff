import { eq } from "drizzle-orm";
import type { ServiceDefinition } from "../catalog/types";
import type { SecurityLevel } from "../crypto/keys";
import type { Database } from "../db/client";
import { tenants } from "../db/schema";
import type { KeySettings } from "./issue-key";
import { DEFAULT_ROTATION_OVERLAP_SECONDS } from "./key-schemas";

/** The prefix the tenant chose for its keys (`kw` if it has none). */
export async function tenantKeyPrefix(db: Database, tenantId: string): Promise<string> {
  const tenant = await db
    .select({ keyPrefix: tenants.keyPrefix })
    .from(tenants)
    .where(eq(tenants.id, tenantId))
    .get();
  return tenant?.keyPrefix ?? "kw";
}

export interface ServiceKeyOptions {
  environment: "development" | "staging" | "production";
  securityLevel: SecurityLevel;
  prefix: string;
  /** The rotation policy's period: a schedule for the key, never its expiry. */
  rotationDays: number | null;
  ipAllowlist?: string[];
  countryAllowlist?: string[];
  metadata: Record<string, unknown>;
  createdBy: string;
}

/**
 * The Keywarden key issued for one catalogue service: scoped to that service only, `live` for production
 * and `test` otherwise, with the wizard's access limits.
 */
export function serviceKeySettings(service: ServiceDefinition, options: ServiceKeyOptions): KeySettings {
  return {
    name: `${service.name} access key`,
    scopes: [`service:${service.id}`],
    environment: options.environment === "production" ? "live" : "test",
    securityLevel: options.securityLevel,
    prefix: options.prefix,
    expiresAt: null,
    rotationDays: options.rotationDays,
    rotationOverlapSeconds: DEFAULT_ROTATION_OVERLAP_SECONDS,
    ipAllowlist: options.ipAllowlist?.length ? options.ipAllowlist : null,
    countryAllowlist: options.countryAllowlist?.length ? options.countryAllowlist : null,
    ratelimit: null,
    usageLimit: null,
    metadata: options.metadata,
    serviceId: service.id,
    createdBy: options.createdBy,
  };
}
