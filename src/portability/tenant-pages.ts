import { and, asc, count, eq, gt, or } from "drizzle-orm";
import { openVersion } from "../credentials/credential-versions";
import type { Database } from "../db/client";
import { inJsonList } from "../db/in-list";
import { alertChannels, alertRules, apiKeys, credentials, credentialVersions } from "../db/schema";
import { keyFields } from "../keys/key-view";
import { storedSpec, tenantChannels } from "../monitoring/channels";
import type { Cursor } from "../openapi/cursor";
import { isoTime } from "../openapi/shared";
import { settingsOfPolicy, tenantSecurityPolicy } from "../policy/security-policy";
import { MAX_RULES } from "../routes/monitoring";
import type { Unsealed } from "../vault/keyring";
import type { BundleCredential, BundleKey, BundlePage, BundleRule } from "./bundle";

/**
 * Rows read per query while exporting. Every read is a bounded keyset page, never one SELECT of a whole
 * tenant; a page of credentials also reads their versions (at most KEPT_VERSIONS + 3 each) in one query.
 */
export const EXPORT_PAGE_SIZE = 50;

const iso = (ms: number) => isoTime(ms) as string;

type CredentialRow = typeof credentials.$inferSelect;
type KeyRow = typeof apiKeys.$inferSelect;

type PagedTable = typeof credentials | typeof apiKeys;

/**
 * The tenant's rows of `table`, `pageSize` at a time: an ascending keyset walk over the tenant indexes on
 * (tenant, created_at, id), each page `(created_at, id) >` the last row of the one before.
 */
export async function* tenantRowPages<T extends PagedTable>(
  db: Database,
  table: T,
  tenantId: string,
  pageSize: number,
): AsyncGenerator<T["$inferSelect"][]> {
  const paged: PagedTable = table;
  let cursor: Cursor | null = null;
  for (;;) {
    const after = cursor
      ? or(
          gt(paged.createdAt, cursor.createdAt),
          and(eq(paged.createdAt, cursor.createdAt), gt(paged.id, cursor.id)),
        )
      : undefined;
    const rows: T["$inferSelect"][] = await db
      .select()
      .from(paged)
      .where(and(eq(paged.tenantId, tenantId), after))
      .orderBy(asc(paged.createdAt), asc(paged.id))
      .limit(pageSize)
      .all();
    if (rows.length === 0) return;
    yield rows;
    const last = rows[rows.length - 1] as T["$inferSelect"];
    cursor = { createdAt: last.createdAt, id: last.id };
    if (rows.length < pageSize) return;
  }
}

async function credentialPage(
  keys: Unsealed,
  db: Database,
  rows: readonly CredentialRow[],
): Promise<BundleCredential[]> {
  if (rows.length === 0) return [];
  const tenantId = rows[0]?.tenantId as string;
  const versions = await db
    .select()
    .from(credentialVersions)
    .where(
      and(
        eq(credentialVersions.tenantId, tenantId),
        inJsonList(
          credentialVersions.credentialId,
          rows.map((row) => row.id),
        ),
      ),
    )
    .orderBy(asc(credentialVersions.credentialId), asc(credentialVersions.version))
    .all();
  const items: BundleCredential[] = [];
  for (const row of rows) {
    const own = versions.filter((version) => version.credentialId === row.id);
    items.push({
      id: row.id,
      service: row.serviceId,
      environment: row.environment,
      security_level: row.securityLevel,
      name: row.name,
      status: row.status,
      deleted_at: isoTime(row.deletedAt),
      current_version: row.currentVersion,
      created_at: iso(row.createdAt),
      versions: await Promise.all(
        own.map(async (version) => ({
          version: version.version,
          stage: version.stage,
          fields: await openVersion(keys, db, version),
          provider_key_id: version.providerKeyId,
          created_at: iso(version.createdAt),
        })),
      ),
    });
  }
  return items;
}

