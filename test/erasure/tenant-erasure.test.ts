/**
 * Tenant erasure end to end (docs/erasure.md): a tenant with rows in every tenant table and state in every kind
 * of Durable Object is erased through its Workflow, next to a bystander tenant built the same way.
 */
import { env } from "cloudflare:workers";
import { base64url, compactVerify, importJWK, type JWK } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { verifyAuditChain } from "../../src/audit/audit-log";
import { DEK_USE, decryptText, IntegrityError } from "../../src/crypto/envelope";
import { database } from "../../src/db/client";
import { ERASURE_RECEIPT_TYP } from "../../src/erasure/tenant-erasure";
import { ERASURE_RECORD_TABLES, TENANT_TABLES } from "../../src/erasure/tenant-tables";
import { dekBinding, dekFor, forgetDataKeys } from "../../src/vault/data-keys";
import { unseal } from "../../src/vault/keyring";
import { callJson } from "../helpers/api";
import {
  type CapturedBlob,
  captureCiphertexts,
  type ErasableTenant,
  erasableTenant,
  eraseThroughWorkflow,
  objectStorage,
  type Receipt,
  receiptCall,
  tablesWithTenantId,
  tenantDump,
  tenantRowCounts,
} from "./erasure-fixtures";

let erased: ErasableTenant;
let bystander: ErasableTenant;
let bystanderBefore: string;
let countsBefore: Record<string, number>;
let ciphertexts: CapturedBlob[];
let output: unknown;
let receipt: Receipt;

beforeAll(async () => {
  bystander = await erasableTenant("erasure bystander");
  erased = await erasableTenant("Erasure Subject GmbH");
  bystanderBefore = await tenantDump(bystander.tenant.id);
  countsBefore = await tenantRowCounts(erased.tenant.id);
  ciphertexts = await captureCiphertexts(erased.tenant.id);
  expect(await objectStorage(erased)).toEqual({ keyLimiter: 1, wizard: expect.any(Number), auditChain: 1 });
  expect((await objectStorage(erased)).wizard).toBeGreaterThan(0);
  ({ output } = await eraseThroughWorkflow(erased.tenant.id));
  receipt = (await receiptCall(erased.tenant.id)).body;
});

describe("which tables an erasure covers", () => {
  it("lists every D1 table with a tenant_id column, so a table added later cannot outlive an erasure", async () => {
    const listed = new Set([...TENANT_TABLES.map((spec) => spec.table), ...ERASURE_RECORD_TABLES]);
    for (const table of await tablesWithTenantId()) expect(listed, table).toContain(table);
    expect(TENANT_TABLES.at(-1)?.table).toBe("tenants");
  });
});

