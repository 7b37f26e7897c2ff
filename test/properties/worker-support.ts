/** Shared plumbing for the property tests that drive the real worker. */
import { runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import { ERROR_STATUS } from "../../src/errors";
import type { WizardSession } from "../../src/wizard/wizard-session";
import { BASE, createKey, createTenant, type TestTenant } from "../helpers/api";
import { installWriteWatch, WATCH_TABLE, WATCHED_TABLES, type WatchedTable } from "../setup/write-watch";

export type Body = string | Uint8Array | ReadableStream<Uint8Array> | undefined;

let ipCounter = 0;

/**
 * A fresh client address per request. The per-IP failed-auth limiter (30/min) would otherwise
 * turn the later runs of a property into 429s; each generated request stands for a new client.
 */
export function nextClientIp(): string {
  ipCounter += 1;
  return `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter & 255}`;
}

export interface SendOptions {
  body?: Body;
  /** null sends no content-type header at all. */
  contentType?: string | null;
  bearer?: string;
  headers?: Record<string, string>;
}

export async function send(
  method: string,
  path: string,
  options: SendOptions = {},
): Promise<{ status: number; headers: Headers; text: string }> {
  const headers = new Headers(options.headers);
  headers.set("cf-connecting-ip", nextClientIp());
  if (options.bearer) headers.set("authorization", `Bearer ${options.bearer}`);
  const contentType = options.contentType === undefined ? "application/json" : options.contentType;
  if (contentType !== null && options.body !== undefined) headers.set("content-type", contentType);
  const init: RequestInit & { duplex?: "half" } = { method, headers };
  if (options.body instanceof Uint8Array) init.body = new Uint8Array(options.body);
  else if (options.body !== undefined)
    init.body = options.body as string | ReadableStream<Uint8Array<ArrayBuffer>>;
  if (options.body instanceof ReadableStream) init.duplex = "half";
  const response = await exports.default.fetch(new Request(`${BASE}${path}`, init));
  return { status: response.status, headers: response.headers, text: await response.text() };
}

// threat model case 16: 650 mixed + 275 schema-shaped + 25 oversize + 50 wrong-content-type = 1,000
// generated bodies per endpoint.
export const MIXED_RUNS = 650;
export const SHAPED_RUNS = 275;
export const OVERSIZE_RUNS = 25;
export const CONTENT_TYPE_RUNS = 50;
if (MIXED_RUNS + SHAPED_RUNS + OVERSIZE_RUNS + CONTENT_TYPE_RUNS < 1_000) {
  throw new Error("threat model case 16 needs at least 1,000 generated bodies per endpoint");
}

/**
 * The request body as the worker reads it, for the success checks; undefined when it is not JSON
 * text. Request.json() decodes UTF-8 the WHATWG way, which drops one leading BOM, so "\ufeff{…}"
 * is a legal body.
 */
export function parsedRequest(body: Body): unknown {
  try {
    if (typeof body === "string") return JSON.parse(body.replace(/^\ufeff/, ""));
    if (body instanceof Uint8Array) return JSON.parse(new TextDecoder().decode(body));
  } catch {
    // not JSON: only a rejection is legal, and that needs no request
  }
  return undefined;
}

export function byteLength(body: Body): number {
  if (body === undefined) return 0;
  if (typeof body === "string") return new TextEncoder().encode(body).byteLength;
  if (body instanceof Uint8Array) return body.byteLength;
  return Number.NaN;
}

/** Fails loudly on a 429: a rate-limited answer must never count as a pass. */
export function expectNotRateLimited(status: number, context: string): void {
  if (status === 429) {
    throw new Error(`429 from ${context}: the test hit a rate limiter and must be restructured`);
  }
}

/** Every 4xx is RFC 9457 problem+json with a known `code` whose status matches. */
export function expectProblem(response: { status: number; headers: Headers; text: string }): string {
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  const body = JSON.parse(response.text) as { code?: string; status?: number; type?: string; title?: string };
  expect(Object.keys(ERROR_STATUS)).toContain(body.code);
  expect(body.status).toBe(response.status);
  expect(ERROR_STATUS[body.code as keyof typeof ERROR_STATUS]).toBe(response.status);
  expect(typeof body.type).toBe("string");
  expect(typeof body.title).toBe("string");
  return body.code as string;
}

export interface Counts {
  /** Net rows added (inserted minus deleted) to each table since the write watch was installed. */
  tenants: number;
  dataKeys: number;
  apiKeys: number;
  auditLog: number;
  keyring: number;
  credentials: number;
  credentialVersions: number;
  alertChannels: number;
  alertRules: number;
  securityPolicies: number;
  wizardCommits: number;
  /** Changes whenever any api_keys row is inserted, updated (last_used_at aside), revoked, rotated or deleted. */
  apiKeysFingerprint: string;
  /** Changes whenever any credential or credential version is written (renamed, re-versioned, deleted, restored, tested). */
  credentialsFingerprint: string;
  /** Changes whenever anything is encrypted (the per-DEK encryption counter) or a DEK is added or retired. */
  dataKeysFingerprint: string;
  /** Changes whenever a channel, rule or policy row is written. */
  monitoringFingerprint: string;
  /** Every insert, update and delete counter of every watched table (test/setup/write-watch.ts). */
  writes: string;
  /**
   * JSON of every mutable column of the target row (null without a target): an api key, or a
   * credential together with every stored version of it (sealed and display fields included).
   */
  target: string | null;
}

type WriteCounters = Record<WatchedTable, [inserted: number, updated: number, deleted: number]>;

/**
 * What a request may have written, in a single query: the write watch's counters for every table a
 * request can write (usage_counts and key_origins aside: authenticating touches them off the
 * response path) and (if given) one key's or one credential's full state.
 */
export async function counts(targetId: string | null = null): Promise<Counts> {
  await installWriteWatch();
  const row = await env.DB.prepare(
    `SELECT
       COALESCE(
         (SELECT json_array(name, scopes, enabled, revoked_at, expires_at, ip_allowlist, country_allowlist,
                            ratelimit_limit, ratelimit_window_ms, usage_limit, refill_amount, refill_interval_ms,
                            limits_version, metadata, rotated_to_id, rotated_from_id, updated_at, hash, start, last4)
            FROM api_keys WHERE id = ?1),
         (SELECT json_array(name, service_id, environment, security_level, current_version, status, deleted_at,
                            last_test_status, last_test_reason, last_tested_at, provider_expires_at,
                            provider_account, updated_at,
                            (SELECT json_group_array(json_array(version, sealed_fields, display_fields, created_by))
                               FROM credential_versions WHERE credential_id = ?1))
            FROM credentials WHERE id = ?1)
       ) AS target,
       (SELECT json_group_object(tbl, json_array(inserted, updated, deleted)) FROM ${WATCH_TABLE}) AS writes`,
  )
    .bind(targetId)
    .first<{ target: string | null; writes: string }>();
  if (!row) throw new Error("count query returned nothing");
  const writes = JSON.parse(row.writes) as WriteCounters;
  const net = (table: WatchedTable) => writes[table][0] - writes[table][2];
  const fingerprint = (...tables: WatchedTable[]) => tables.map((table) => writes[table].join(".")).join(":");
  return {
    tenants: net("tenants"),
    dataKeys: net("data_keys"),
    apiKeys: net("api_keys"),
    auditLog: net("audit_log"),
    keyring: net("keyring"),
    credentials: net("credentials"),
    credentialVersions: net("credential_versions"),
    alertChannels: net("alert_channels"),
    alertRules: net("alert_rules"),
    securityPolicies: net("security_policies"),
    wizardCommits: net("wizard_commits"),
    apiKeysFingerprint: fingerprint("api_keys"),
    credentialsFingerprint: fingerprint("credentials", "credential_versions"),
    dataKeysFingerprint: fingerprint("data_keys"),
    monitoringFingerprint: fingerprint("alert_channels", "alert_rules", "security_policies"),
    writes: JSON.stringify(WATCHED_TABLES.map((table) => [table, ...writes[table]])),
    target: row.target,
  };
}

export function delta(before: Counts, after: Counts) {
  return {
    tenants: after.tenants - before.tenants,
    dataKeys: after.dataKeys - before.dataKeys,
    apiKeys: after.apiKeys - before.apiKeys,
    auditLog: after.auditLog - before.auditLog,
    keyring: after.keyring - before.keyring,
    credentials: after.credentials - before.credentials,
    credentialVersions: after.credentialVersions - before.credentialVersions,
    alertChannels: after.alertChannels - before.alertChannels,
    alertRules: after.alertRules - before.alertRules,
    securityPolicies: after.securityPolicies - before.securityPolicies,
    wizardCommits: after.wizardCommits - before.wizardCommits,
  };
}

export type Delta = ReturnType<typeof delta>;

export const NO_CHANGE: Delta = {
  tenants: 0,
  dataKeys: 0,
  apiKeys: 0,
  auditLog: 0,
  keyring: 0,
  credentials: 0,
  credentialVersions: 0,
  alertChannels: 0,
  alertRules: 0,
  securityPolicies: 0,
  wizardCommits: 0,
};

/** The fingerprints (and target row) a rejected request must leave exactly as they were. */
export function expectUnchanged(before: Counts, after: Counts, context = "a rejected request"): void {
  expect(delta(before, after), `${context} changed row counts`).toEqual(NO_CHANGE);
  expect(after.apiKeysFingerprint, `${context} modified an api_keys row`).toBe(before.apiKeysFingerprint);
  expect(after.credentialsFingerprint, `${context} modified a credentials row`).toBe(
    before.credentialsFingerprint,
  );
  expect(after.dataKeysFingerprint, `${context} encrypted something or touched a data key`).toBe(
    before.dataKeysFingerprint,
  );
  expect(after.monitoringFingerprint, `${context} modified a channel, rule or policy`).toBe(
    before.monitoringFingerprint,
  );
  expect(after.target, `${context} modified the target row`).toBe(before.target);
  expect(after.writes, `${context} wrote to the database`).toBe(before.writes);
}

/**
 * Everything a wizard holds, read straight from its Durable Object in one call (no HTTP request,
 * so no tenant budget): every storage entry (the state GET /api/v1/wizard/{id} answers with, the
 * sealed blobs, the issued-key rows, any commit lease) and the expiry alarm. `tenantId` is checked
 * against the stored state, so a snapshot can never be taken of another tenant's wizard by mistake.
 */
export async function wizardSnapshot(tenantId: string, wizardId: string): Promise<string> {
  const stub = env.WIZARD_SESSION.get(env.WIZARD_SESSION.idFromString(wizardId));
  const snapshot = await runInDurableObject(stub, async (_instance: WizardSession, state) => ({
    storage: Object.fromEntries(state.storage.kv.list()),
    alarm: await state.storage.getAlarm(),
  }));
  expect((snapshot.storage.state as { tenant_id?: string } | undefined)?.tenant_id).toBe(tenantId);
  return JSON.stringify(snapshot);
}

export async function keyRow(id: string): Promise<Record<string, unknown> | null> {
  const row = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?")
    .bind(id)
    .first<Record<string, unknown>>();
  if (!row) return null;
  // last_used_at is touched by the usage recorder off the response path; it is not a mutation.
  const { last_used_at: _ignored, ...rest } = row;
  return rest;
}

export async function tableNames(): Promise<string[]> {
  const { results } = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name != ? ORDER BY name",
  )
    .bind(WATCH_TABLE)
    .all<{ name: string }>();
  return results.map((r) => r.name);
}

