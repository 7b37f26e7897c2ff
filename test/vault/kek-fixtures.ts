/**
 * Shared pieces of the KEK re-wrap tests (test/vault/kek-rewrap*.test.ts, vault-kek*.test.ts).
 *
 * These files run in the vitest projects `kek-master-2` and `kek-vault` (vitest.config.ts), whose bindings
 * are the deployment AFTER the switch: the Workflows and Durable Objects (audit chains) run with them. The
 * deployment BEFORE the switch is the same env with settings overridden (`envWith`), and requests are sent
 * to it through `worker.fetch(request, env, ctx)`. Nothing here reads a key back from a shortcut: requests go
 * through the real worker, keys through the real keyring, D1 and Workflows are real.
 */
import { createExecutionContext, introspectWorkflowInstance, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterAll, beforeAll, expect } from "vitest";
import { DEK_USE, type UnwrapAs } from "../../src/crypto/envelope";
import { database } from "../../src/db/client";
import type { Bindings } from "../../src/env";
import worker from "../../src/index";
import { runScheduledJobs } from "../../src/jobs/scheduled";
import { claimRunStatement, rotationRunId } from "../../src/lifecycle/rotation-runs";
import { dekBinding } from "../../src/vault/data-keys";
import type { KekProvider } from "../../src/vault/kek-ref";
import type { KekRewrapParams } from "../../src/vault/kek-rewrap";
import { type Unsealed, unseal } from "../../src/vault/keyring";
import { PURPOSE_KEY, purposeKey, systemKeyBinding } from "../../src/vault/system-keys";
import type { WrapBinding } from "../../src/vault/wrap-binding";
import { stripeKey } from "../credentials/samples";
import { BASE, freshClientIp, type TestTenant } from "../helpers/api";
import { envWith } from "../helpers/env";
import { network } from "../setup/network";
import { createTransitStandIn, type TransitStandIn } from "./transit-stand-in";

/** The purposes of the system keys the worker uses (src/vault/system-keys.ts callers). */
export { envWith };

export const SYSTEM_PURPOSES = ["audit-chain", "session-jwt"] as const;

/** The deployment before any switch: MASTER_KEY alone, KEK_VERSION 1, no Vault. */
export const MASTER_1_ONLY = envWith({
  KEK_VERSION: "1",
  KEK_PROVIDER: undefined,
  MASTER_KEY_2: undefined,
  VAULT_ADDR: undefined,
  VAULT_TOKEN: undefined,
});

export interface Sent {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

/** One request through the worker with `workerEnv` as its configuration, from its own client address. */
export async function send(
  workerEnv: Bindings,
  method: string,
  path: string,
  options: { key?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Sent> {
  const headers = new Headers(options.headers);
  if (!headers.has("cf-connecting-ip")) headers.set("cf-connecting-ip", freshClientIp());
  if (options.key) headers.set("authorization", `Bearer ${options.key}`);
  if (options.body !== undefined) headers.set("content-type", "application/json");
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${BASE}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    }),
    // Usage counters are written at once instead of after the default 1 s buffer the context would wait for.
    { ...workerEnv, USAGE_FLUSH_MS: "0" },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  const text = await response.text();
  return {
    status: response.status,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
    headers: response.headers,
  };
}

function expectStatus(sent: Sent, status: number, what: string): void {
  expect(sent.status, `${what}: ${JSON.stringify(sent.body)}`).toBe(status);
}

export async function createTenantWith(workerEnv: Bindings, name: string): Promise<TestTenant> {
  const sent = await send(workerEnv, "POST", "/api/v1/tenants", { key: env.BOOTSTRAP_TOKEN, body: { name } });
  expectStatus(sent, 201, `create tenant ${name}`);
  const body = sent.body as { tenant: { id: string }; admin_key: string; admin_key_details: { id: string } };
  return { id: body.tenant.id, adminKey: body.admin_key, adminKeyId: body.admin_key_details.id };
}

export interface StoredCredential {
  tenant: TestTenant;
  id: string;
  fields: Record<string, string>;
}

export async function storeWith(workerEnv: Bindings, tenant: TestTenant): Promise<StoredCredential> {
  const fields = { secret_key: stripeKey() };
  const sent = await send(workerEnv, "POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service: "stripe", environment: "development", fields },
  });
  expectStatus(sent, 201, "store a credential");
  return { tenant, id: sent.body.id as string, fields };
}

export async function revealWith(workerEnv: Bindings, credential: StoredCredential): Promise<Sent> {
  return send(workerEnv, "POST", `/api/v1/credentials/${credential.id}/reveal`, {
    key: credential.tenant.adminKey,
    body: {},
  });
}

/** Every credential reveals, under `workerEnv`, to exactly the fields it was stored with. */
export async function expectAllReveal(workerEnv: Bindings, credentials: readonly StoredCredential[]) {
  for (const credential of credentials) {
    const revealed = await revealWith(workerEnv, credential);
    expectStatus(revealed, 200, `reveal ${credential.id}`);
    expect(revealed.body.fields).toEqual(credential.fields);
  }
}

