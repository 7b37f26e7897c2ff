import type { Bindings } from "../env";

/** Durable Objects whose storage a tenant erasure clears, as counted on the receipt. */
export const CLEARED_OBJECTS = ["key_limiters", "wizard_sessions", "audit_chain"] as const;
export type ClearedObject = (typeof CLEARED_OBJECTS)[number];

export type TenantRow = Record<string, string | number | null>;

/**
 * One D1 table that holds rows of a tenant. Every table with a `tenant_id` column must be listed in
 * TENANT_TABLES (test/erasure/tenant-tables.test.ts fails otherwise), so a table added later cannot outlive
 * an erasure unnoticed.
 */
export interface TenantTable {
  table: string;
  /** The column naming the tenant: `tenant_id`, or `id` for the tenants row itself. */
  tenantColumn: "tenant_id" | "id";
  /** Rows per chunk, where it differs from the erasure's chunk (each row here costs a Durable Object call). */
  chunk?: number;
  /** Durable Object storage that belongs to a chunk's rows: cleared before the rows are deleted. */
  objects?: {
    kind: ClearedObject;
    /** The columns `clear` reads from each row. */
    columns: readonly string[];
    /** Clears the rows' objects (idempotent) and returns how many it cleared. */
    clear(env: Bindings, tenantId: string, rows: readonly TenantRow[]): Promise<number>;
  };
}

/**
 * A key's limiter exists only once the key had a rate or usage limit; `limits_version` > 1 means its limits
 * were changed since creation, so a key whose limits were removed is cleared too.
 */
async function clearKeyLimiters(env: Bindings, _tenantId: string, rows: readonly TenantRow[]) {
  const limited = rows.filter(
    (row) => row.ratelimit_limit !== null || row.usage_limit !== null || Number(row.limits_version) > 1,
  );
  await Promise.all(
    limited.map((row) => env.KEY_LIMITER.get(env.KEY_LIMITER.idFromName(String(row.id))).erase()),
  );
  return limited.length;
}

/**
 * A committed wizard's session is wiped by its own alarm at the latest a day after its last use; the erasure
 * wipes it at once. A session already wiped answers NOT_FOUND, which is the outcome wanted.
 */
async function clearWizardSessions(env: Bindings, tenantId: string, rows: readonly TenantRow[]) {
  await Promise.all(
    rows.map(async (row) => {
      let id: DurableObjectId;
      try {
        id = env.WIZARD_SESSION.idFromString(String(row.wizard_id));
      } catch {
        return;
      }
      await env.WIZARD_SESSION.get(id).abandon(tenantId);
    }),
  );
  return rows.length;
}

/**
 * Deletion order: rows that reference `tenants` (foreign keys) before the tenant row, which goes last; the
 * audit log after every other row of the tenant, so it records the erasure's first steps until then.
 * `data_keys` is emptied by the crypto-shredding step before any of this runs and is listed for the sweep.
 */
export const TENANT_TABLES: readonly TenantTable[] = [
  { table: "data_keys", tenantColumn: "tenant_id" },
  { table: "admin_totp", tenantColumn: "tenant_id" },
  { table: "key_handoffs", tenantColumn: "tenant_id" },
  { table: "key_delivery_endpoints", tenantColumn: "tenant_id" },
  { table: "credential_rotations", tenantColumn: "tenant_id" },
  { table: "credential_versions", tenantColumn: "tenant_id" },
  { table: "credentials", tenantColumn: "tenant_id" },
  { table: "alert_deliveries", tenantColumn: "tenant_id" },
  { table: "alerts", tenantColumn: "tenant_id" },
  { table: "alert_rules", tenantColumn: "tenant_id" },
  { table: "alert_channels", tenantColumn: "tenant_id" },
  { table: "events", tenantColumn: "tenant_id" },
  { table: "rotation_runs", tenantColumn: "tenant_id" },
  { table: "usage_counts", tenantColumn: "tenant_id" },
  { table: "key_origins", tenantColumn: "tenant_id" },
  { table: "key_baselines", tenantColumn: "tenant_id" },
  { table: "security_policies", tenantColumn: "tenant_id" },
  {
    table: "wizard_commits",
    tenantColumn: "tenant_id",
    chunk: 50,
    objects: { kind: "wizard_sessions", columns: ["wizard_id"], clear: clearWizardSessions },
  },
  {
    table: "api_keys",
    tenantColumn: "tenant_id",
    chunk: 50,
    objects: {
      kind: "key_limiters",
      columns: ["id", "ratelimit_limit", "usage_limit", "limits_version"],
      clear: clearKeyLimiters,
    },
  },
  { table: "audit_log", tenantColumn: "tenant_id" },
  { table: "audit_horizons", tenantColumn: "tenant_id" },
  { table: "tenants", tenantColumn: "id" },
];

/** Tables that keep a row of an erased tenant by design: the receipt itself. */
export const ERASURE_RECORD_TABLES = ["tenant_erasures"] as const;
