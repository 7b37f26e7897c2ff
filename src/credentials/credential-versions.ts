import { and, eq, isNull, lte, max } from "drizzle-orm";
import type { ServiceDefinition } from "../catalog/types";
import { validateCredential } from "../catalog/validate";
import type { Database } from "../db/client";
import { credentials, credentialVersions } from "../db/schema";
import { ApiError } from "../errors";
import { providerRotatorFor } from "../lifecycle/rotators";
import type { ActiveDekRead } from "../vault/data-keys";
import type { Unsealed } from "../vault/keyring";
import { requireService } from "./require-service";
import { credentialRecordId, displayValues, openValues, sealValues } from "./sealed-fields";

export type CredentialRow = typeof credentials.$inferSelect;
export type VersionRow = typeof credentialVersions.$inferSelect;

/**
 * Versions kept per credential; older unlabelled ones are deleted in the batch that makes a new version
 * current. A version holding a stage label (current, pending, previous) is never pruned.
 */
export const KEPT_VERSIONS = 10;

/**
 * Format, strength and environment checks from the catalogue, for every new value (an admin's, an entered
 * rotation's, a minted one); messages name fields, never values. Returns the warnings.
 */
export function assertValidFields(
  service: ServiceDefinition,
  row: Pick<CredentialRow, "environment" | "securityLevel">,
  fields: Readonly<Record<string, string>>,
): string[] {
  const result = validateCredential(service, fields, {
    environment: row.environment,
    securityLevel: row.securityLevel,
  });
  if (!result.ok) {
    throw new ApiError("VALIDATION_FAILED", "The credential did not pass validation.", {
      errors: [
        ...result.errors.map((message) => ({ path: "fields", message })),
        ...result.fields.flatMap((f) => f.errors.map((message) => ({ path: `fields.${f.field}`, message }))),
      ],
    });
  }
  return result.warnings;
}

export interface NewVersion {
  tenantId: string;
  credentialId: string;
  serviceId: string;
  version: number;
  fields: Readonly<Record<string, string>>;
  /**
   * `pending` for a rotation's successor; null for a version that `makeCurrentStatements` labels next;
   * `previous` only when an import restores a credential's versions with their labels as exported.
   */
  stage: "current" | "pending" | "previous" | null;
  /** The provider's id of the key the fields hold; by default what the service's rotator reads from them. */
  providerKeyId?: string | null;
  createdBy: string;
  now: number;
  /** What `activeDekQuery` found when the caller read it in its own batch; read while sealing otherwise. */
  activeDek?: ActiveDekRead;
}

/**
 * Seals `fields` as one version (AAD-bound to credential#version) and returns the INSERT and the data key's
 * encryption counter, for the caller's batch. The (credential, version) primary key makes a concurrent
 * writer of the same version number fail as a whole, and the partial unique index on (credential, stage)
 * does the same for a second pending version.
 */
export async function sealedVersionStatements(keys: Unsealed, db: Database, version: NewVersion) {
  const service = requireService(version.serviceId);
  const { sealed, dekVersion, countEncryptions } = await sealValues(
    keys,
    db,
    { tenantId: version.tenantId, recordId: credentialRecordId(version.credentialId, version.version) },
    version.fields,
    version.activeDek,
  );
  const providerKeyId =
    version.providerKeyId !== undefined
      ? version.providerKeyId
      : (providerRotatorFor(version.serviceId)?.providerKeyIdOf(version.fields) ?? null);
  return [
    db.insert(credentialVersions).values({
      credentialId: version.credentialId,
      tenantId: version.tenantId,
      version: version.version,
      sealedFields: sealed,
      dekVersion,
      displayFields: displayValues(service.fields, version.fields),
      stage: version.stage,
      providerKeyId,
      createdBy: version.createdBy,
      createdAt: version.now,
    }),
    countEncryptions,
  ] as const;
}

/** The number of the next version: one past every stored one, a pending successor included. */
export async function nextVersionNumber(db: Database, row: Pick<CredentialRow, "tenantId" | "id">) {
  const found = await db
    .select({ top: max(credentialVersions.version) })
    .from(credentialVersions)
    .where(and(eq(credentialVersions.tenantId, row.tenantId), eq(credentialVersions.credentialId, row.id)))
    .get();
  return (found?.top ?? 0) + 1;
}

