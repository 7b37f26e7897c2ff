/**
 * Shared pieces of the tenant erasure tests: a tenant with rows in every tenant table and state in every kind
 * of Durable Object; its stored ciphertexts captured raw; erasures requested through the route and their
 * Workflows driven directly (sleeps off, so the settle wait passes at once).
 */
import { introspectWorkflowInstance, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { CHAIN_HEAD_KEY } from "../../src/audit/audit-chain";
import { newId } from "../../src/crypto/random";
import { database } from "../../src/db/client";
import {
  alertDeliveries,
  alertRules,
  alerts,
  events,
  keyBaselines,
  keyOrigins,
  rotationRuns,
  securityPolicies,
  usageCounts,
  wizardCommits,
} from "../../src/db/schema";
import {
  ERASURE_SETTLED,
  type ErasureParams,
  erasureParams,
  requestErasure,
} from "../../src/erasure/tenant-erasure";
import { ERASURE_RECORD_TABLES } from "../../src/erasure/tenant-tables";
import { EVENT_KINDS } from "../../src/lifecycle/event-kinds";
import { RULE_KINDS } from "../../src/monitoring/alert-kinds";
import { pruneTenantAudit } from "../../src/monitoring/retention";
import { flushUsage } from "../../src/monitoring/usage-recorder";
import { blobsOf, SEALED_SOURCES } from "../../src/vault/sealed-records";
import { callJson, createKey, freshClientIp } from "../helpers/api";
import { type SealedTenant, sealedTenant } from "../vault/dek-rotation-fixtures";

type Modifier = Parameters<
  Parameters<Awaited<ReturnType<typeof introspectWorkflowInstance>>["modify"]>[0]
>[0];

const DAY = 86_400_000;

/** Every D1 table with a `tenant_id` column, read from the database itself (not from the code under test). */
export async function tablesWithTenantId(): Promise<string[]> {
  const { results: tables } = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%' ORDER BY name",
  ).all<{ name: string }>();
  const withTenant: string[] = [];
  for (const { name } of tables) {
    const column = await env.DB.prepare("SELECT 1 AS yes FROM pragma_table_info(?1) WHERE name = 'tenant_id'")
      .bind(name)
      .first();
    if (column) withTenant.push(name);
  }
  return withTenant;
}

/** The tenant's rows per table (the tenant row itself under `tenants`), the receipt's table left out. */
export async function tenantRowCounts(tenantId: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of await tablesWithTenantId()) {
    if ((ERASURE_RECORD_TABLES as readonly string[]).includes(table)) continue;
    const row = await env.DB.prepare(`SELECT count(*) AS n FROM "${table}" WHERE tenant_id = ?`)
      .bind(tenantId)
      .first<{ n: number }>();
    counts[table] = row?.n ?? 0;
  }
  const tenant = await env.DB.prepare("SELECT count(*) AS n FROM tenants WHERE id = ?")
    .bind(tenantId)
    .first<{ n: number }>();
  counts.tenants = tenant?.n ?? 0;
  return counts;
}

/** Every row of the tenant in every table, as text: what must be unchanged for a bystander. */
export async function tenantDump(tenantId: string): Promise<string> {
  const parts: string[] = [];
  for (const table of await tablesWithTenantId()) {
    const { results } = await env.DB.prepare(`SELECT * FROM "${table}" WHERE tenant_id = ? ORDER BY rowid`)
      .bind(tenantId)
      .all();
    parts.push(`${table}: ${JSON.stringify(results)}`);
  }
  const tenant = await env.DB.prepare("SELECT * FROM tenants WHERE id = ?").bind(tenantId).all();
  parts.push(`tenants: ${JSON.stringify(tenant.results)}`);
  return parts.join("\n");
}

export interface CapturedBlob {
  table: string;
  recordId: string;
  field: string;
  blob: string;
}

/** Every ciphertext the tenant has in D1, raw, with where it lived (its AAD's record and field). */
export async function captureCiphertexts(tenantId: string): Promise<CapturedBlob[]> {
  const captured: CapturedBlob[] = [];
  for (const source of SEALED_SOURCES) {
    const { results } = await env.DB.prepare(
      `SELECT * FROM ${source.table} WHERE tenant_id = ? AND dek_version IS NOT NULL`,
    )
      .bind(tenantId)
      .all<Record<string, string | number | null>>();
    for (const row of results) {
      for (const [field, blob] of Object.entries(blobsOf(source, row))) {
        captured.push({ table: source.table, recordId: source.recordId(row), field, blob });
      }
    }
  }
  return captured;
}