/**
 * A tenant with a request budget. The per-tenant limiter allows 600 requests a minute; each
 * property draws from its own tenant and asks for a new one well before that.
 */
export class TenantBudget {
  private tenant: TestTenant | null = null;
  private used = 0;
  /** Bumped whenever this budget itself writes rows (a tenant or a key), so cached counts go stale. */
  generation = 0;

  constructor(
    private readonly label: string,
    private readonly perTenant = 450,
  ) {}

  /** The current tenant, counting `requests` against its budget. */
  async take(requests = 1): Promise<TestTenant> {
    if (!this.tenant || this.used + requests > this.perTenant) {
      this.tenant = await createTenant(`${this.label} ${Date.now()}`);
      this.used = 0;
      this.generation += 1;
    }
    this.used += requests;
    return this.tenant;
  }

  /** The next `take` starts a new tenant (for a target that changes its tenant as a whole, like its policy). */
  renew(): void {
    this.tenant = null;
  }

  /** A fresh key in the current tenant (costs one request of its budget). */
  async newKey(name: string): Promise<{ tenant: TestTenant; id: string; key: string }> {
    const tenant = await this.take(1);
    const created = await createKey(tenant, { name });
    this.generation += 1;
    return { tenant, id: created.id, key: created.key };
  }
}

/** The Object.prototype own keys at import time: any addition is prototype pollution. */
const PROTOTYPE_KEYS = Object.getOwnPropertyNames(Object.prototype).sort();

export function expectNoPrototypePollution(): void {
  expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(PROTOTYPE_KEYS);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.getOwnPropertyNames(Array.prototype)).not.toContain("polluted");
}

export { OUTCOMES, recordOutcome } from "../setup/outcomes";
