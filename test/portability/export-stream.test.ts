import { env } from "cloudflare:workers";
import { compactDecrypt, decodeProtectedHeader } from "jose";
import { describe, expect, it } from "vitest";
import { database } from "../../src/db/client";
import {
  assertInlineExportSize,
  exportStream,
  INLINE_EXPORT_MAX_ROWS,
  STREAM_FORMAT,
  STREAM_MEDIA_TYPE,
} from "../../src/portability/export";
import { decodeContentKey, PBES2_ITERATIONS } from "../../src/portability/export-jwe";
import { tenantCounts } from "../../src/portability/tenant-pages";
import { unseal } from "../../src/vault/keyring";
import { call, createKey, createTenant, type TestTenant } from "../helpers/api";
import { importInto, names, PASSPHRASE, reveal, storeStripe, tenantState } from "./export-support";

const decoder = new TextDecoder();
const json = (bytes: Uint8Array) => JSON.parse(decoder.decode(bytes));

async function streamedExport(
  tenant: TestTenant,
  headers: Record<string, string> = {},
  body: object = { stream: true },
) {
  const response = await call("POST", "/api/v1/export", {
    key: tenant.adminKey,
    headers,
    body: { passphrase: PASSPHRASE, ...body },
  });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe(STREAM_MEDIA_TYPE);
  expect(response.headers.get("cache-control")).toBe("no-store");
  return response.text();
}

/** The stream as written with a page of one row, so a small tenant spans several lines. */
async function onePerPage(tenant: TestTenant): Promise<string> {
  const db = database(env.DB);
  const stream = exportStream(
    await unseal(env, db),
    db,
    tenant.id,
    { kind: "passphrase", passphrase: PASSPHRASE },
    await tenantCounts(db, tenant.id),
    Date.now(),
    1,
  );
  return new Response(stream).text();
}

describe("the streamed export (NDJSON, one JWE per line)", () => {
  it("opens its first line with jose and the passphrase alone, then every page with the content key it carries", async () => {
    const tenant = await createTenant("stream lines");
    const stored = await storeStripe(tenant, "Streamed");
    const lines = (await streamedExport(tenant)).trimEnd().split("\n");
    expect(decodeProtectedHeader(lines[0] as string)).toMatchObject({
      alg: "PBES2-HS512+A256KW",
      enc: "A256GCM",
      p2c: PBES2_ITERATIONS,
      seq: 0,
    });
    const first = await compactDecrypt(lines[0] as string, new TextEncoder().encode(PASSPHRASE), {
      keyManagementAlgorithms: ["PBES2-HS512+A256KW"],
      maxPBES2Count: PBES2_ITERATIONS,
    });
    const header = json(first.plaintext);
    expect(header.format).toBe(STREAM_FORMAT);
    const contentKey = decodeContentKey(header.content_key);
    const payloads = [];
    for (const [index, line] of lines.slice(1).entries()) {
      expect(decodeProtectedHeader(line)).toMatchObject({ alg: "dir", enc: "A256GCM", seq: index + 1 });
      payloads.push(json((await compactDecrypt(line, contentKey)).plaintext));
    }
    expect(payloads.map((p) => p.kind ?? "end")).toEqual(["credentials", "keys", "end"]);
    expect(payloads[0].items[0].versions[0].fields.secret_key).toBe(stored.secret);
    expect(payloads.at(-1)).toMatchObject({ end: true, pages: 2, counts: { credentials: 1, keys: 1 } });
    for (const line of lines) expect(line).not.toContain(stored.secret);
  });

  it("is chosen by Accept: application/x-ndjson too", async () => {
    const tenant = await createTenant("stream accept");
    const text = await streamedExport(tenant, { accept: STREAM_MEDIA_TYPE }, {});
    expect(text.trimEnd().split("\n").length).toBeGreaterThanOrEqual(3);
  });

  it("reads the tenant in bounded pages, one line per page, and imports into another tenant byte-identical", async () => {
    const source = await createTenant("paged source");
    const stored = [
      await storeStripe(source, "First"),
      await storeStripe(source, "Second"),
      await storeStripe(source, "Third"),
    ];
    await createKey(source, { name: "paged key" });
    const text = await onePerPage(source);
    // header + 3 credential pages + 2 key pages (admin and "paged key") + end
    expect(text.trimEnd().split("\n")).toHaveLength(7);

    const target = await createTenant("paged target");
    const imported = await importInto(target, { jwe: text, passphrase: PASSPHRASE });
    expect(imported.status, JSON.stringify(imported.body)).toBe(200);
    expect(names(imported.body.plan.credentials.create)).toEqual(["First", "Second", "Third"]);
    const listed = await call("GET", "/api/v1/credentials", { key: target.adminKey });
    const items = ((await listed.json()) as { items: { id: string; name: string }[] }).items;
    expect(items).toHaveLength(3);
    for (const item of items) {
      const source = stored[["First", "Second", "Third"].indexOf(item.name)];
      expect((await reveal(target, item.id)).secret_key).toBe(source?.secret);
    }
  });

  it("refuses a dropped, repeated, swapped, truncated or foreign line with nothing written", async () => {
    const source = await createTenant("stream tamper source");
    await storeStripe(source, "One");
    await storeStripe(source, "Two");
    const lines = (await onePerPage(source)).trimEnd().split("\n");
    const other = (await onePerPage(source)).trimEnd().split("\n");
    const target = await createTenant("stream tamper target");
    const before = await tenantState(target.id, true);
    const variants: Record<string, string[]> = {
      dropped: [lines[0], lines[2], ...lines.slice(3)] as string[],
      repeated: [lines[0], lines[1], ...lines.slice(1)] as string[],
      swapped: [lines[0], lines[2], lines[1], ...lines.slice(3)] as string[],
      truncated: lines.slice(0, -1),
      "after the end": [...lines, lines[1] as string],
      "from another export": [lines[0], other[1], ...lines.slice(2)] as string[],
    };
    for (const [label, variant] of Object.entries(variants)) {
      const refused = await importInto(target, { jwe: variant.join("\n"), passphrase: PASSPHRASE });
      expect(refused.status, label).toBe(422);
      expect(refused.body.errors?.[0]?.path, label).toBe("jwe");
    }
    expect(await tenantState(target.id, true)).toBe(before);
  });

  it(`refuses the one-JWE form above ${INLINE_EXPORT_MAX_ROWS} credentials or keys, pointing at stream`, () => {
    expect(() =>
      assertInlineExportSize({ credentials: INLINE_EXPORT_MAX_ROWS, keys: INLINE_EXPORT_MAX_ROWS }),
    ).not.toThrow();
    for (const counts of [
      { credentials: INLINE_EXPORT_MAX_ROWS + 1, keys: 0 },
      { credentials: 0, keys: INLINE_EXPORT_MAX_ROWS + 1 },
    ]) {
      expect(() => assertInlineExportSize(counts)).toThrow(/streamed export/);
    }
  });
});