describe("tenant erasure (GDPR Art. 17): crypto-shredding first, then every row, then a receipt", () => {
  it("runs to completion", () => {
    expect(output).toBe("completed");
    expect(receipt).toMatchObject({ state: "completed", step: "completed", tenant_id: erased.tenant.id });
  });

  it("leaves no row of the tenant in any table with a tenant_id column, and no tenant row", async () => {
    const after = await tenantRowCounts(erased.tenant.id);
    expect(Object.keys(after).length).toBeGreaterThanOrEqual(20);
    expect(Object.values(after).every((n) => n === 0)).toBe(true);
    expect(after).toEqual(Object.fromEntries(Object.keys(countsBefore).map((table) => [table, 0])));
  });

  it("leaves none of the tenant's captured ciphertexts decryptable: its DEKs are gone, and no DEK left in storage (of any tenant) opens them", async () => {
    expect(ciphertexts.length).toBeGreaterThanOrEqual(6);
    const db = database(env.DB);
    const keys = await unseal(env, db);
    // What any isolate would do: load the DEK the blob names from storage. None is left.
    forgetDataKeys();
    for (const captured of ciphertexts) {
      const context = { tenantId: erased.tenant.id, recordId: captured.recordId, field: captured.field };
      await expect(
        decryptText((version) => dekFor(keys, db, erased.tenant.id, version), context, captured.blob),
        captured.table,
      ).rejects.toBeInstanceOf(IntegrityError);
    }
    // And every DEK that is left, whoever it belongs to, tried against every blob: none opens one.
    const { results: remaining } = await env.DB.prepare(
      "SELECT tenant_id, version, kek_provider, kek_version, wrapped_key FROM data_keys",
    ).all<{
      tenant_id: string;
      version: number;
      kek_provider: "master";
      kek_version: number;
      wrapped_key: string;
    }>();
    expect(remaining.some((row) => row.tenant_id === erased.tenant.id)).toBe(false);
    for (const row of remaining) {
      // Other files in this shared database corrupt a tenant's wrapped DEK on purpose (threat model case 7):
      // a DEK that does not unwrap opens nothing either.
      const dek = await keys.keks
        .unwrap(
          { kek: { provider: row.kek_provider, version: row.kek_version }, wrapped: row.wrapped_key },
          dekBinding(row.tenant_id, row.version),
          DEK_USE,
        )
        .catch((error: unknown) => {
          if (error instanceof IntegrityError) return null;
          throw error;
        });
      if (!dek) continue;
      for (const captured of ciphertexts) {
        const context = { tenantId: erased.tenant.id, recordId: captured.recordId, field: captured.field };
        await expect(decryptText(async () => dek, context, captured.blob)).rejects.toBeInstanceOf(
          IntegrityError,
        );
      }
    }
  });

  it("clears the tenant's Durable Object storage: the key limiter's counters, the committed wizard's session and the audit chain head", async () => {
    expect(await objectStorage(erased)).toEqual({ keyLimiter: 0, wizard: 0, auditChain: 0 });
    expect(receipt.objects_cleared).toEqual({ key_limiters: 1, wizard_sessions: 1, audit_chain: 1 });
  });

  it("counts on the receipt exactly the rows that were deleted, table by table, and the data keys destroyed", () => {
    const { data_keys: dataKeys, audit_log: auditLog, ...others } = countsBefore;
    expect(receipt.data_keys_destroyed).toBe(dataKeys);
    // The request and the shredding were audited in the tenant's own chain before it was deleted.
    expect(receipt.rows_deleted.audit_log).toBe((auditLog ?? 0) + 2);
    for (const [table, n] of Object.entries(others)) expect(receipt.rows_deleted[table] ?? 0, table).toBe(n);
    expect(receipt.rows_deleted.data_keys ?? 0).toBe(0);
    expect(receipt.audit_chain_head?.seq).toBe((auditLog ?? 0) + 3 + 2);
  });

  it("orders the receipt's times: refused, then shredded, then rows deleted, then completed", () => {
    const times = [
      receipt.requested_at,
      receipt.dek_destroyed_at,
      receipt.rows_deleted_at,
      receipt.completed_at,
    ];
    expect(times.every((time) => time !== null)).toBe(true);
    const ms = times.map((time) => Date.parse(time as string));
    expect([...ms].sort((a, b) => a - b)).toEqual(ms);
  });

  it("carries no personal data beyond the tenant id: no name, no key, no credential, no channel secret", () => {
    const text = JSON.stringify(receipt);
    expect(text).not.toContain("Erasure Subject");
    for (const secret of [
      erased.tenant.adminKey,
      erased.limitedKey.key,
      erased.pickup.plaintext,
      erased.endpointSecret,
      erased.deliverySecret,
      ...erased.credentials.map((credential) => credential.value),
      ...Object.values(erased.channel.secrets),
    ]) {
      expect(text).not.toContain(secret);
    }
    expect(Object.keys(receipt).sort()).toEqual(
      [
        "audit_chain_head",
        "completed_at",
        "data_keys_destroyed",
        "dek_destroyed_at",
        "erasure_id",
        "objects_cleared",
        "receipt_intact",
        "receipt_jws",
        "receipt_mac",
        "requested_at",
        "rows_deleted",
        "rows_deleted_at",
        "state",
        "step",
        "tenant_id",
      ].sort(),
    );
  });

  it("signs the receipt: it reads as intact, and an edit to the stored row is detected", async () => {
    expect(receipt.receipt_mac).toMatch(/^[0-9a-f]{64}$/);
    expect(receipt.receipt_intact).toBe(true);
    const edit = (n: number) =>
      env.DB.prepare("UPDATE tenant_erasures SET data_keys_destroyed = ? WHERE tenant_id = ?")
        .bind(n, erased.tenant.id)
        .run();
    await edit(receipt.data_keys_destroyed + 1);
    try {
      // An edited receipt reads as broken and is not signed.
      expect((await receiptCall(erased.tenant.id)).body).toMatchObject({
        receipt_intact: false,
        receipt_jws: null,
      });
    } finally {
      await edit(receipt.data_keys_destroyed);
    }
    expect((await receiptCall(erased.tenant.id)).body.receipt_intact).toBe(true);
  });

  it("signs the completed receipt so that anyone can verify it offline with the deployment's public key", async () => {
    const { body: keySet } = await callJson<{ keys: JWK[] }>("GET", "/api/v1/audit/export-key");
    const [publicJwk] = keySet.keys;
    const jws = receipt.receipt_jws as string;
    const { payload, protectedHeader } = await compactVerify(jws, await importJWK(publicJwk as JWK, "EdDSA"));
    expect(protectedHeader).toMatchObject({ alg: "EdDSA", typ: ERASURE_RECEIPT_TYP, kid: publicJwk?.kid });
    const { receipt_intact: _intact, receipt_jws: _jws, ...signed } = receipt;
    expect(JSON.parse(new TextDecoder().decode(payload))).toEqual(signed);
    // The same receipt signs the same way (Ed25519 is deterministic); a forged payload does not verify.
    expect((await receiptCall(erased.tenant.id)).body.receipt_jws).toBe(jws);
    const [header, , signature] = jws.split(".");
    const forgedPayload = base64url.encode(JSON.stringify({ ...signed, data_keys_destroyed: 0 }));
    const forged = `${header}.${forgedPayload}.${signature}`;
    await expect(compactVerify(forged, await importJWK(publicJwk as JWK, "EdDSA"))).rejects.toThrow();
  });

  it("leaves another tenant untouched: every row as before, and its audit chain still verifies", async () => {
    expect(await tenantDump(bystander.tenant.id)).toBe(bystanderBefore);
    expect(await verifyAuditChain(env, bystander.tenant.id)).toMatchObject({ ok: true });
    expect((await objectStorage(bystander)).keyLimiter).toBe(1);
  });
});

