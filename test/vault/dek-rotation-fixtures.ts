/**
 * Shared pieces of the DEK rotation tests: a tenant with fields in every sealed table, written through the
 * real routes and sealing functions; every sealed field of a tenant opened through the registry; runs claimed
 * and Workflows driven directly (never through the cron, so only the tests that tick touch every tenant).
 */
import { introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { openValues, sealValues } from "../../src/credentials/sealed-fields";
import { newId } from "../../src/crypto/random";
import { database } from "../../src/db/client";
import { alertChannels } from "../../src/db/schema";
import { OVERLAP_ENDED } from "../../src/lifecycle/rotation-params";
import { claimRunStatement, rotationRunId } from "../../src/lifecycle/rotation-runs";
import type { DekRotationParams } from "../../src/vault/dek-rotation";
import { unseal } from "../../src/vault/keyring";
import { blobsOf, SEALED_SOURCES, type SealedRow } from "../../src/vault/sealed-records";
import { WIZARD_MAX_AGE_MS } from "../../src/wizard/wizard-session";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { enrollTotp } from "../helpers/totp";
import { storeCredential, stripeTestKey } from "../lifecycle/credential-rotation-fixtures";
import { deliveryKeyPair, handOff, registerEndpoint } from "../lifecycle/handoff-fixtures";

/** The logical clock of the runs these tests start: far from any real time. */
export const T0 = Date.UTC(2032, 0, 1);

type Modifier = Parameters<
  Parameters<Awaited<ReturnType<typeof introspectWorkflowInstance>>["modify"]>[0]
>[0];

export interface SealedTenant {
  tenant: TestTenant;
  credentials: { id: string; value: string }[];
  /** The external rotation endpoint's signing secret of credentials[0]. */
  endpointSecret: string;
  pickup: { keyId: string; plaintext: string };
  deliverySecret: string;
  channel: { id: string; secrets: Record<string, string> };
  totp: { keyId: string; secret: Uint8Array };
}

/**
 * A tenant with fields in every SealedSource: credential versions, an external rotation's signing secret, a
 * pickup handoff (made before the delivery endpoint, which would turn it into a JWE), the delivery endpoint's
 * signing secret, an alert channel sealed as the wizard commit seals it, and a TOTP enrollment (on a second
 * admin key, so the main admin key needs no step-up).
 */
export async function sealedTenant(name: string, credentials = 3): Promise<SealedTenant> {
  const tenant = await createTenant(name);
  const stored: { id: string; value: string }[] = [];
  for (let i = 0; i < credentials; i++) {
    const value = stripeTestKey();
    stored.push({ id: await storeCredential(tenant, "stripe", { secret_key: value }), value });
  }
  const external = await callJson<{ signing_secret: string }>(
    "PUT",
    `/api/v1/credentials/${stored[0]?.id}/rotation`,
    {
      key: tenant.adminKey,
      body: { method: "external", policy_days: 30, endpoint_url: "https://rotate.example.com/stripe" },
    },
  );
  expect(external.status).toBe(200);
  const pickup = await handOff(tenant);
  expect(pickup.method).toBe("pickup");
  const endpoint = await registerEndpoint(tenant, (await deliveryKeyPair()).publicJwk);
  const channel = await insertChannel(tenant.id);
  const second = await createKey(tenant, { name: "second admin", scopes: ["admin", "wizard"] });
  const { secret } = await enrollTotp(second.key);
  return {
    tenant,
    credentials: stored,
    endpointSecret: external.body.signing_secret,
    pickup: { keyId: pickup.keyId, plaintext: pickup.plaintext },
    deliverySecret: endpoint.signing_secret,
    channel,
    totp: { keyId: second.id, secret },
  };
}

/** An alert channel as the wizard commit stores it: its secrets sealed by `sealValues` under the channel id. */
export async function insertChannel(tenantId: string) {
  const db = database(env.DB);
  const id = newId("chan");
  const secrets = { webhook_url: `https://hooks.slack.com/services/T0/B0/${stripeTestKey()}` };
  const { sealed, dekVersion, countEncryptions } = await sealValues(
    await unseal(env, db),
    db,
    { tenantId, recordId: id },
    secrets,
  );
  await db.batch([
    db.insert(alertChannels).values({
      id,
      tenantId,
      kind: "slack",
      name: `alerts ${id}`,
      config: {},
      sealedSecrets: sealed,
      dekVersion,
      createdAt: Date.now(),
    }),
    countEncryptions,
  ]);
  return { id, secrets };
}

export interface OpenedRow {
  dekVersion: number;
  values: Record<string, string>;
}

/** Every sealed row of the tenant, by `table:key`, opened through the registry with the DEK its blobs name. */
export async function sealedPlaintexts(tenantId: string): Promise<Map<string, OpenedRow>> {
  const db = database(env.DB);
  const keys = await unseal(env, db);
  const opened = new Map<string, OpenedRow>();
  for (const source of SEALED_SOURCES) {
    const rows = await env.DB.prepare(
      `SELECT * FROM ${source.table} WHERE tenant_id = ? AND dek_version IS NOT NULL`,
    )
      .bind(tenantId)
      .all<SealedRow>();
    for (const row of rows.results) {
      const key = `${source.table}:${source.keyColumns.map((column) => row[column]).join("/")}`;
      const values = await openValues(
        keys,
        db,
        { tenantId, recordId: source.recordId(row) },
        blobsOf(source, row),
      );
      opened.set(key, { dekVersion: Number(row.dek_version), values });
    }
  }
  return opened;
}

/** How many of the tenant's sealed rows name a DEK older than `version`, over every sealed table. */
export async function rowsBelow(tenantId: string, version: number): Promise<number> {
  let count = 0;
  for (const source of SEALED_SOURCES) {
    const row = await env.DB.prepare(
      `SELECT count(*) AS n FROM ${source.table} WHERE tenant_id = ? AND dek_version < ?`,
    )
      .bind(tenantId, version)
      .first<{ n: number }>();
    count += row?.n ?? 0;
  }
  return count;
}

export async function dataKeysOf(tenantId: string) {
  const rows = await env.DB.prepare(
    `SELECT version, status, encryption_count, next_rotation_at, retire_after, created_at
     FROM data_keys WHERE tenant_id = ? ORDER BY version`,
  )
    .bind(tenantId)
    .all<{
      version: number;
      status: string;
      encryption_count: number;
      next_rotation_at: number | null;
      retire_after: number | null;
      created_at: number;
    }>();
  return rows.results;
}

/** Claims a DEK rotation as the cron does (the run row, `next_rotation_at` cleared) and returns its params. */
export async function claimDekRun(tenantId: string, now = T0, chunk?: number): Promise<DekRotationParams> {
  const params: DekRotationParams = {
    runId: rotationRunId(tenantId, now),
    tenantId,
    subjectType: "data_key",
    subjectId: tenantId,
    now,
    ...(chunk === undefined ? {} : { chunk }),
  };
  const db = database(env.DB);
  const claim = claimRunStatement(db, { ...params, id: params.runId, trigger: "schedule" }).toSQL();
  await env.DB.batch([
    env.DB.prepare(claim.sql).bind(...claim.params),
    env.DB.prepare(
      "UPDATE data_keys SET next_rotation_at = NULL WHERE tenant_id = ? AND status = 'active'",
    ).bind(tenantId),
  ]);
  return params;
}

/**
 * Starts the run's Workflow and waits for it to end: retry delays off, and the retire wait ended by the event
 * the cron sends once `retire_after` has passed.
 */
export async function runDekWorkflow(
  params: DekRotationParams,
  modify: (m: Modifier) => Promise<void> = async () => {},
  during: () => Promise<void> = async () => {},
): Promise<unknown> {
  const instance = await introspectWorkflowInstance(env.DEK_ROTATION, params.runId);
  try {
    await instance.modify(async (m) => {
      await m.disableRetryDelays();
      await m.mockEvent({ type: OVERLAP_ENDED, payload: { now: params.now + WIZARD_MAX_AGE_MS } });
      await modify(m);
    });
    await env.DEK_ROTATION.create({ id: params.runId, params });
    await Promise.all([instance.waitForStatus("complete"), during()]);
    return await instance.getOutput();
  } finally {
    await instance.dispose();
  }
}

/** The run rows of the tenant's DEK rotations. */
export async function dekRuns(tenantId: string) {
  const rows = await env.DB.prepare(
    `SELECT id, state, step, successor_id, overlap_ends_at, error FROM rotation_runs
     WHERE subject_type = 'data_key' AND subject_id = ? ORDER BY started_at, id`,
  )
    .bind(tenantId)
    .all<{
      id: string;
      state: string;
      step: string;
      successor_id: string | null;
      overlap_ends_at: number | null;
      error: string | null;
    }>();
  return rows.results;
}

/** The tenant's audit actions about its data keys, in chain order. */
export async function dekAudit(tenantId: string) {
  const rows = await env.DB.prepare(
    "SELECT action, detail FROM audit_log WHERE tenant_id = ? AND target_type = 'data_key' ORDER BY seq",
  )
    .bind(tenantId)
    .all<{ action: string; detail: string }>();
  return rows.results.map((row) => ({ action: row.action, detail: JSON.parse(row.detail) }));
}
