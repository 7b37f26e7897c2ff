/**
 * threat model case 16 for the credential vault and the seed wizard API: the endpoint table entries
 * the shared driver (request-bodies-shared.ts) runs. Each `onSuccess` states exactly what a 2xx may
 * have changed; anything a rejection changes is caught by the driver.
 */
import { expect } from "vitest";
import { findService } from "../../src/catalog";
import { parseKey } from "../../src/crypto/keys";
import { KEPT_VERSIONS } from "../../src/routes/credentials";
import { type RotationPolicy, rotationDays } from "../../src/wizard/security-levels";
import { createCredentialValidArb, VAULT_FIELDS, validateCredentialValidArb } from "./body-arbitraries";
import type { Effect, Endpoint, RunContext } from "./request-bodies-shared";
import { etag, type Target } from "./targets";
import { NO_CHANGE, recordOutcome } from "./worker-support";

/** Field names whose values are secrets in the services the generators use. */
const SECRET_FIELDS = new Set(["secret_key", "webhook_secret", "api_key", "token"]);

/** A stored secret is never echoed in full: responses carry masked values only. */
export function expectNoSecretEcho(text: string, fields: unknown): void {
  if (!fields || typeof fields !== "object") return;
  for (const [name, value] of Object.entries(fields)) {
    if (SECRET_FIELDS.has(name) && typeof value === "string" && value.length >= 12) {
      expect(text.includes(value), `the response echoed the ${name} value`).toBe(false);
    }
  }
}

function targetOf(ctx: RunContext): Target {
  if (!ctx.target) throw new Error("this endpoint needs a target");
  return ctx.target;
}

/** Nothing but the credential tables, the audit log and the encryption counter moved. */
function expectOnlyVaultWritten(effect: Effect, encrypted: boolean): void {
  expect(effect.after.apiKeysFingerprint).toBe(effect.before.apiKeysFingerprint);
  expect(effect.after.monitoringFingerprint).toBe(effect.before.monitoringFingerprint);
  if (encrypted) expect(effect.after.dataKeysFingerprint).not.toBe(effect.before.dataKeysFingerprint);
  else expect(effect.after.dataKeysFingerprint).toBe(effect.before.dataKeysFingerprint);
  expect(effect.outbound, "a vault write called out").toEqual([]);
}

/** A new version is stored, and once more than KEPT_VERSIONS exist the oldest goes in the same batch. */
const versionsAdded = (version: number) => (version > KEPT_VERSIONS ? 0 : 1);

interface CreateRequest {
  service: string;
  environment: string;
  security_level?: string;
  name?: string;
  fields: Record<string, string>;
}