export async function createKeyWith(workerEnv: Bindings, tenant: TestTenant): Promise<string> {
  const sent = await send(workerEnv, "POST", "/api/v1/keys", {
    key: tenant.adminKey,
    body: { name: "kek test" },
  });
  expectStatus(sent, 201, "create a key");
  return sent.body.key as string;
}

export async function verifyWith(workerEnv: Bindings, tenant: TestTenant, key: string): Promise<Sent> {
  return send(workerEnv, "POST", "/api/v1/keys/verify", { key: tenant.adminKey, body: { key } });
}

/**
 * The system keys created under `workerEnv` before anything else uses them. The worker creates a purpose key
 * on first use, and the audit chain's is first used inside the AuditChain Durable Object, which runs with
 * the project's (switched) configuration: created here, they are wrapped as the old deployment wrapped them.
 */
export async function createSystemKeysWith(workerEnv: Bindings): Promise<void> {
  const db = database(env.DB);
  const keys = await unseal(workerEnv, db);
  for (const purpose of SYSTEM_PURPOSES) await purposeKey(keys, db, purpose);
}

export interface WrappedKeyRow {
  kind: "data" | "system";
  id: string;
  status: string | null;
  kek_provider: KekProvider;
  kek_version: number;
  wrapped_key: string;
}

/** Every data key and system key as stored, in a fixed order. */
export async function wrappedKeys(): Promise<WrappedKeyRow[]> {
  const { results } = await env.DB.prepare(
    `SELECT 'data' AS kind, tenant_id || ':' || version AS id, status, kek_provider, kek_version, wrapped_key
       FROM data_keys
     UNION ALL
     SELECT 'system', purpose, NULL, kek_provider, kek_version, wrapped_key FROM system_keys
     ORDER BY kind, id`,
  ).all<WrappedKeyRow>();
  return results;
}

/** How many data keys and system keys each KEK wraps, e.g. `{ "master:1": 7 }`. */
export async function keksInUse(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const row of await wrappedKeys()) {
    const name = `${row.kek_provider}:${row.kek_version}`;
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

async function digest(key: CryptoKey): Promise<string> {
  const raw = await crypto.subtle.exportKey("raw", key);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", raw as ArrayBuffer));
  return Array.from(hash, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Each key's material (a SHA-256 of it, so no key is held in test output), unwrapped from its current
 * wrapping under `keys`. Equal before and after a re-wrap: the keys were wrapped again, not replaced.
 */
export async function keyMaterial(keys: Unsealed): Promise<Record<string, string>> {
  const material: Record<string, string> = {};
  for (const row of await wrappedKeys()) {
    const stored = {
      kek: { provider: row.kek_provider, version: row.kek_version },
      wrapped: row.wrapped_key,
    };
    const [tenantId = "", version = ""] = row.id.split(":");
    const [binding, as]: [WrapBinding, UnwrapAs] =
      row.kind === "data"
        ? [dekBinding(tenantId, Number(version)), DEK_USE]
        : [systemKeyBinding(row.id), PURPOSE_KEY];
    material[`${row.kind}:${row.id}`] = await digest(
      await keys.keks.unwrap(stored, binding, { ...as, extractable: true }),
    );
  }
  return material;
}

/** Claims the deployment's re-wrap run as the cron does and returns the Workflow's params. */
export async function claimRewrap(now: number, chunk?: number): Promise<KekRewrapParams> {
  const params: KekRewrapParams = {
    runId: rotationRunId("keyring", now),
    tenantId: "system",
    subjectType: "keyring",
    subjectId: "keyring",
    now,
    ...(chunk === undefined ? {} : { chunk }),
  };
  await claimRunStatement(database(env.DB), { ...params, id: params.runId, trigger: "schedule" });
  return params;
}

/** The re-wrap runs as stored, oldest first, without their ids and times. */
export async function rewrapRuns() {
  const { results } = await env.DB.prepare(
    `SELECT state, step, error FROM rotation_runs WHERE subject_type = 'keyring' ORDER BY started_at`,
  ).all<{ state: string; step: string; error: string | null }>();
  return results;
}

/** One cron tick at `now` (every scheduled job, as deployed), and the re-wrap Workflow it starts, run to its end. */
export async function cronRewrap(now: number): Promise<unknown> {
  // The run id is the tick's time: the instance is watched before the cron creates it.
  await using instance = await introspectWorkflowInstance(env.KEK_REWRAP, rotationRunId("keyring", now));
  await runScheduledJobs({ scheduledTime: now }, env);
  await instance.waitForStatus("complete");
  return instance.getOutput();
}

/**
 * A Transit stand-in answering at `workerEnv`'s VAULT_ADDR with its token, for the file that calls this at
 * its top level. Returns a getter: the stand-in exists once the file's `beforeAll` has run.
 */
export function useTransitStandIn(workerEnv: Bindings): () => TransitStandIn {
  let vault: TransitStandIn | undefined;
  beforeAll(() => {
    network.enable();
    vault = createTransitStandIn({
      addr: workerEnv.VAULT_ADDR as string,
      token: workerEnv.VAULT_TOKEN as string,
    });
    network.use(...vault.handlers);
  });
  afterAll(() => network.disable());
  return () => {
    if (!vault) throw new Error("the Transit stand-in starts in beforeAll");
    return vault;
  };
}