type VisibleChange = Partial<Pick<CredentialRow, "name" | "currentVersion" | "status" | "deletedAt">>;

/**
 * A change a client can see: the next row, and the statement that writes it with `revision` set to the
 * revision read plus one. Migration 0006's trigger aborts that statement's batch unless the stored
 * revision is still the one read, so of two writers that read the same revision (and passed the same
 * If-Match, or a rotation's read) exactly one commits. Writes a client does not see (live test results,
 * the cron purge) leave `revision` out of their SET, and the trigger does not fire for them.
 */
export function visibleChange(db: Database, row: CredentialRow, changes: VisibleChange, now: number) {
  const next: CredentialRow = { ...row, ...changes, revision: row.revision + 1, updatedAt: now };
  const statement = db
    .update(credentials)
    .set({ ...changes, revision: next.revision, updatedAt: next.updatedAt })
    .where(and(eq(credentials.tenantId, row.tenantId), eq(credentials.id, row.id)));
  return { next, statement };
}

const ofCredential = (row: Pick<CredentialRow, "tenantId" | "id">) =>
  and(eq(credentialVersions.tenantId, row.tenantId), eq(credentialVersions.credentialId, row.id));

/**
 * THE way a version becomes current (an admin's new value, a rollback, a rotation's promote): in one batch
 * the older `previous` loses its label, the old `current` becomes `previous`, `version` becomes `current`,
 * and `credentials.current_version` moves with a compare-and-set on `revision`, so a reader of
 * `current_version` always reads the version labelled current. The labels move in that order because the
 * partial unique index on (credential, stage) is checked row by row. Unlabelled versions beyond
 * KEPT_VERSIONS are pruned. A new version must be inserted (stage null) before these statements run.
 */
export function makeCurrentStatements(
  db: Database,
  row: CredentialRow,
  version: number,
  now: number,
  changes: Pick<VisibleChange, "name"> = {},
) {
  const { next, statement } = visibleChange(db, row, { ...changes, currentVersion: version }, now);
  const statements = [
    db
      .update(credentialVersions)
      .set({ stage: null })
      .where(and(ofCredential(row), eq(credentialVersions.stage, "previous"))),
    db
      .update(credentialVersions)
      .set({ stage: "previous" })
      .where(and(ofCredential(row), eq(credentialVersions.stage, "current"))),
    db
      .update(credentialVersions)
      .set({ stage: "current" })
      .where(and(ofCredential(row), eq(credentialVersions.version, version))),
    statement,
    db
      .delete(credentialVersions)
      .where(
        and(
          ofCredential(row),
          isNull(credentialVersions.stage),
          lte(credentialVersions.version, version - KEPT_VERSIONS),
        ),
      ),
  ] as const;
  return { next, statements };
}

/** One stored version of a credential of the tenant, or undefined. */
export async function findVersionRow(
  db: Database,
  row: Pick<CredentialRow, "tenantId" | "id">,
  version: number,
): Promise<VersionRow | undefined> {
  return db
    .select()
    .from(credentialVersions)
    .where(and(ofCredential(row), eq(credentialVersions.version, version)))
    .get();
}

/** The version holding `stage`, or undefined. */
export async function versionInStage(
  db: Database,
  row: Pick<CredentialRow, "tenantId" | "id">,
  stage: "current" | "pending" | "previous",
): Promise<VersionRow | undefined> {
  return db
    .select()
    .from(credentialVersions)
    .where(and(ofCredential(row), eq(credentialVersions.stage, stage)))
    .get();
}

/** Decrypts one version's fields (IntegrityError on a tampered or misplaced blob). */
export function openVersion(
  keys: Unsealed,
  db: Database,
  version: Pick<VersionRow, "tenantId" | "credentialId" | "version" | "sealedFields">,
): Promise<Record<string, string>> {
  return openValues(
    keys,
    db,
    { tenantId: version.tenantId, recordId: credentialRecordId(version.credentialId, version.version) },
    version.sealedFields,
  );
}

/** The DELETE of a pending version (a failed rotation's successor); a version in any other stage stays. */
export function dropPendingStatement(
  db: Database,
  row: Pick<CredentialRow, "tenantId" | "id">,
  version: number,
) {
  return db
    .delete(credentialVersions)
    .where(
      and(
        ofCredential(row),
        eq(credentialVersions.version, version),
        eq(credentialVersions.stage, "pending"),
      ),
    );
}
