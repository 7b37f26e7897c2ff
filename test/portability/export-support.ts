import { expect } from "vitest";
import { stripeKey } from "../credentials/samples";
import { callJson, type TestTenant } from "../helpers/api";
import { tenantRows } from "../helpers/db";

export const PASSPHRASE = "correct horse battery staple 7";

/** Every row the tenant owns in the tables an import writes (and its audit log when asked). */
export function tenantState(tenantId: string, withAudit = false): Promise<string> {
  return tenantRows(tenantId, [
    "keys",
    "credentials",
    "versions",
    "channels",
    "rules",
    "policy",
    "data_keys",
    ...(withAudit ? (["audit"] as const) : []),
  ]);
}

export async function storeStripe(tenant: TestTenant, name: string, secret = stripeKey()) {
  const created = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service: "stripe", environment: "development", name, fields: { secret_key: secret } },
  });
  expect(created.status).toBe(201);
  return { id: created.body.id, etag: created.headers.get("etag") as string, secret };
}

/** A new value for a stored credential (a new version); returns the new ETag. */
export async function changeStripe(tenant: TestTenant, id: string, etag: string, secret: string) {
  const changed = await callJson("PATCH", `/api/v1/credentials/${id}`, {
    key: tenant.adminKey,
    headers: { "if-match": etag },
    body: { fields: { secret_key: secret } },
  });
  expect(changed.status).toBe(200);
  return changed.headers.get("etag") as string;
}

export async function reveal(tenant: TestTenant, id: string, version?: number) {
  const revealed = await callJson<{ fields: Record<string, string> }>(
    "POST",
    `/api/v1/credentials/${id}/reveal`,
    {
      key: tenant.adminKey,
      body: version ? { version } : {},
    },
  );
  expect(revealed.status).toBe(200);
  return revealed.body.fields;
}

export interface PlanEntry {
  name: string;
  kind: string;
  fields?: string[];
  reason?: string;
}
type KindPlan = Record<"create" | "update" | "unchanged" | "conflicts", PlanEntry[]>;
export type Plan = Record<"credentials" | "keys" | "channels" | "rules" | "policy", KindPlan>;

export async function exportWith(
  tenant: TestTenant,
  body: Record<string, unknown> = { passphrase: PASSPHRASE },
) {
  const exported = await callJson<{ jwe: string }>("POST", "/api/v1/export", { key: tenant.adminKey, body });
  expect(exported.status, JSON.stringify(exported.body)).toBe(200);
  return exported.body.jwe;
}

export async function importInto(tenant: TestTenant, body: Record<string, unknown>) {
  return callJson<{
    dry_run: boolean;
    plan: Plan;
    code?: string;
    errors?: { path: string; message: string }[];
  }>("POST", "/api/v1/import", { key: tenant.adminKey, body });
}

export const names = (entries: PlanEntry[]) => entries.map((entry) => entry.name).sort();
