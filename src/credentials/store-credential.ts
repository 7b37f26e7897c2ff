import type { AuditEvent } from "../audit/audit-log";
import type { ServiceDefinition } from "../catalog/types";
import { newId } from "../crypto/random";
import type { Database } from "../db/client";
import { credentials } from "../db/schema";
import { RETEST_INTERVAL_MS } from "../lifecycle/retests";
import type { ActiveDekRead } from "../vault/data-keys";
import type { Unsealed } from "../vault/keyring";
import {
  assertValidFields,
  type CredentialRow,
  makeCurrentStatements,
  nextVersionNumber,
  sealedVersionStatements,
  type VersionRow,
} from "./credential-versions";
import { displayValues } from "./sealed-fields";

export interface NewCredential {
  tenantId: string;
  service: ServiceDefinition;
  environment: CredentialRow["environment"];
  /** Already raised to the tenant policy's floor (`levelAtLeastPolicy`). */
  securityLevel: CredentialRow["securityLevel"];
  name?: string;
  fields: Readonly<Record<string, string>>;
  createdBy: string;
  now: number;
  /** What `activeDekQuery` found when the caller read it in its own batch; read while sealing otherwise. */
  activeDek?: ActiveDekRead;
}

/**
 * A credential row as it comes into being (created, or imported from an export): revision 1, never tested,
 * its first live test due one retest interval from `now`. `fields` names it and may carry an exported
 * credential's version, status and creation time.
 */
export function newCredentialRow(
  fields: Pick<
    CredentialRow,
    "id" | "tenantId" | "serviceId" | "environment" | "securityLevel" | "name" | "createdBy"
  > &
    Partial<Pick<CredentialRow, "currentVersion" | "status" | "deletedAt" | "createdAt">>,
  now: number,
): CredentialRow {
  return {
    revision: 1,
    currentVersion: 1,
    status: "active",
    deletedAt: null,
    lastTestStatus: null,
    lastTestReason: null,
    lastTestLatencyMs: null,
    lastTestedAt: null,
    providerExpiresAt: null,
    providerAccount: null,
    nextTestAt: now + RETEST_INTERVAL_MS,
    createdAt: now,
    updatedAt: now,
    ...fields,
  };
}

/**
 * THE way a credential comes into being (POST /credentials, the Vault KV import): validated against the
 * catalogue (VALIDATION_FAILED naming fields, never values), its values sealed as version 1 labelled current.
 * Returns the row, its version as stored (what a detail view shows of it), the statements for the caller's
 * audited batch, the validation warnings and the audit event.
 */
export async function createCredentialStatements(keys: Unsealed, db: Database, input: NewCredential) {
  const { service, now } = input;
  const row = newCredentialRow(
    {
      id: newId("cred"),
      tenantId: input.tenantId,
      serviceId: service.id,
      environment: input.environment,
      securityLevel: input.securityLevel,
      name: input.name ?? `${service.name} (${input.environment})`,
      createdBy: input.createdBy,
    },
    now,
  );
  const warnings = assertValidFields(service, row, input.fields);
  const version = await sealedVersionStatements(keys, db, {
    tenantId: row.tenantId,
    credentialId: row.id,
    serviceId: row.serviceId,
    version: 1,
    fields: input.fields,
    stage: "current",
    createdBy: input.createdBy,
    now,
    activeDek: input.activeDek,
  });
  const stored = {
    version: 1,
    stage: "current",
    displayFields: displayValues(service.fields, input.fields),
    createdBy: input.createdBy,
    createdAt: now,
  } satisfies Pick<VersionRow, "version" | "stage" | "displayFields" | "createdBy" | "createdAt">;
  const event: AuditEvent = {
    action: "credential.create",
    targetType: "credential",
    targetId: row.id,
    detail: { service: service.id, environment: row.environment, fields: Object.keys(input.fields).sort() },
  };
  return {
    row,
    version: stored,
    statements: [db.insert(credentials).values(row), ...version],
    warnings,
    event,
  };
}

/**
 * New values for an existing credential (PATCH, the Vault KV import): sealed as the next version and made
 * current in the same batch, the old current kept as previous (`makeCurrentStatements`). The caller has
 * validated `fields` (`assertValidFields`); the batch's revision compare-and-set refuses a concurrent change.
 */
export async function newCurrentVersionStatements(
  keys: Unsealed,
  db: Database,
  row: CredentialRow,
  fields: Readonly<Record<string, string>>,
  by: { createdBy: string; now: number },
  changes: { name?: string } = {},
) {
  const version = await nextVersionNumber(db, row);
  const insert = await sealedVersionStatements(keys, db, {
    tenantId: row.tenantId,
    credentialId: row.id,
    serviceId: row.serviceId,
    version,
    fields,
    stage: null,
    createdBy: by.createdBy,
    now: by.now,
  });
  const { next, statements } = makeCurrentStatements(db, row, version, by.now, changes);
  return { next, statements: [...insert, ...statements] };
}
