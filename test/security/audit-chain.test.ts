import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { type AuditChain, CHAIN_HEAD_KEY } from "../../src/audit/audit-chain";
import type { ChainHead } from "../../src/audit/audit-log";
import { fromBase64, toHex, utf8 } from "../../src/crypto/encoding";
import { callJson, createKey, createTenant, type TestTenant } from "../helpers/api";
import { countRows } from "../helpers/db";

const dropAppendOnlyTriggers = () =>
  env.DB.batch([
    env.DB.prepare("DROP TRIGGER IF EXISTS audit_log_no_update"),
    env.DB.prepare("DROP TRIGGER IF EXISTS audit_log_delete_below_horizon"),
  ]);

async function chainVerdict(tenant: TestTenant) {
  const response = await callJson<{ ok: boolean; rows: number; broken_at_seq?: number; reason?: string }>(
    "GET",
    "/api/v1/audit/verify",
    { key: tenant.adminKey },
  );
  expect(response.status).toBe(200);
  return response.body;
}

interface StoredRow {
  tenant_id: string;
  seq: number;
  at: number;
  actor_type: string;
  actor_id: string;
  action: string;
  target_type: string;
  target_id: string;
  request_id: string;
  detail: string;
  prev_hash: string;
  hash: string;
}

async function auditRows(tenant: TestTenant): Promise<StoredRow[]> {
  const { results } = await env.DB.prepare("SELECT * FROM audit_log WHERE tenant_id = ? ORDER BY seq")
    .bind(tenant.id)
    .all<StoredRow>();
  return results;
}

/** The documented MAC input: a JSON array with one position per column, `prev_hash` first. */
const canonical = (row: StoredRow, prevHash = row.prev_hash) =>
  utf8(
    JSON.stringify([
      prevHash,
      row.tenant_id,
      row.seq,
      row.at,
      row.actor_type,
      row.actor_id,
      row.action,
      row.target_type,
      row.target_id,
      row.request_id,
      JSON.parse(row.detail),
    ]),
  );

const sha256 = async (bytes: Uint8Array<ArrayBuffer>) => toHex(await crypto.subtle.digest("SHA-256", bytes));

async function hmacWith(rawKey: Uint8Array<ArrayBuffer>, bytes: Uint8Array<ArrayBuffer>) {
  const key = await crypto.subtle.importKey("raw", rawKey, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return toHex(await crypto.subtle.sign("HMAC", key, bytes));
}

/**
 * The chain key re-derived independently from the test MASTER_KEY (HKDF-SHA-256, salt "keywarden/v1",
 * info "hmac:audit-chain", 512 bits, the size WebCrypto gives an HMAC-SHA-256 key by default). Reproducing
 * a stored hash with it proves the test's canonical encoding is the real one, so the negative checks bite.
 */
async function chainKeyBytes(): Promise<Uint8Array<ArrayBuffer>> {
  const master = await crypto.subtle.importKey("raw", fromBase64(env.MASTER_KEY), "HKDF", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: utf8("keywarden/v1"), info: utf8("hmac:audit-chain") },
    master,
    512,
  );
  return new Uint8Array(bits);
}

/**
 * An attacker with database write access but without MASTER_KEY: edits one row and recomputes that row's
 * hash and every later row's hash and link with `forge`, so the rows agree with each other again.
 */
async function rewriteForward(
  tenant: TestTenant,
  fromSeq: number,
  forge: (row: StoredRow, bytes: Uint8Array<ArrayBuffer>) => Promise<string>,
) {
  const rows = await auditRows(tenant);
  let prevHash = rows.find((row) => row.seq === fromSeq - 1)?.hash ?? "0".repeat(64);
  const updates: D1PreparedStatement[] = [];
  for (const row of rows.filter((r) => r.seq >= fromSeq)) {
    const action = row.seq === fromSeq ? "key.read" : row.action;
    const hash = await forge(row, canonical({ ...row, action }, prevHash));
    updates.push(
      env.DB.prepare(
        "UPDATE audit_log SET action = ?, prev_hash = ?, hash = ? WHERE tenant_id = ? AND seq = ?",
      ).bind(action, prevHash, hash, tenant.id, row.seq),
    );
    prevHash = hash;
  }
  await env.DB.batch(updates);
}

const chainObject = (tenant: TestTenant) => env.AUDIT_CHAIN.get(env.AUDIT_CHAIN.idFromName(tenant.id));

