import { env, exports } from "cloudflare:workers";

export const BASE = "https://keywarden.test";

export interface CallOptions {
  key?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

export async function call(method: string, path: string, options: CallOptions = {}): Promise<Response> {
  const headers = new Headers(options.headers);
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
