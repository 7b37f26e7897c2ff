import type { z } from "@hono/zod-openapi";
import type { ProbeResult } from "../catalog/run-probe";
import type { Database } from "../db/client";
import type { credentials, credentialVersions } from "../db/schema";
import { isoTime } from "../openapi/shared";
import type { CredentialRotationSchema, CredentialSchema } from "./credential-schemas";
import { credentialRotationView, credentialRotationViews } from "./rotation-config";

/** A soft-deleted credential can be restored for this long, then the cron purges it. */
export const RESTORE_WINDOW_MS = 30 * 86_400_000;

type CredentialRow = typeof credentials.$inferSelect;
type VersionRow = typeof credentialVersions.$inferSelect;

/** The only shape a credential leaves the service in, outside reveal: masked values, no ciphertext. */
export function credentialView(
  row: CredentialRow,
  version: Pick<VersionRow, "displayFields">,
  rotation: z.infer<typeof CredentialRotationSchema>,
): z.infer<typeof CredentialSchema> {
  return {
    id: row.id,
    service: row.serviceId,
    environment: row.environment,
    security_level: row.securityLevel,
    name: row.name,
    version: row.currentVersion,
    status: row.status,
    fields: version.displayFields,
    last_test: row.lastTestStatus
      ? {
          status: row.lastTestStatus,
          reason: row.lastTestReason,
          latency_ms: row.lastTestLatencyMs,
          tested_at: isoTime(row.lastTestedAt),
        }
      : null,
    provider_expires_at: isoTime(row.providerExpiresAt),
    provider_account: row.providerAccount,
    deleted_at: isoTime(row.deletedAt),
    restorable_until: row.deletedAt === null ? null : isoTime(row.deletedAt + RESTORE_WINDOW_MS),
    created_at: isoTime(row.createdAt) as string,
    updated_at: isoTime(row.updatedAt) as string,
    rotation,
  };
}

/** A page of credentials joined to their current versions, each with its `rotation` object. */
export async function credentialViews(
  db: Database,
  tenantId: string,
  rows: readonly { credential: CredentialRow; version: Pick<VersionRow, "displayFields"> }[],
): Promise<z.infer<typeof CredentialSchema>[]> {
  const rotations = await credentialRotationViews(
    db,
    tenantId,
    rows.map((r) => r.credential.id),
  );
  return rows.map((r) =>
    credentialView(
      r.credential,
      r.version,
      rotations.get(r.credential.id) ?? credentialRotationView(undefined, undefined),
    ),
  );
}

/**
 * The strong ETag that If-Match compares (RFC 9110 §8.8.3). It is built from `revision`, which every
 * change a client can see bumps (fields, name, rollback, delete, restore), so a rename is a new ETag as
 * much as a new version is; a live test result is not such a change and leaves it alone.
 */
export function etagOf(row: Pick<CredentialRow, "id" | "revision">): string {
  return `"${row.id}.r${row.revision}"`;
}

/** A probe result as the API shows it: the provider's expiry as an ISO time. */
export function probeView(result: ProbeResult) {
  const { expires_at, ...rest } = result;
  return { ...rest, ...(expires_at !== undefined ? { expires_at: isoTime(expires_at) } : {}) };
}