describe("what the database still refuses after an erasure", () => {
  const refused = (sql: string, ...params: unknown[]) =>
    expect(
      env.DB.prepare(sql)
        .bind(...params)
        .run(),
    ).rejects.toThrow();

  it("keeps other tenants' audit rows append-only: no delete, no update, no horizon removed (threat model case 19)", async () => {
    const seq = 5;
    await refused("DELETE FROM audit_log WHERE tenant_id = ? AND seq = ?", bystander.tenant.id, seq);
    await refused(
      "UPDATE audit_log SET action = 'x' WHERE tenant_id = ? AND seq = ?",
      bystander.tenant.id,
      seq,
    );
    await refused("DELETE FROM audit_horizons WHERE tenant_id = ?", bystander.tenant.id);
    expect(await verifyAuditChain(env, bystander.tenant.id)).toMatchObject({ ok: true });
  });

  it("never lets a data key or an issued key be created again for the erased tenant", async () => {
    await refused(
      `INSERT INTO data_keys (tenant_id, version, kek_provider, kek_version, wrapped_key, status, created_at)
       VALUES (?, 9, 'master', 1, 'x', 'active', 0)`,
      erased.tenant.id,
    );
    await refused(
      `INSERT INTO api_keys (id, tenant_id, name, hash, start, last4, environment, security_level, scopes,
         created_at, updated_at) VALUES ('key_late', ?, 'late', 'h-late', 's', 'l', 'live', 'basic', '[]', 0, 0)`,
      erased.tenant.id,
    );
  });

  it("never lets the erasure be undone: its row cannot be deleted, nor its shredding time cleared", async () => {
    await refused("DELETE FROM tenant_erasures WHERE tenant_id = ?", erased.tenant.id);
    await refused("UPDATE tenant_erasures SET dek_destroyed_at = NULL WHERE tenant_id = ?", erased.tenant.id);
    await refused("UPDATE tenant_erasures SET tenant_id = 'ten_other' WHERE tenant_id = ?", erased.tenant.id);
  });
});
