#!/usr/bin/env node
// Verifies a Keywarden audit export (GET /api/v1/audit/export) offline: the seal's signature, every line's
// signature, the seq run and hash linkage, and the seal's range, count and chain verdict. The checks live in
// src/audit/audit-export-format.ts, shared with the Worker and the tests; Node >= 22.18 runs it as is (it
// strips the TypeScript types). `npm run verify:audit-export -- <args>` runs it with the repository's Node 22
// (the `node` devDependency) whatever node is on PATH. Usage: docs/audit-export.md, or run with --help.
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

const USAGE = `Usage: node scripts/verify-audit-export.mjs <export.ndjson> (--jwks <file> | --jwks-url <url>) [--json]

  <export.ndjson>   the body of GET /api/v1/audit/export ("-" reads standard input)
  --jwks <file>     the key set of GET /api/v1/audit/export-key, saved once and pinned (recommended)
  --jwks-url <url>  fetch the key set now instead (trusts whatever that URL answers today)
  --json            print the verdict as JSON

Exit status: 0 the export verifies, 1 it does not (each problem names its line), 2 usage or I/O error.`;

function fail(message) {
  process.stderr.write(`${message}\n\n${USAGE}\n`);
  process.exit(2);
}

async function readInput(path) {
  if (path !== "-") return readFile(path, "utf8");
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

async function loadKeySet(values) {
  if (values.jwks) return JSON.parse(await readFile(values.jwks, "utf8"));
  const response = await fetch(values["jwks-url"], {
    redirect: "error",
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`${values["jwks-url"]} answered ${response.status}`);
  return response.json();
}

function describe(verdict) {
  const lines = [];
  const range =
    verdict.tenant === null ? "" : ` of tenant ${verdict.tenant}, seq ${verdict.from_seq}..${verdict.to_seq}`;
  lines.push(`${verdict.ok ? "VERIFIED" : "NOT VERIFIED"}: ${verdict.rows} row lines${range}`);
  if (verdict.kid) lines.push(`sealed by key ${verdict.kid}`);
  for (const problem of verdict.problems) {
    const seq = problem.seq === undefined ? "" : ` (seq ${problem.seq})`;
    lines.push(`line ${problem.line}${seq}: ${problem.reason}`);
  }
  if (verdict.truncated) lines.push("… more problems not listed");
  return `${lines.join("\n")}\n`;
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        jwks: { type: "string" },
        "jwks-url": { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    fail(error.message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (positionals.length !== 1) fail("Give exactly one export file.");
  if (Boolean(values.jwks) === Boolean(values["jwks-url"])) fail("Give one of --jwks or --jwks-url.");
  if (!process.features.typescript) {
    fail(
      `Node ${process.versions.node} cannot load the TypeScript verifier: run it as ` +
        "`npm run verify:audit-export -- <args>` (the repository's Node 22), or with Node 22.18 or later.",
    );
  }
  const { verifyAuditExport } = await import("../src/audit/audit-export-format.ts");
  let text;
  let keySet;
  try {
    [text, keySet] = await Promise.all([readInput(positionals[0]), loadKeySet(values)]);
  } catch (error) {
    fail(`Could not read the input: ${error.message}`);
  }
  if (!Array.isArray(keySet?.keys)) fail("The key set has no `keys` array (expected a JWK set).");
  const verdict = await verifyAuditExport(text, keySet);
  process.stdout.write(values.json ? `${JSON.stringify(verdict, null, 2)}\n` : describe(verdict));
  process.exitCode = verdict.ok ? 0 : 1;
}

await main();