const recordedHead = (tenant: TestTenant) =>
  runInDurableObject(chainObject(tenant), (_instance: AuditChain, state) =>
    state.storage.kv.get<ChainHead>(CHAIN_HEAD_KEY),
  );

describe("audit log (threat model case 19)", () => {
  let tenant: TestTenant;

  beforeEach(async () => {
    tenant = await createTenant("audited");
    for (let i = 0; i < 4; i++) await createKey(tenant, { name: `k${i}` });
  });

  it("writes one chained row per mutation, with actor, action, target and request id but no secrets", async () => {
    const created = await createKey(tenant, { name: "watched" });
    const log = await callJson<{ items: Record<string, unknown>[] }>("GET", "/api/v1/audit?limit=100", {
      key: tenant.adminKey,
    });
    const entry = log.body.items.find((item) => item.target_id === created.id);
    expect(entry).toMatchObject({ action: "key.create", actor_type: "key", actor_id: tenant.adminKeyId });
    expect(entry?.request_id).toEqual(expect.any(String));
    expect(JSON.stringify(log.body)).not.toContain(created.key);
    expect(await chainVerdict(tenant)).toEqual({ ok: true, rows: 7 });
  });

  it("refuses updates and deletes of audit rows at the database level", async () => {
    await expect(env.DB.prepare("UPDATE audit_log SET action = 'x' WHERE seq = 1").run()).rejects.toThrow(
      /append-only/,
    );
    await expect(env.DB.prepare("DELETE FROM audit_log WHERE seq = 1").run()).rejects.toThrow(/append-only/);
  });

  it("detects a deleted row in the middle at that exact position", async () => {
    await dropAppendOnlyTriggers();
    await env.DB.prepare("DELETE FROM audit_log WHERE tenant_id = ? AND seq = 4").bind(tenant.id).run();
    expect(await chainVerdict(tenant)).toMatchObject({ ok: false, broken_at_seq: 4, reason: "row missing" });
  });

  it("rolls back the mutation when its audit insert fails", async () => {
    await env.DB.prepare(
      "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log WHEN NEW.action = 'key.create' BEGIN SELECT RAISE(ABORT, 'injected'); END",
    ).run();
    const keysBefore = await countRows("api_keys");
    const auditBefore = await countRows("audit_log");
    const response = await callJson("POST", "/api/v1/keys", {
      key: tenant.adminKey,
      body: { name: "doomed" },
    });
    await env.DB.prepare("DROP TRIGGER fail_audit").run();
    expect(response.status).toBe(500);
    expect(response.body).toMatchObject({ code: "INTERNAL" });
    expect(JSON.stringify(response.body)).not.toContain("injected");
    expect(await countRows("api_keys")).toBe(keysBefore);
    expect(await countRows("audit_log")).toBe(auditBefore);
    // The failed batch moved no head: the next mutation continues the chain without a gap.
    await createKey(tenant, { name: "after the failure" });
    expect(await chainVerdict(tenant)).toEqual({ ok: true, rows: 7 });
  });

  it("keeps one unbroken chain under concurrent mutations", async () => {
    await Promise.all(Array.from({ length: 8 }, (_, i) => createKey(tenant, { name: `parallel ${i}` })));
    // 2 rows from tenant creation, 4 from beforeEach, 8 here.
    expect(await chainVerdict(tenant)).toEqual({ ok: true, rows: 14 });
  });
});