/** The key's view fields (`keyFields`, as the API shows them) and what an import needs to recreate it. */
function keyItem(row: KeyRow): BundleKey {
  return {
    ...keyFields(row),
    metadata: row.metadata as BundleKey["metadata"],
    hash: row.hash,
    rotation_days: row.rotationDays,
    rotation_overlap_seconds: row.rotationOverlapSeconds,
    rotated_from_id: row.rotatedFromId,
    last_rotated_at: isoTime(row.lastRotatedAt),
    created_at: iso(row.createdAt),
  };
}

/**
 * The tenant's bundle as pages, in BUNDLE_KINDS order, read page by page (`pageSize` rows per query) so
 * neither the reads nor a streamed response ever hold the whole tenant. Only rows `WHERE tenant_id = ?` of
 * the exporting tenant are read (threat model case 1). Secret values are decrypted here, in memory only.
 */
export async function* tenantPages(
  keys: Unsealed,
  db: Database,
  tenantId: string,
  pageSize = EXPORT_PAGE_SIZE,
): AsyncGenerator<BundlePage> {
  for await (const rows of tenantRowPages(db, credentials, tenantId, pageSize))
    yield { kind: "credentials", items: await credentialPage(keys, db, rows) };
  for await (const rows of tenantRowPages(db, apiKeys, tenantId, pageSize))
    yield { kind: "keys", items: rows.map(keyItem) };

  // A tenant has at most MAX_CHANNELS channels and MAX_RULES rules (src/routes/monitoring.ts): one page each.
  const channelRows = await tenantChannels(db, tenantId);
  const channels = await Promise.all(channelRows.map((row) => storedSpec(keys, db, row)));
  if (channels.length) yield { kind: "channels", items: channels };

  const nameOf = new Map(channelRows.map((row) => [row.id, row.name]));
  const ruleRows = await db
    .select()
    .from(alertRules)
    .where(eq(alertRules.tenantId, tenantId))
    .orderBy(asc(alertRules.createdAt), asc(alertRules.id))
    .limit(MAX_RULES)
    .all();
  const rules: BundleRule[] = ruleRows.map((row) => ({
    name: row.name,
    kind: row.kind,
    service_id: row.serviceId,
    settings: row.settings,
    channels: row.channelIds.flatMap((id) => nameOf.get(id) ?? []),
    severity: row.severity,
    cooldown_seconds: row.cooldownSeconds,
    enabled: row.enabled,
  }));
  if (rules.length) yield { kind: "rules", items: rules };

  const policy = await tenantSecurityPolicy(db, tenantId);
  if (policy) yield { kind: "policy", items: [settingsOfPolicy(policy)] };
}

/** How many rows an export of the tenant holds, by kind, from COUNT queries (for the audit row and the size check). */
export async function tenantCounts(db: Database, tenantId: string) {
  const [creds, versions, keyCount, channelCount, ruleCount, policy] = await Promise.all([
    db.select({ n: count() }).from(credentials).where(eq(credentials.tenantId, tenantId)).get(),
    db.select({ n: count() }).from(credentialVersions).where(eq(credentialVersions.tenantId, tenantId)).get(),
    db.select({ n: count() }).from(apiKeys).where(eq(apiKeys.tenantId, tenantId)).get(),
    db.select({ n: count() }).from(alertChannels).where(eq(alertChannels.tenantId, tenantId)).get(),
    db.select({ n: count() }).from(alertRules).where(eq(alertRules.tenantId, tenantId)).get(),
    tenantSecurityPolicy(db, tenantId),
  ]);
  return {
    credentials: creds?.n ?? 0,
    credential_versions: versions?.n ?? 0,
    keys: keyCount?.n ?? 0,
    channels: channelCount?.n ?? 0,
    rules: ruleCount?.n ?? 0,
    policy: policy !== null,
  };
}
export type BundleCounts = Awaited<ReturnType<typeof tenantCounts>>;
