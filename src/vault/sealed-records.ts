import { totpRecord } from "../auth/totp-store";
import { ENDPOINT_SECRET_FIELD, endpointSecretRecord } from "../credentials/rotation-config";
import { credentialRecordId } from "../credentials/sealed-fields";
import { deliveryEndpointRecordId } from "../lifecycle/delivery-endpoint";
import { handoffRecordId } from "../lifecycle/key-handoff";

/** A stored row as the re-encryption reads it: its key columns, `tenant_id`, `dek_version` and the blob column. */
export type SealedRow = Record<string, string | number | null>;

/**
 * One kind of D1 row that holds ciphertext under a tenant DEK. `dek_version` says which DEK sealed all of the
 * row's blobs (they are sealed by one `sealValues` call). Every table that stores `sealValues` output must be
 * listed here: the DEK re-encryption and the keyring status walk this list and nothing else, and
 * test/vault/sealed-records.test.ts fails if a table with a `dek_version` column is missing.
 */
export interface SealedSource {
  table: string;
  /** Columns that identify one row (with `tenant_id`). */
  keyColumns: readonly string[];
  /** The column that holds the ciphertext. */
  blobColumn: string;
  /** The value name of a single-blob column; null for a JSON map `{ field: blob }`. */
  field: string | null;
  /** The AAD record id the blobs were sealed under. */
  recordId(row: SealedRow): string;
}

export const SEALED_SOURCES: readonly SealedSource[] = [
  {
    table: "credential_versions",
    keyColumns: ["credential_id", "version"],
    blobColumn: "sealed_fields",
    field: null,
    recordId: (row) => credentialRecordId(String(row.credential_id), Number(row.version)),
  },
  {
    table: "credential_rotations",
    keyColumns: ["credential_id"],
    blobColumn: "sealed_endpoint_secret",
    field: ENDPOINT_SECRET_FIELD,
    recordId: (row) =>
      endpointSecretRecord({ tenantId: String(row.tenant_id), credentialId: String(row.credential_id) })
        .recordId,
  },
  {
    table: "key_handoffs",
    keyColumns: ["key_id"],
    blobColumn: "payload",
    field: "key",
    recordId: (row) => handoffRecordId(String(row.key_id)),
  },
  {
    table: "key_delivery_endpoints",
    keyColumns: ["tenant_id"],
    blobColumn: "sealed_signing_secret",
    field: "signing_secret",
    recordId: (row) => deliveryEndpointRecordId(String(row.tenant_id)),
  },
  {
    table: "alert_channels",
    keyColumns: ["id"],
    blobColumn: "sealed_secrets",
    field: null,
    recordId: (row) => String(row.id),
  },
  {
    table: "admin_totp",
    keyColumns: ["key_id"],
    blobColumn: "sealed_secret",
    field: "secret",
    recordId: (row) => totpRecord({ tenantId: String(row.tenant_id), keyId: String(row.key_id) }).recordId,
  },
];

/** The `{ field: blob }` map of a row's blob column. */
export function blobsOf(source: SealedSource, row: SealedRow): Record<string, string> {
  const value = row[source.blobColumn];
  if (typeof value !== "string") return {};
  return source.field === null ? (JSON.parse(value) as Record<string, string>) : { [source.field]: value };
}

/** The blob column's stored value for a `{ field: blob }` map. */
export function storedBlobs(source: SealedSource, blobs: Record<string, string>): string {
  return source.field === null ? JSON.stringify(blobs) : (blobs[source.field] as string);
}