describe("audit chain against someone with database write access (threat model case 28)", () => {
  let tenant: TestTenant;

  beforeEach(async () => {
    tenant = await createTenant("audited");
    for (let i = 0; i < 4; i++) await createKey(tenant, { name: `k${i}` });
    await dropAppendOnlyTriggers();
  });

  it("stores a keyed hash: the row's hash is not SHA-256 over the row, only the HMAC under the chain key reproduces it", async () => {
    const [first, second] = await auditRows(tenant);
    for (const row of [first, second] as StoredRow[]) {
      expect(await hmacWith(await chainKeyBytes(), canonical(row))).toBe(row.hash);
      expect(await sha256(canonical(row))).not.toBe(row.hash);
    }
  });

  it("(a) names an edited row, and the edit breaks only that row", async () => {
    await env.DB.prepare("UPDATE audit_log SET action = 'key.read' WHERE tenant_id = ? AND seq = 3")
      .bind(tenant.id)
      .run();
    expect(await chainVerdict(tenant)).toEqual({
      ok: false,
      rows: 2,
      broken_at_seq: 3,
      reason: "row content altered",
    });
  });

  it("(b) names the first of two swapped rows", async () => {
    await env.DB.batch([
      env.DB.prepare("UPDATE audit_log SET seq = -1 WHERE tenant_id = ? AND seq = 3").bind(tenant.id),
      env.DB.prepare("UPDATE audit_log SET seq = 3 WHERE tenant_id = ? AND seq = 4").bind(tenant.id),
      env.DB.prepare("UPDATE audit_log SET seq = 4 WHERE tenant_id = ? AND seq = -1").bind(tenant.id),
    ]);
    expect(await chainVerdict(tenant)).toMatchObject({
      ok: false,
      broken_at_seq: 3,
      reason: "link to previous row broken",
    });
  });

  it("(b) names the first of two swapped rows even when their contents swap and the seqs stay", async () => {
    const rows = await auditRows(tenant);
    const [third, fourth] = [rows[2], rows[3]] as [StoredRow, StoredRow];
    const put = (row: StoredRow, seq: number) =>
      env.DB.prepare(
        "UPDATE audit_log SET at = ?, action = ?, target_type = ?, target_id = ?, request_id = ?, detail = ?, prev_hash = ?, hash = ? WHERE tenant_id = ? AND seq = ?",
      ).bind(
        row.at,
        row.action,
        row.target_type,
        row.target_id,
        row.request_id,
        row.detail,
        row.prev_hash,
        row.hash,
        tenant.id,
        seq,
      );
    await env.DB.batch([put(fourth, 3), put(third, 4)]);
    expect(await chainVerdict(tenant)).toMatchObject({ ok: false, broken_at_seq: 3 });
  });

  it("(c) names the first rewritten row of a forward rewrite that recomputes every later hash with plain SHA-256", async () => {
    await rewriteForward(tenant, 3, (_row, bytes) => sha256(bytes));
    // The forged rows agree with each other: only the key they lack gives them away.
    const rows = await auditRows(tenant);
    for (let i = 3; i < rows.length; i++) expect(rows[i]?.prev_hash).toBe(rows[i - 1]?.hash);
    expect(await chainVerdict(tenant)).toEqual({
      ok: false,
      rows: 2,
      broken_at_seq: 3,
      reason: "row content altered",
    });
  });

  it("(c) names the first rewritten row when the rewrite uses HMAC keyed with values guessed from the row data", async () => {
    for (const guess of [
      (row: StoredRow) => utf8(row.tenant_id),
      (row: StoredRow) => utf8(row.prev_hash),
      () => utf8("audit-chain"),
    ]) {
      await rewriteForward(tenant, 2, (row, bytes) => hmacWith(guess(row), bytes));
      expect(await chainVerdict(tenant)).toMatchObject({
        ok: false,
        rows: 1,
        broken_at_seq: 2,
        reason: "row content altered",
      });
    }
  });

  it("(c) names the first row of a rewrite of the whole chain from genesis", async () => {
    await rewriteForward(tenant, 1, (_row, bytes) => sha256(bytes));
    expect(await chainVerdict(tenant)).toMatchObject({ ok: false, rows: 0, broken_at_seq: 1 });
  });

  it("(d) names the first missing seq of a truncated tail, by the head kept outside D1", async () => {
    await env.DB.prepare("DELETE FROM audit_log WHERE tenant_id = ? AND seq > 4").bind(tenant.id).run();
    // What remains is a perfectly valid chain of 4 rows: only the recorded head shows rows 5 and 6 existed.
    expect(await recordedHead(tenant)).toMatchObject({ seq: 6 });
    expect(await chainVerdict(tenant)).toEqual({
      ok: false,
      rows: 4,
      broken_at_seq: 5,
      reason: "tail truncated",
    });
  });

  it("(d) names a truncated tail even when the whole chain was deleted", async () => {
    await env.DB.prepare("DELETE FROM audit_log WHERE tenant_id = ?").bind(tenant.id).run();
    expect(await chainVerdict(tenant)).toEqual({
      ok: false,
      rows: 0,
      broken_at_seq: 1,
      reason: "tail truncated",
    });
  });

  it("(d) keeps a truncation visible after later writes: they never re-use the lost seqs", async () => {
    await env.DB.prepare("DELETE FROM audit_log WHERE tenant_id = ? AND seq > 4").bind(tenant.id).run();
    await createKey(tenant, { name: "after the truncation" });
    expect((await auditRows(tenant)).map((row) => row.seq)).toEqual([1, 2, 3, 4, 7]);
    expect(await chainVerdict(tenant)).toMatchObject({ ok: false, broken_at_seq: 5, reason: "row missing" });
  });

  it("names a forged row appended straight to D1 past the head (the triggers never block inserts)", async () => {
    const last = (await auditRows(tenant)).at(-1) as StoredRow;
    const forged = { ...last, seq: 7, action: "key.revoke", prev_hash: last.hash };
    await env.DB.prepare(
      "INSERT INTO audit_log (tenant_id, seq, at, actor_type, actor_id, action, target_type, target_id, request_id, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
      .bind(
        forged.tenant_id,
        forged.seq,
        forged.at,
        forged.actor_type,
        forged.actor_id,
        forged.action,
        forged.target_type,
        forged.target_id,
        forged.request_id,
        forged.detail,
        forged.prev_hash,
        await sha256(canonical(forged)),
      )
      .run();
    expect(await chainVerdict(tenant)).toMatchObject({
      ok: false,
      broken_at_seq: 7,
      reason: "row content altered",
    });
  });

  it("(e) leaves another tenant's chain verifying while this tenant's is edited, swapped, rewritten and truncated", async () => {
    const other = await createTenant("bystander");
    for (let i = 0; i < 3; i++) await createKey(other, { name: `o${i}` });
    await env.DB.prepare("UPDATE audit_log SET action = 'key.read' WHERE tenant_id = ? AND seq = 2")
      .bind(tenant.id)
      .run();
    await env.DB.batch([
      env.DB.prepare("UPDATE audit_log SET seq = -1 WHERE tenant_id = ? AND seq = 3").bind(tenant.id),
      env.DB.prepare("UPDATE audit_log SET seq = 3 WHERE tenant_id = ? AND seq = 4").bind(tenant.id),
      env.DB.prepare("UPDATE audit_log SET seq = 4 WHERE tenant_id = ? AND seq = -1").bind(tenant.id),
    ]);
    await rewriteForward(tenant, 4, (_row, bytes) => sha256(bytes));
    await env.DB.prepare("DELETE FROM audit_log WHERE tenant_id = ? AND seq > 4").bind(tenant.id).run();
    expect(await chainVerdict(tenant)).toMatchObject({ ok: false, broken_at_seq: 2 });
    expect(await chainVerdict(other)).toEqual({ ok: true, rows: 5 });
  });
});

describe("audit chain head across a crash between the D1 commit and the head write (threat model case 28)", () => {
  let tenant: TestTenant;

  beforeEach(async () => {
    tenant = await createTenant("audited");
    for (let i = 0; i < 4; i++) await createKey(tenant, { name: `k${i}` });
  });

  it("records the head {seq, hash} of the last committed row in the Durable Object's storage", async () => {
    const last = (await auditRows(tenant)).at(-1) as StoredRow;
    expect(await recordedHead(tenant)).toEqual({ seq: 6, hash: last.hash });
  });

  it("accepts a head that lags D1 by a batch that chains from it, and the next write repairs the head", async () => {
    const before = await recordedHead(tenant);
    await createKey(tenant, { name: "committed, head write lost" });
    // The crash: D1 holds row 7, the Durable Object never recorded it.
    await runInDurableObject(chainObject(tenant), (_instance: AuditChain, state) => {
      state.storage.kv.put(CHAIN_HEAD_KEY, before);
    });
    expect(await chainVerdict(tenant)).toEqual({ ok: true, rows: 7 });

    await createKey(tenant, { name: "after the restart" });
    const last = (await auditRows(tenant)).at(-1) as StoredRow;
    expect(last.seq).toBe(8);
    expect(await recordedHead(tenant)).toEqual({ seq: 8, hash: last.hash });
    expect(await chainVerdict(tenant)).toEqual({ ok: true, rows: 8 });
  });

  it("refuses a lagging head when the row at its seq is not the one it recorded", async () => {
    const rows = await auditRows(tenant);
    // A head from another history: the row at seq 5 was replaced, with a hash nobody could verify anyway.
    await runInDurableObject(chainObject(tenant), (_instance: AuditChain, state) => {
      state.storage.kv.put(CHAIN_HEAD_KEY, { seq: 5, hash: rows[3]?.hash });
    });
    expect(await chainVerdict(tenant)).toEqual({
      ok: false,
      rows: 4,
      broken_at_seq: 5,
      reason: "row differs from the recorded chain head",
    });
  });
});
