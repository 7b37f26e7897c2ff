import { env } from "cloudflare:workers";
import { newId } from "../../src/crypto/random";
import type { RuleKind } from "../../src/monitoring/alert-kinds";

/** Usage rows and counter rules written straight into D1, for the tests of the counter rules and their paging. */

export interface UsageRow {
  tenantId: string;
  keyId: string;
  serviceId?: string | null;
  bucket?: "hour" | "day";
  start: number;
  valid?: number;
  invalid?: number;
  notFound?: number;
  authFailed?: number;
}

/** Rows as the usage recorder leaves them (upserted: a second call for the same bucket adds). */
export async function addUsage(rows: UsageRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) {
    const chunk = rows
      .slice(i, i + 500)
      .map((r) => [
        r.tenantId,
        r.keyId,
        r.serviceId ?? null,
        r.bucket ?? "hour",
        r.start,
        r.valid ?? 0,
        r.invalid ?? 0,
        r.notFound ?? 0,
        r.authFailed ?? 0,
      ]);
    await env.DB.prepare(
      `INSERT INTO usage_counts (tenant_id, key_id, service_id, bucket, start, valid, invalid, not_found, auth_failed)
       SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5, j.value ->> 6,
              j.value ->> 7, j.value ->> 8
       FROM json_each(?1) AS j WHERE true
       ON CONFLICT (tenant_id, key_id, bucket, start) DO UPDATE SET valid = valid + excluded.valid,
         invalid = invalid + excluded.invalid, not_found = not_found + excluded.not_found,
         auth_failed = auth_failed + excluded.auth_failed`,
    )
      .bind(JSON.stringify(chunk))
      .run();
  }
}

export async function addRule(
  tenantId: string,
  kind: RuleKind,
  settings: Record<string, unknown>,
  options: { serviceId?: string; cooldownSeconds?: number; createdAt?: number } = {},
): Promise<string> {
  const id = newId("rul");
  await env.DB.prepare(
    `INSERT INTO alert_rules (id, tenant_id, name, kind, service_id, settings, channel_ids, severity, cooldown_seconds, enabled, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, '[]', 'warning', ?7, 1, ?8, ?8)`,
  )
    .bind(
      id,
      tenantId,
      `${kind} rule`,
      kind,
      options.serviceId ?? null,
      JSON.stringify(settings),
      options.cooldownSeconds ?? 3600,
      options.createdAt ?? 0,
    )
    .run();
  return id;
}
