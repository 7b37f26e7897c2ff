import { env, exports } from "cloudflare:workers";

export const BASE = "https://keywarden.test";

export interface CallOptions {
  key?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** A random start in 100.64.0.0/10, so test files (which may share the limiters) do not walk the same addresses. */
let clientCounter = Math.floor(Math.random() * 2 ** 22);

/**
 * Each request is its own client unless the test names an address: the per-client budgets
 * (wrangler.toml AUTH_FAILURE_LIMITER and AUTH_ATTEMPT_LIMITER) must never leak between tests.
 */
export function freshClientIp(): string {
  clientCounter = (clientCounter + 1) % 2 ** 22;
  return `100.${64 + (clientCounter >> 16)}.${(clientCounter >> 8) & 255}.${clientCounter & 255}`;
}

export async function call(method: string, path: string, options: CallOptions = {}): Promise<Response> {
  const headers = new Headers(options.headers);
  if (!headers.has("cf-connecting-ip")) headers.set("cf-connecting-ip", freshClientIp());
  if (options.key) headers.set("authorization", `Bearer ${options.key}`);
  if (options.body !== undefined && !headers.has("content-type"))
    headers.set("content-type", "application/json");
  const body =
    options.body === undefined
      ? undefined
      : typeof options.body === "string"
        ? options.body
        : JSON.stringify(options.body);
  return exports.default.fetch(new Request(`${BASE}${path}`, { method, headers, body }));
}

export async function callJson<T = Record<string, unknown>>(
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<{ status: number; body: T; headers: Headers }> {
  const response = await call(method, path, options);
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : null) as T, headers: response.headers };
}

export interface TestTenant {
  id: string;
  adminKey: string;
  adminKeyId: string;
}

let tenantCounter = 0;

export async function createTenant(name = `Tenant ${++tenantCounter}`): Promise<TestTenant> {
  const { status, body } = await callJson<{
    tenant: { id: string };
    admin_key: string;
    admin_key_details: { id: string };
  }>("POST", "/api/v1/tenants", { key: env.BOOTSTRAP_TOKEN, body: { name } });
  if (status !== 201) throw new Error(`tenant creation failed: ${status} ${JSON.stringify(body)}`);
  return { id: body.tenant.id, adminKey: body.admin_key, adminKeyId: body.admin_key_details.id };
}

export interface CreatedKey {
  id: string;
  key: string;
  [field: string]: unknown;
}

export async function createKey(tenant: TestTenant, body: Record<string, unknown> = {}): Promise<CreatedKey> {
  const response = await callJson<CreatedKey>("POST", "/api/v1/keys", {
    key: tenant.adminKey,
    body: { name: "test key", ...body },
  });
  if (response.status !== 201)
    throw new Error(`key creation failed: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body;
}

export async function verify(
  tenant: TestTenant,
  key: string,
  extra: Record<string, unknown> = {},
  headers = {},
) {
  const response = await callJson<{ valid: boolean; code: string; [field: string]: unknown }>(
    "POST",
    "/api/v1/keys/verify",
    { key: tenant.adminKey, body: { key, ...extra }, headers },
  );
  if (response.status !== 200)
    throw new Error(`verify failed: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body;
}

/** The tenant's admin key as the actor of a commit a test drives directly (as a route would). */
export function adminActor(tenant: TestTenant, requestId: string) {
  return { tenantId: tenant.id, actorType: "key" as const, actorId: tenant.adminKeyId, requestId };
}
