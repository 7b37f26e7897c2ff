/** Shared set-up of the handoff tests: a tenant's key pair and endpoint, and a rotated key handed off. */
import { env } from "cloudflare:workers";
import { exportJWK, generateKeyPair, type JWK } from "jose";
import { expect } from "vitest";
import { commitWithAudit } from "../../src/audit/audit-log";
import { database } from "../../src/db/client";
import { handoffStatements } from "../../src/lifecycle/key-handoff";
import { callJson, createKey, type TestTenant } from "../helpers/api";

export const HOOK_URL = "https://hooks.tenant.example/keywarden/rotated";
const DAY_MS = 86_400_000;

/** A key pair as a tenant would make it for its receiver; the private half never leaves the test. */
export async function deliveryKeyPair(
  alg: "ECDH-ES" | "RSA-OAEP-256" = "ECDH-ES",
  options: { crv?: string; modulusLength?: number } = { crv: "P-256" },
) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { ...options, extractable: true });
  return { publicJwk: await exportJWK(publicKey), privateJwk: await exportJWK(privateKey), privateKey };
}

export interface RegisteredEndpoint {
  url: string;
  public_jwk: Record<string, string>;
  key_fingerprint: string;
  signing_secret: string;
  created_at: string;
  updated_at: string;
}

export async function registerEndpoint(tenant: TestTenant, publicJwk: JWK, url = HOOK_URL) {
  const response = await callJson<RegisteredEndpoint>("PUT", "/api/v1/rotation/delivery-endpoint", {
    key: tenant.adminKey,
    body: { url, public_jwk: publicJwk },
  });
  expect(response.status, JSON.stringify(response.body)).toBe(200);
  return response.body;
}

/**
 * What the rotation Workflow does for a rotated key: a real key (so its plaintext verifies) stands in for the
 * successor, and its handoff is committed in an audited batch as the system actor.
 */
export async function handOff(
  tenant: TestTenant,
  options: { now?: number; expiresAt?: number; keyBody?: Record<string, unknown> } = {},
) {
  const now = options.now ?? Date.now();
  const successor = await createKey(tenant, { name: "rotated successor", ...options.keyBody });
  const runId = `${successor.id}-test`;
  const { statements, method } = await handoffStatements(env, database(env.DB), {
    tenantId: tenant.id,
    keyId: successor.id,
    runId,
    plaintext: successor.key,
    expiresAt: options.expiresAt ?? now + DAY_MS,
    now,
    rotatedFromId: "key_predecessor",
  });
  await commitWithAudit(
    env,
    { tenantId: tenant.id, actorType: "system", actorId: "rotation", requestId: runId },
    statements,
    [],
  );
  return { keyId: successor.id, plaintext: successor.key, method, now };
}

export async function handoffRow(keyId: string) {
  return env.DB.prepare("SELECT * FROM key_handoffs WHERE key_id = ?")
    .bind(keyId)
    .first<{ method: string; payload: string; attempts: number; tenant_id: string }>();
}
