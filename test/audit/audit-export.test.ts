import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type AuditChain, CHAIN_HEAD_KEY } from "../../src/audit/audit-chain";
import { EXPORT_PAGE_ROWS } from "../../src/audit/audit-export";
import {
  type ExportVerdict,
  type JwkSet,
  ROW_KEYS,
  verifyAuditExport,
} from "../../src/audit/audit-export-format";
import { type AuditEvent, type ChainHead, commitWithAudit } from "../../src/audit/audit-log";
import { adminActor, call, callJson, createKey, createTenant, type TestTenant } from "../helpers/api";

async function exportKeySet(): Promise<JwkSet> {
  const { status, body } = await callJson<JwkSet>("GET", "/api/v1/audit/export-key");
  expect(status).toBe(200);
  return body;
}

async function exportText(tenant: TestTenant, query = "", key = tenant.adminKey): Promise<string> {
  const response = await call("GET", `/api/v1/audit/export${query}`, { key });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("application/x-ndjson");
  expect(response.headers.get("cache-control")).toBe("no-store");
  // Read as bytes: workerd warns when .text() reads a body whose type is not text/*.
  return new TextDecoder().decode(await response.arrayBuffer());
}

const linesOf = (text: string) => text.trimEnd().split("\n");
const rowsOf = (text: string) =>
  linesOf(text)
    .slice(0, -1)
    .map((line) => JSON.parse(line));
const withLines = (lines: string[]) => `${lines.join("\n")}\n`;

/** A tenant with a few audited mutations: tenant creation, two keys, a revocation. */
async function busyTenant(): Promise<TestTenant> {
  const tenant = await createTenant();
  await createKey(tenant, { name: "first" });
  const second = await createKey(tenant, { name: "second" });
  const revoked = await call("POST", `/api/v1/keys/${second.id}/revoke`, { key: tenant.adminKey });
  expect(revoked.status).toBeLessThan(300);
  return tenant;
}

async function verified(text: string): Promise<ExportVerdict> {
  return verifyAuditExport(text, await exportKeySet());
}