export interface ErasableTenant extends SealedTenant {
  /** A key with a rate limit that has been verified, so its KeyLimiter holds counters. */
  limitedKey: { id: string; key: string };
  /** A wizard started through the API and recorded as committed. */
  wizardId: string;
}

/**
 * A tenant with rows in every tenant table: the sealed tables through the real routes and sealing functions
 * (test/vault/dek-rotation-fixtures.ts), the rest inserted as the jobs that own them write them, an audit
 * horizon moved by the real retention function, and state in a KeyLimiter, a WizardSession and its AuditChain.
 */
export async function erasableTenant(name: string): Promise<ErasableTenant> {
  const sealed = await sealedTenant(name, 2);
  const { tenant } = sealed;
  const limited = await createKey(tenant, { name: "limited", ratelimit: { limit: 100, window_ms: 60_000 } });
  const verified = await callJson<{ valid: boolean }>("POST", "/api/v1/keys/verify", {
    key: tenant.adminKey,
    body: { key: limited.key },
  });
  expect(verified.body.valid).toBe(true);
  const wizard = await callJson<{ id: string }>("POST", "/api/v1/wizard", { key: tenant.adminKey });
  expect(wizard.status).toBe(201);

  const db = database(env.DB);
  const now = Date.now();
  const alertId = newId("alt");
  await db.batch([
    db
      .insert(usageCounts)
      .values({ tenantId: tenant.id, keyId: limited.id, bucket: "hour", start: now, valid: 1 }),
    db.insert(keyOrigins).values({
      tenantId: tenant.id,
      keyId: limited.id,
      kind: "country",
      value: "DE",
      firstSeenAt: now,
      lastSeenAt: now,
    }),
    db.insert(keyBaselines).values({
      tenantId: tenant.id,
      keyId: limited.id,
      hourOfWeek: 1,
      samples: 1,
      volumeMean: 1,
      volumeVar: 0,
      failureMean: 0,
      failureVar: 0,
      lastHour: now,
    }),
    db.insert(events).values({
      id: newId("evt"),
      tenantId: tenant.id,
      kind: EVENT_KINDS[0],
      severity: "info",
      subjectType: "key",
      subjectId: limited.id,
      dedupeKey: newId("dedupe"),
      detail: {},
      at: now,
    }),
    db.insert(alertRules).values({
      id: newId("rule"),
      tenantId: tenant.id,
      name: "erasure rule",
      kind: RULE_KINDS[0],
      settings: {},
      channelIds: [sealed.channel.id],
      createdAt: now,
    }),
    db.insert(alerts).values({
      id: alertId,
      tenantId: tenant.id,
      ruleId: "default:expiry_warning",
      kind: RULE_KINDS[0],
      severity: "warning",
      state: "firing",
      subjectType: "key",
      subjectId: limited.id,
      fingerprint: newId("fp"),
      summary: "a key expires soon",
      detail: {},
      firedAt: now,
      lastSeenAt: now,
    }),
    db.insert(alertDeliveries).values({
      id: newId("dlv"),
      tenantId: tenant.id,
      alertId,
      channelId: sealed.channel.id,
      transition: "fired",
      state: "delivered",
      createdAt: now,
      updatedAt: now,
    }),
    db.insert(rotationRuns).values({
      id: newId("run"),
      tenantId: tenant.id,
      subjectType: "key",
      subjectId: limited.id,
      trigger: "manual",
      state: "completed",
      step: "finish",
      startedAt: now,
      updatedAt: now,
    }),
    db.insert(securityPolicies).values({
      tenantId: tenant.id,
      securityLevel: "basic",
      environment: "development",
      rotationPolicy: "never",
      ipAllowlist: [],
      countryAllowlist: [],
      require2fa: false,
      compliance: [],
      wizardId: wizard.body.id,
      updatedAt: now,
    }),
    db.insert(wizardCommits).values({
      wizardId: wizard.body.id,
      tenantId: tenant.id,
      summary: {},
      committedAt: now,
    }),
  ]);
  // The usage recorder writes after the response: write now what the requests above tallied.
  await flushUsage(env.DB);
  // A real horizon: the retention function prunes the tenant's three oldest audit rows.
  expect(await pruneTenantAudit(env, tenant.id, "basic", now + 400 * DAY, 3)).toBe(3);

  const counts = await tenantRowCounts(tenant.id);
  for (const [table, n] of Object.entries(counts))
    expect(n, `${table} holds a row of the tenant`).toBeGreaterThan(0);
  return { ...sealed, limitedKey: { id: limited.id, key: limited.key }, wizardId: wizard.body.id };
}

