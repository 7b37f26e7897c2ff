import { env } from "cloudflare:workers";
import { newId } from "../../src/crypto/random";
import type { TestTenant } from "../helpers/api";

/**
 * A bare webhook channel row for the alerting tests: no secrets to open, as the lifecycle never sends.
 * `failures` dead deliveries in a row; at 3 or more the channel is `failing`, as the delivery consumer leaves it.
 */
export async function insertChannelRow(
  tenant: TestTenant,
  name: string,
  at: number,
  failures = 0,
): Promise<string> {
  const id = newId("chn");
  await env.DB.prepare(
    `INSERT INTO alert_channels (id, tenant_id, kind, name, config, sealed_secrets, dek_version, consecutive_failures,
       health, created_at, updated_at)
     VALUES (?, ?, 'webhook', ?, '{}', '{}', 1, ?, ?, ?, ?)`,
  )
    .bind(id, tenant.id, name, failures, failures >= 3 ? "failing" : "healthy", at, at)
    .run();
  return id;
}
