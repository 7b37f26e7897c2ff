// scripts/verify-audit-export.mjs as an auditor runs it: node, a saved export and a pinned key set, exit status
// and the lines it names. The checks themselves are src/audit/audit-export-format.ts, which the Worker tests
// (test/audit/audit-export.test.ts) run against real exports; here the export is built with the same module
// and a throwaway Ed25519 key, so only the command line is under test.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { CompactSign, calculateJwkThumbprint, exportJWK } from "jose";
import {
  AUDIT_EXPORT_FORMAT,
  AUDIT_SEAL_TYPE,
  sealLine,
  signedRowLine,
} from "../../src/audit/audit-export-format.ts";

const SCRIPT = fileURLToPath(new URL("../../scripts/verify-audit-export.mjs", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TENANT = "ten_0000000000000000000000";

function exec(file, args, { input, ...options } = {}) {
  return new Promise((resolve) => {
    const child = execFile(file, args, options, (error, stdout, stderr) =>
      resolve({ code: error ? error.code : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin.end(input);
  });
}

const run = (args, input) => exec(process.execPath, [SCRIPT, ...args], { input });

/** A three-row export whose hashes link, sealed like the Worker seals it. */
async function buildExport(keys) {
  const publicJwk = await exportJWK(keys.publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const sign = (data) => crypto.subtle.sign({ name: "Ed25519" }, keys.privateKey, data);
  let prev = "0".repeat(64);
  let text = "";
  for (let seq = 1; seq <= 3; seq++) {
    const hash = String(seq).repeat(64);
    const row = {
      type: "row",
      seq,
      time: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
      actor: { type: "key", id: "key_admin" },
      action: "key.create",
      subject: { type: "key", id: `key_${seq}` },
      request_id: `req-${seq}`,
      detail: { name: `key ${seq}` },
      prev_hash: prev,
      hash,
    };
    text += await signedRowLine(TENANT, row, sign);
    prev = hash;
  }
  const payload = {
    typ: AUDIT_SEAL_TYPE,
    format: AUDIT_EXPORT_FORMAT,
    tenant: TENANT,
    from_seq: 1,
    to_seq: 3,
    rows: 3,
    first_prev_hash: "0".repeat(64),
    head_hash: prev,
    chain: { ok: true },
    sealed_at: "2026-01-01T00:00:04.000Z",
  };
  const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: "EdDSA", kid, typ: AUDIT_SEAL_TYPE })
    .sign(keys.privateKey);
  return { text: text + sealLine(jws), jwks: { keys: [{ ...publicJwk, kid, alg: "EdDSA", use: "sig" }] } };
}

describe("scripts/verify-audit-export.mjs", () => {
  let dir;
  let exportPath;
  let jwksPath;
  let text;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "kw-audit-export-"));
    const built = await buildExport(await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign"]));
    text = built.text;
    exportPath = join(dir, "export.ndjson");
    jwksPath = join(dir, "jwks.json");
    await writeFile(exportPath, text);
    await writeFile(jwksPath, JSON.stringify(built.jwks));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("exits 0 and says VERIFIED for an intact export and its pinned key set", async () => {
    const { code, stdout } = await run([exportPath, "--jwks", jwksPath]);
    assert.equal(code, 0);
    assert.match(stdout, new RegExp(`^VERIFIED: 3 row lines of tenant ${TENANT}, seq 1\\.\\.3\\n`));
  });

  test("exits 1 and names the altered line, read from standard input", async () => {
    const lines = text.split("\n");
    lines[1] = lines[1].replace('"key 2"', '"key two"');
    const { code, stdout } = await run(["-", "--jwks", jwksPath], lines.join("\n"));
    assert.equal(code, 1);
    assert.match(stdout, /^NOT VERIFIED/);
    assert.match(
      stdout,
      /^line 2 \(seq 2\): its signature does not match its content: the line was altered$/m,
    );
  });

  test("--json prints the verdict the shared module returns", async () => {
    const { code, stdout } = await run([exportPath, "--jwks", jwksPath, "--json"]);
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout), {
      ok: true,
      tenant: TENANT,
      from_seq: 1,
      to_seq: 3,
      rows: 3,
      kid: JSON.parse(await readFile(jwksPath, "utf8")).keys[0].kid,
      problems: [],
      truncated: false,
    });
  });

  test("the documented `npm run verify:audit-export` runs it with the repository's Node 22, whatever node PATH has", async () => {
    // A fresh clone may have an older system Node (20 cannot strip types); npm puts node_modules/.bin,
    // where the `node` devDependency lives, first on the script's PATH. The caller's copy of that folder is
    // taken off PATH here so that only npm's lookup can find it.
    const path = (process.env.PATH ?? "")
      .split(delimiter)
      .filter((dir) => !dir.endsWith(join("node_modules", ".bin")))
      .join(delimiter);
    const { code, stdout, stderr } = await exec(
      "npm",
      ["run", "--silent", "verify:audit-export", "--", exportPath, "--jwks", jwksPath],
      { cwd: ROOT, env: { ...process.env, PATH: path } },
    );
    assert.equal(code, 0, stderr);
    assert.match(stdout, new RegExp(`^VERIFIED: 3 row lines of tenant ${TENANT}, seq 1\\.\\.3\\n`));
  });

  test("exits 2 with the usage on a missing key set or file", async () => {
    const noKeys = await run([exportPath]);
    assert.equal(noKeys.code, 2);
    assert.match(noKeys.stderr, /Give one of --jwks or --jwks-url/);
    const missing = await run([join(dir, "absent.ndjson"), "--jwks", jwksPath]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /Could not read the input/);
  });
});