/** What the tenant's Durable Objects hold: the limiter's counters, the wizard's state, the chain head. */
export async function objectStorage(tenant: ErasableTenant) {
  const entries = (stub: DurableObjectStub) =>
    runInDurableObject(stub, async (_instance, state) => [...state.storage.kv.list()].length);
  return {
    keyLimiter: await entries(env.KEY_LIMITER.get(env.KEY_LIMITER.idFromName(tenant.limitedKey.id))),
    wizard: await entries(env.WIZARD_SESSION.get(env.WIZARD_SESSION.idFromString(tenant.wizardId))),
    auditChain: await runInDurableObject(
      env.AUDIT_CHAIN.get(env.AUDIT_CHAIN.idFromName(tenant.tenant.id)),
      async (_instance, state) => (state.storage.kv.get(CHAIN_HEAD_KEY) === undefined ? 0 : 1),
    ),
  };
}

export const erasurePath = (tenantId: string) => `/api/v1/tenants/${tenantId}`;

/** DELETE /api/v1/tenants/{id} as the operator. */
export function requestErasureCall(tenantId: string) {
  return callJson<{ erasure_id: string; tenant_id: string; state: string; requested_at: string }>(
    "DELETE",
    erasurePath(tenantId),
    { key: env.BOOTSTRAP_TOKEN, headers: { "cf-connecting-ip": freshClientIp() } },
  );
}

export interface Receipt {
  erasure_id: string;
  tenant_id: string;
  state: string;
  step: string;
  requested_at: string;
  dek_destroyed_at: string | null;
  rows_deleted_at: string | null;
  completed_at: string | null;
  data_keys_destroyed: number;
  rows_deleted: Record<string, number>;
  objects_cleared: Record<string, number>;
  audit_chain_head: { seq: number; mac: string } | null;
  receipt_mac: string | null;
  receipt_intact: boolean | null;
  receipt_jws: string | null;
}

/** GET /api/v1/tenants/{id}/erasure as the operator. */
export function receiptCall(tenantId: string) {
  return callJson<Receipt>("GET", `${erasurePath(tenantId)}/erasure`, { key: env.BOOTSTRAP_TOKEN });
}

export interface ErasureRun {
  /** Rows per chunk, for every table (small values cross many chunk boundaries). */
  chunk?: number;
  /** Faults to inject (mocked step errors). */
  modify?: (m: Modifier) => Promise<void>;
  /** Work a crashed earlier run committed before the instance starts (domain functions called directly). */
  before?: (params: ErasureParams) => Promise<void>;
  /** Runs while the Workflow waits to settle (after its first deletion phase); the wait ends after it. */
  whileSettling?: (params: ErasureParams) => Promise<void>;
}

/**
 * Records the erasure as the DELETE route does, introspects its Workflow instance (the id is the erasure
 * id), starts it as startErasure does, and waits for it to end. The settle wait is ended by its event, at once or after
 * `whileSettling`.
 */
export async function eraseThroughWorkflow(
  tenantId: string,
  run: ErasureRun = {},
): Promise<{ output: unknown; erasureId: string }> {
  const row = await requestErasure(env, tenantId, "req-test", Date.now());
  const params = { ...erasureParams(row), ...(run.chunk === undefined ? {} : { chunk: run.chunk }) };
  const instance = await introspectWorkflowInstance(env.TENANT_ERASURE, row.id);
  try {
    await instance.modify(async (m) => {
      await m.disableRetryDelays();
      if (!run.whileSettling) await m.mockEvent({ type: ERASURE_SETTLED, payload: {} });
      await run.modify?.(m);
    });
    await run.before?.(params);
    // As startErasure does, with the chunk size of the test.
    await env.TENANT_ERASURE.create({ id: row.id, params });
    if (run.whileSettling) {
      await instance.waitForStepResult({ name: "settling" });
      await run.whileSettling(params);
      await (await env.TENANT_ERASURE.get(row.id)).sendEvent({ type: ERASURE_SETTLED, payload: {} });
    }
    await instance.waitForStatus("complete");
    return { output: await instance.getOutput(), erasureId: row.id };
  } finally {
    await instance.dispose();
  }
}