export const VAULT_ENDPOINTS: Endpoint[] = [
  {
    label: "POST /api/v1/credentials",
    method: "POST",
    fields: VAULT_FIELDS.createCredential,
    required: ["service", "environment", "fields"],
    valid: createCredentialValidArb,
    allowed: [201, 400, 413, 415, 422],
    auth: "key",
    target: null,
    path: () => "/api/v1/credentials",
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(201);
      const request = ctx.request as CreateRequest;
      expect(body.id).toMatch(/^cred_/);
      expect(body).toMatchObject({
        service: request.service,
        environment: request.environment,
        security_level: request.security_level ?? "enhanced",
        version: 1,
        status: "active",
      });
      if (request.name !== undefined) expect(body.name).toBe(request.name.trim());
      // Validation refuses unknown fields, so what was stored is exactly what was sent, masked.
      expect(Object.keys(body.fields as object).sort()).toEqual(Object.keys(request.fields).sort());
      expect(effect.headers.get("etag")).toBe(`"${body.id}.r1"`);
      expect(change).toEqual({ ...NO_CHANGE, credentials: 1, credentialVersions: 1, auditLog: 1 });
      expectOnlyVaultWritten(effect, true);
      expectNoSecretEcho(effect.text, request.fields);
      return false;
    },
  },
  {
    label: "PATCH /api/v1/credentials/{id}",
    method: "PATCH",
    fields: VAULT_FIELDS.updateCredential,
    required: [],
    allowed: [200, 400, 413, 415, 422],
    auth: "key",
    target: "credential",
    path: (target) => `/api/v1/credentials/${target?.rowId}`,
    headers: (target) => ({ "if-match": etag(target) }),
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const target = targetOf(ctx);
      const request = ctx.request as { name?: string; fields?: Record<string, string> };
      const version = target.version + (request.fields ? 1 : 0);
      expect(body).toMatchObject({ id: target.rowId, version, status: "active" });
      if (request.name !== undefined) expect(body.name).toBe(request.name.trim());
      // Any accepted PATCH, a rename as much as new values, is a new revision and so a new ETag.
      expect(effect.headers.get("etag")).toBe(`"${target.rowId}.r${target.revision + 1}"`);
      expect(change).toEqual({
        ...NO_CHANGE,
        auditLog: 1,
        credentialVersions: request.fields ? versionsAdded(version) : 0,
      });
      expectOnlyVaultWritten(effect, request.fields !== undefined);
      expectNoSecretEcho(effect.text, request.fields);
      if (request.fields) {
        expect(Object.keys(body.fields as object).sort()).toEqual(Object.keys(request.fields).sort());
        target.plaintext.set(version, request.fields);
        target.display.set(version, body.fields as Record<string, string>);
      }
      target.version = version;
      target.revision += 1;
      return false;
    },
  },
  {
    label: "POST /api/v1/credentials/{id}/reveal",
    method: "POST",
    fields: VAULT_FIELDS.revealCredential,
    required: [],
    allowed: [200, 400, 404, 413, 415, 422],
    auth: "key",
    target: "credential",
    path: (target) => `/api/v1/credentials/${target?.rowId}/reveal`,
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const target = targetOf(ctx);
      const version = (ctx.request as { version?: number }).version ?? target.version;
      // Exactly the plaintext stored as that version, and nothing else.
      expect(body).toEqual({
        id: target.rowId,
        service: "stripe",
        version,
        fields: target.plaintext.get(version),
      });
      expect(effect.headers.get("cache-control")).toBe("no-store");
      // Audited, and nothing else: the credential and its versions are untouched.
      expect(change).toEqual({ ...NO_CHANGE, auditLog: 1 });
      expect(effect.after.target).toBe(effect.before.target);
      expect(effect.after.credentialsFingerprint).toBe(effect.before.credentialsFingerprint);
      expectOnlyVaultWritten(effect, false);
      return false;
    },
  },
  {
    label: "POST /api/v1/credentials/{id}/rollback",
    method: "POST",
    fields: VAULT_FIELDS.rollbackCredential,
    required: ["version"],
    allowed: [200, 400, 404, 413, 415, 422],
    auth: "key",
    target: "credential-3-versions",
    path: (target) => `/api/v1/credentials/${target?.rowId}/rollback`,
    headers: (target) => ({ "if-match": etag(target) }),
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const target = targetOf(ctx);
      const from = (ctx.request as { version: number }).version;
      const version = target.version + 1;
      // The old version's values come back as a new version (masked here exactly as they were).
      expect(target.display.has(from), `rolled back to unknown version ${from}`).toBe(true);
      expect(body).toMatchObject({ id: target.rowId, version, fields: target.display.get(from) });
      expect(effect.headers.get("etag")).toBe(`"${target.rowId}.r${target.revision + 1}"`);
      expect(change).toEqual({ ...NO_CHANGE, auditLog: 1, credentialVersions: versionsAdded(version) });
      expectOnlyVaultWritten(effect, true);
      target.plaintext.set(version, target.plaintext.get(from) as Record<string, string>);
      target.display.set(version, target.display.get(from) as Record<string, string>);
      target.version = version;
      target.revision += 1;
      return false;
    },
  },
  {
    label: "POST /api/wizard/api-keys/validate",
    method: "POST",
    fields: VAULT_FIELDS.validateCredential,
    required: ["service_id", "fields", "environment"],
    valid: validateCredentialValidArb,
    allowed: [200, 400, 413, 415, 422],
    auth: "key",
    target: null,
    network: true,
    path: () => "/api/wizard/api-keys/validate",
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      const request = ctx.request as {
        service_id: string;
        fields: Record<string, string>;
        live_check?: boolean;
      };
      // Never stores anything, whatever the verdict.
      expect(change).toEqual(NO_CHANGE);
      expect(effect.after).toEqual(effect.before);
      expect(body.service_id).toBe(request.service_id);
      const fields = body.fields as { errors: string[] }[];
      const formatOk = (body.errors as string[]).length === 0 && fields.every((f) => f.errors.length === 0);
      const live = body.live_check as { status: string } | null;
      if (request.live_check === true && formatOk) {
        // Only a well-formed set is sent, and only to the service's own fixed host.
        expect(live).not.toBeNull();
        const hosts = findService(request.service_id)?.probe_hosts ?? [];
        expect(effect.outbound).toHaveLength(1);
        expect(hosts).toContain(new URL((effect.outbound[0] as string).split(" ")[1] as string).hostname);
        recordOutcome(`validate live check ${request.service_id}`);
      } else {
        expect(live).toBeNull();
        expect(effect.outbound, "malformed input left the edge").toEqual([]);
      }
      expect(body.valid).toBe(formatOk && (live === null || live.status !== "invalid"));
      expectNoSecretEcho(effect.text, request.fields);
      return false;
    },
  },
  {
    label: "POST /api/wizard/api-keys/generate",
    method: "POST",
    fields: VAULT_FIELDS.generateKeys,
    required: ["service_ids", "security_configuration"],
    allowed: [201, 400, 413, 415, 422],
    auth: "key",
    target: null,
    path: () => "/api/wizard/api-keys/generate",
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(201);
      const request = ctx.request as {
        service_ids: string[];
        security_configuration: {
          environment: string;
          security_level: "basic" | "enhanced" | "enterprise";
          key_rotation_policy: RotationPolicy;
          custom_rotation_days?: number;
        };
      };
      const config = request.security_configuration;
      const services = [...new Set(request.service_ids)];
      const perService = config.security_level === "enterprise" ? 2 : 1;
      const generated = body.generated_keys as {
        service_id: string;
        key: string;
        backup_key: { key: string } | null;
        generated_secrets: Record<string, string>;
        environment: string;
        security_level: string;
        expires_at: string | null;
        next_rotation_at: string | null;
      }[];
      expect(generated.map((g) => g.service_id)).toEqual(services);
      const days = rotationDays(
        config.security_level,
        config.key_rotation_policy,
        config.custom_rotation_days,
      );
      for (const g of generated) {
        expect(parseKey(g.key)).not.toBeNull();
        expect(g.backup_key !== null).toBe(perService === 2);
        if (g.backup_key) expect(parseKey(g.backup_key.key)).not.toBeNull();
        expect(g).toMatchObject({ environment: config.environment, security_level: config.security_level });
        expect(Object.keys(g.generated_secrets)).toEqual(
          findService(g.service_id)?.generatable.map((spec) => spec.field),
        );
        // The rotation policy schedules a rotation; it never makes the key expire.
        expect(g.expires_at).toBeNull();
        if (days === null) expect(g.next_rotation_at).toBeNull();
        else
          expect(
            Math.abs(Date.parse(g.next_rotation_at as string) - (Date.now() + days * 86_400_000)),
          ).toBeLessThan(120_000);
      }
      expect(effect.headers.get("cache-control")).toBe("no-store");
      const made = services.length * perService;
      expect(change).toEqual({ ...NO_CHANGE, apiKeys: made, auditLog: made });
      expect(effect.after.credentialsFingerprint).toBe(effect.before.credentialsFingerprint);
      expect(effect.after.monitoringFingerprint).toBe(effect.before.monitoringFingerprint);
      expect(effect.outbound).toEqual([]);
      return false;
    },
  },
];