describe("audit export (NDJSON, chain hashes, signed seal)", () => {
  it("exports every row of the tenant, in seq order, and the export verifies offline with the published key", async () => {
    const tenant = await busyTenant();
    const text = await exportText(tenant);
    const listed = await callJson<{ items: { seq: number; action: string; chain_hash: string }[] }>(
      "GET",
      "/api/v1/audit?limit=100",
      { key: tenant.adminKey },
    );
    const expected = [...listed.body.items].reverse().filter((item) => item.action !== "audit.export");

    const rows = rowsOf(text);
    expect(rows.map((row) => [row.seq, row.action, row.hash])).toEqual(
      expected.map((item) => [item.seq, item.action, item.chain_hash]),
    );
    // Exactly the members the offline verifier requires, in the documented order.
    expect(Object.keys(rows[0])).toEqual(ROW_KEYS);
    expect(JSON.parse(linesOf(text).at(-1) ?? "").type).toBe("seal");

    const verdict = await verified(text);
    expect(verdict).toMatchObject({
      ok: true,
      tenant: tenant.id,
      from_seq: 1,
      rows: rows.length,
      problems: [],
    });
    expect(verdict.to_seq).toBe(rows.at(-1)?.seq);
  });

  it("names the edited line when one line's detail or action is changed, even though its hashes still link (threat model case 19)", async () => {
    const tenant = await busyTenant();
    const lines = linesOf(await exportText(tenant));
    const edited = JSON.parse(lines[2] ?? "");
    edited.action = "key.read";
    const tampered = [...lines];
    tampered[2] = JSON.stringify(edited);

    const verdict = await verified(withLines(tampered));
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toEqual([
      { line: 3, seq: edited.seq, reason: "its signature does not match its content: the line was altered" },
    ]);

    const detailEdited = JSON.parse(lines[1] ?? "");
    detailEdited.detail = { ...detailEdited.detail, name: "someone else" };
    const second = [...lines];
    second[1] = JSON.stringify(detailEdited);
    expect((await verified(withLines(second))).problems.map((p) => p.line)).toEqual([2]);
  });

  it("names the place where a line was removed, two lines swapped, or the tail cut (threat model case 28)", async () => {
    const tenant = await busyTenant();
    const lines = linesOf(await exportText(tenant));
    expect(lines.length).toBeGreaterThanOrEqual(5);

    const removed = lines.filter((_, index) => index !== 1);
    const removedVerdict = await verified(withLines(removed));
    expect(removedVerdict.ok).toBe(false);
    expect(removedVerdict.problems[0]).toMatchObject({ line: 2, seq: 3 });
    expect(removedVerdict.problems[0]?.reason).toContain("where 2 was expected");

    const swapped = [...lines];
    [swapped[1], swapped[2]] = [lines[2] ?? "", lines[1] ?? ""];
    const swappedVerdict = await verified(withLines(swapped));
    expect(swappedVerdict.problems.map((p) => p.line)).toEqual(expect.arrayContaining([2, 3]));

    const noSeal = lines.slice(0, -1);
    expect((await verified(withLines(noSeal))).problems).toEqual([
      { line: noSeal.length, reason: "the last line is not a seal: the export is incomplete" },
    ]);

    const cutRows = [...lines.slice(0, -2), lines.at(-1) ?? ""];
    const cutVerdict = await verified(withLines(cutRows));
    expect(cutVerdict.problems).toHaveLength(1);
    expect(cutVerdict.problems[0]?.line).toBe(cutRows.length);
    expect(cutVerdict.problems[0]?.reason).toMatch(/^the seal covers \d+ rows/);
  });

  it("refuses an altered seal and a seal checked against another key set", async () => {
    const tenant = await busyTenant();
    const lines = linesOf(await exportText(tenant));
    const { jws } = JSON.parse(lines.at(-1) ?? "") as { jws: string };
    const [header, payload, signature] = jws.split(".");
    const claims = JSON.parse(atob((payload ?? "").replaceAll("-", "+").replaceAll("_", "/")));
    const forgedPayload = btoa(JSON.stringify({ ...claims, rows: claims.rows - 1 }))
      .replaceAll("+", "-")
      .replaceAll("/", "_")
      .replace(/=+$/, "");
    const forged = [
      ...lines.slice(0, -1),
      JSON.stringify({ type: "seal", jws: `${header}.${forgedPayload}.${signature}` }),
    ];
    expect((await verified(withLines(forged))).problems).toEqual([
      {
        line: forged.length,
        reason: "the seal's signature does not verify: the seal was altered or made with another key",
      },
    ]);

    const published = await exportKeySet();
    const other = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const otherJwk = (await crypto.subtle.exportKey("jwk", other.publicKey)) as JsonWebKey;
    const impostor: JwkSet = {
      keys: [
        { kty: "OKP", crv: "Ed25519", x: otherJwk.x, kid: published.keys[0]?.kid, alg: "EdDSA", use: "sig" },
      ],
    };
    const verdict = await verifyAuditExport(withLines(lines), impostor);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems[0]?.reason).toContain("does not verify");
  });

  it("never contains another tenant's rows, ignores a smuggled tenant id, and a line spliced in from another tenant's export is named (threat model cases 1 and 2)", async () => {
    const a = await busyTenant();
    const b = await busyTenant();
    const textA = await exportText(a, `?tenant_id=${b.id}`);
    const textB = await exportText(b);
    expect(textA).not.toContain(b.id);
    expect(textA).not.toContain(b.adminKeyId);
    expect((await verified(textA)).tenant).toBe(a.id);

    const linesA = linesOf(textA);
    const linesB = linesOf(textB);
    // Same seq, same position: only the signature's tenant binding can tell the lines apart.
    const spliced = [...linesA];
    spliced[1] = linesB[1] ?? "";
    const verdict = await verified(withLines(spliced));
    expect(verdict.problems[0]).toMatchObject({ line: 2, seq: 2 });
    expect(verdict.problems[0]?.reason).toContain("altered");
  });

  it("exports a range, and consecutive ranges chain: the first's head hash is the second's first prev_hash", async () => {
    const tenant = await busyTenant();
    const first = await exportText(tenant, "?from_seq=1&to_seq=2");
    const second = await exportText(tenant, "?from_seq=3&to_seq=4");
    const [one, two] = [await verified(first), await verified(second)];
    expect(one).toMatchObject({ ok: true, from_seq: 1, to_seq: 2, rows: 2 });
    expect(two).toMatchObject({ ok: true, from_seq: 3, to_seq: 4, rows: 2 });
    expect(rowsOf(second)[0].prev_hash).toBe(rowsOf(first).at(-1).hash);

    const refused = await callJson<{ code: string; errors: { path: string }[] }>(
      "GET",
      "/api/v1/audit/export?from_seq=4&to_seq=3",
      { key: tenant.adminKey },
    );
    expect(refused.status).toBe(422);
    expect(refused.body.errors[0]?.path).toBe("to_seq");
  });

  it("streams a log longer than one page as one export that verifies", async () => {
    const tenant = await createTenant();
    const before = await callJson<{ items: { seq: number }[] }>("GET", "/api/v1/audit?limit=1", {
      key: tenant.adminKey,
    });
    const newest = (before.body.items[0]?.seq ?? 0) + EXPORT_PAGE_ROWS + 20;
    const events: AuditEvent[] = Array.from({ length: EXPORT_PAGE_ROWS + 20 }, (_, index) => ({
      action: "test.event",
      targetType: "test",
      targetId: `t${index}`,
      detail: { index },
    }));
    await commitWithAudit(env, adminActor(tenant, "req-bulk"), [], events);
    const text = await exportText(tenant);
    const verdict = await verified(text);
    expect(verdict).toMatchObject({ ok: true, from_seq: 1, rows: newest, to_seq: newest });
  });

  it("exports a chain the deployment finds broken, and the seal marks it so the verifier fails it", async () => {
    const tenant = await busyTenant();
    const stub = env.AUDIT_CHAIN.get(env.AUDIT_CHAIN.idFromName(tenant.id));
    // The recorded head claims a row D1 does not have: the newest rows were cut (truncation).
    const head = await runInDurableObject(stub, (_instance: AuditChain, state) => {
      const recorded = state.storage.kv.get<ChainHead>(CHAIN_HEAD_KEY);
      const claimed = { seq: (recorded?.seq ?? 0) + 1, hash: "f".repeat(64) };
      state.storage.kv.put(CHAIN_HEAD_KEY, claimed);
      return claimed;
    });
    const verdict = await verified(await exportText(tenant));
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toHaveLength(1);
    expect(verdict.problems[0]?.reason).toBe(
      `the deployment found its audit chain broken at seq ${head.seq} when it sealed this export (tail truncated)`,
    );
  });

  it("requires audit:read, and each export is audited after its snapshot, never inside it", async () => {
    const tenant = await busyTenant();
    const noAudit = await createKey(tenant, { name: "no audit", scopes: ["keys:read"] });
    const refused = await call("GET", "/api/v1/audit/export", { key: noAudit.key });
    expect(refused.status).toBe(403);
    expect((await call("GET", "/api/v1/audit/export")).status).toBe(401);

    const text = await exportText(tenant);
    const exportedSeqs = rowsOf(text).map((row) => row.seq);
    expect(rowsOf(text).some((row) => row.action === "audit.export")).toBe(false);
    const latest = await callJson<{
      items: { seq: number; action: string; detail: Record<string, unknown> }[];
    }>("GET", "/api/v1/audit?limit=1", { key: tenant.adminKey });
    expect(latest.body.items[0]).toMatchObject({
      seq: (exportedSeqs.at(-1) ?? 0) + 1,
      action: "audit.export",
      detail: { from_seq: 1, to_seq: exportedSeqs.at(-1) },
    });
  });

  it("serves the public key without credentials: one Ed25519 key, no private part, the same on every call", async () => {
    const first = await exportKeySet();
    const second = await exportKeySet();
    expect(first).toEqual(second);
    expect(first.keys).toHaveLength(1);
    expect(first.keys[0]).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" });
    expect(first.keys[0]).not.toHaveProperty("d");
  });
});
