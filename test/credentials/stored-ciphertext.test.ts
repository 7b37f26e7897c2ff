import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { fromBase64, toBase64 } from "../../src/crypto/encoding";
import { forgetKeys } from "../../src/vault/keyring";
import { callJson, createTenant, type TestTenant } from "../helpers/api";
import { countRows } from "../helpers/db";
import { stripeKey } from "./samples";

async function store(tenant: TestTenant) {
  const secret = stripeKey();
  const { body } = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service: "stripe", environment: "development", fields: { secret_key: secret } },
  });
  return { id: body.id, secret };
}

async function storedBlob(id: string): Promise<string> {
  const row = await env.DB.prepare("SELECT sealed_fields FROM credential_versions WHERE credential_id = ?")
    .bind(id)
    .first<{ sealed_fields: string }>();
  return JSON.parse(row?.sealed_fields ?? "{}").secret_key;
}

async function replaceBlob(id: string, blob: string) {
  await env.DB.prepare("UPDATE credential_versions SET sealed_fields = ? WHERE credential_id = ?")
    .bind(JSON.stringify({ secret_key: blob }), id)
    .run();
}

async function revealAs(tenant: TestTenant, id: string) {
  return callJson<Record<string, unknown>>("POST", `/api/v1/credentials/${id}/reveal`, {
    key: tenant.adminKey,
    body: {},
  });
}

function expectGenericIntegrityError(
  response: { status: number; body: Record<string, unknown> },
  secret: string,
) {
  expect(response.status).toBe(500);
  expect(response.body.code).toBe("INTEGRITY_ERROR");
  expect(JSON.stringify(response.body)).not.toContain(secret);
}

describe("stored credential ciphertext (threat model cases 4, 6, 7)", () => {
  let a: TestTenant;
  let b: TestTenant;
  beforeEach(async () => {
    forgetKeys();
    a = await createTenant("stored A");
    b = await createTenant("stored B");
  });

  it("rejects a stored blob with a flipped bit in the header, IV, ciphertext or tag", async () => {
    const { id, secret } = await store(a);
    const original = fromBase64(await storedBlob(id));
    for (const bit of [0, 8 * 4 + 7, 8 * 6, 8 * 20, original.length * 8 - 1]) {
      const tampered = original.slice();
      tampered[bit >> 3] = (tampered[bit >> 3] as number) ^ (1 << (bit & 7));
      await replaceBlob(id, toBase64(tampered));
      expectGenericIntegrityError(await revealAs(a, id), secret);
    }
  });

  it("rejects a truncated or extended stored blob", async () => {
    const { id, secret } = await store(a);
    const original = fromBase64(await storedBlob(id));
    for (const variant of [
      original.slice(0, original.length - 1),
      original.slice(0, 20),
      new Uint8Array([...original, 0]),
    ]) {
      await replaceBlob(id, toBase64(variant));
      expectGenericIntegrityError(await revealAs(a, id), secret);
    }
  });

  it("fails closed when the header names a DEK version the tenant does not have", async () => {
    const { id, secret } = await store(a);
    const rewritten = fromBase64(await storedBlob(id));
    new DataView(rewritten.buffer).setUint32(1, 2);
    await replaceBlob(id, toBase64(rewritten));
    expectGenericIntegrityError(await revealAs(a, id), secret);
  });

  it("breaks only tenant A when A's wrapped DEK is corrupted, and creates no new DEK", async () => {
    const mine = await store(a);
    const theirs = await store(b);
    const dekRows = await countRows("data_keys");
    await env.DB.prepare("UPDATE data_keys SET wrapped_key = ? WHERE tenant_id = ?")
      .bind(toBase64(new Uint8Array(60)), a.id)
      .run();
    forgetKeys();
    expectGenericIntegrityError(await revealAs(a, mine.id), mine.secret);
    const stored = await callJson("POST", "/api/v1/credentials", {
      key: a.adminKey,
      body: { service: "stripe", environment: "development", fields: { secret_key: stripeKey() } },
    });
    expect(stored.status).toBe(500);
    const other = await revealAs(b, theirs.id);
    expect(other.status).toBe(200);
    expect(other.body.fields).toEqual({ secret_key: theirs.secret });
    expect(await countRows("data_keys")).toBe(dekRows);
  });
});
