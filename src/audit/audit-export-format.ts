/**
 * The audit export's NDJSON format and its offline verifier: one module, imported by the Worker (which
 * writes the lines), by the tests, and by scripts/verify-audit-export.mjs (run by Node, which strips the
 * types: this file imports nothing but `jose`, and uses only syntax Node can erase).
 *
 * The export is one line per audit row, then one seal line:
 *   {"type":"row","seq":7,"time":"…","actor":{"type":"key","id":"…"},"action":"…",
 *    "subject":{"type":"credential","id":"…"},"request_id":"…","detail":{…},"prev_hash":"…","hash":"…","sig":"…"}
 *   {"type":"seal","jws":"<compact JWS>"}
 *
 * Why each line is signed. `hash` and `prev_hash` are the tenant's audit chain: HMAC-SHA-256 under a key that
 * never leaves the deployment (audit-log.ts `chainHash`), so nobody offline can recompute them, and a line
 * whose `detail` was edited still links perfectly. Each line therefore carries an Ed25519 signature
 * (RFC 8032) by the deployment's export key over its tenant and every field, which anyone holding the
 * public key can check: an altered line is named by itself, not merely detected somewhere. The seal (a JWS,
 * RFC 7515, `alg` EdDSA, RFC 8037) binds the range: tenant, first and last seq, row count, the hash before
 * the first line and the hash of the last, and the deployment's own chain verdict at export time. Removing,
 * adding or reordering lines breaks the seq run or the linkage; cutting the tail loses the seal or
 * contradicts its count.
 */
import { base64url, compactVerify, decodeProtectedHeader, importJWK, type JWK } from "jose";

export const AUDIT_EXPORT_FORMAT = 1;
/** The seal's JWS `typ` and the payload's `typ`. */
export const AUDIT_SEAL_TYPE = "keywarden-audit-export-seal";
/** Ed25519 (RFC 8037 names the JWS algorithm EdDSA). */
export const AUDIT_SEAL_ALG = "EdDSA";
const LINE_TAG = "keywarden-audit-export-line";
/** Problems listed before the verifier stops counting (an export of a wrong tenant would list every line). */
export const MAX_REPORTED_PROBLEMS = 100;

export interface ExportRow {
  type: "row";
  seq: number;
  time: string;
  actor: { type: string; id: string };
  action: string;
  subject: { type: string; id: string };
  request_id: string;
  detail: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

export type SignedExportRow = ExportRow & { sig: string };

/** The deployment's chain verdict when it sealed the export (the same reasons as GET /audit/verify). */
export interface SealChainVerdict {
  ok: boolean;
  broken_at_seq?: number;
  reason?: string;
  horizon?: { first_seq: number; moved_at: string };
}

export interface SealPayload {
  typ: typeof AUDIT_SEAL_TYPE;
  format: typeof AUDIT_EXPORT_FORMAT;
  tenant: string;
  /** The first seq asked for (or the chain's first retained one); `to_seq` is `from_seq - 1` when empty. */
  from_seq: number;
  to_seq: number;
  rows: number;
  /** The chain hash before the first line (null when no row is exported). */
  first_prev_hash: string | null;
  /** The last line's hash (null when no row is exported). */
  head_hash: string | null;
  chain: SealChainVerdict;
  sealed_at: string;
}

/**
 * The bytes a line's signature covers: a JSON array with one fixed position per field, preceded by a tag,
 * the format and the tenant (a line cannot be replayed into another tenant's export). `detail` is the parsed
 * value, which JSON.stringify writes back the same way on both sides (key order and number form included).
 */
export function lineSigningInput(tenant: string, row: ExportRow): Uint8Array<ArrayBuffer> {
  return textBytes(
    JSON.stringify([
      LINE_TAG,
      AUDIT_EXPORT_FORMAT,
      tenant,
      row.seq,
      row.time,
      row.actor.type,
      row.actor.id,
      row.action,
      row.subject.type,
      row.subject.id,
      row.request_id,
      row.detail,
      row.prev_hash,
      row.hash,
    ]),
  );
}

/** UTF-8 bytes; always on a plain ArrayBuffer, which the WebCrypto typings ask for. */
function textBytes(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(text) as Uint8Array<ArrayBuffer>;
}

/** One NDJSON line for a row, with its signature (`sign` returns the raw Ed25519 signature). */
export async function signedRowLine(
  tenant: string,
  row: ExportRow,
  sign: (data: Uint8Array<ArrayBuffer>) => Promise<ArrayBuffer>,
): Promise<string> {
  const sig = base64url.encode(new Uint8Array(await sign(lineSigningInput(tenant, row))));
  return `${JSON.stringify({ ...row, sig } satisfies SignedExportRow)}\n`;
}

export function sealLine(jws: string): string {
  return `${JSON.stringify({ type: "seal", jws })}\n`;
}

// ---------------------------------------------------------------------------------------------------------
// Offline verification.

export interface ExportProblem {
  /** 1-based line number in the file. */
  line: number;
  seq?: number;
  reason: string;
}

export interface ExportVerdict {
  ok: boolean;
  /** From the seal, once its signature verified. */
  tenant: string | null;
  from_seq: number | null;
  to_seq: number | null;
  /** Row lines read. */
  rows: number;
  /** The seal's key id. */
  kid: string | null;
  problems: ExportProblem[];
  /** More problems were found than MAX_REPORTED_PROBLEMS. */
  truncated: boolean;
}

export interface JwkSet {
  keys: JWK[];
}

const HASH = /^[0-9a-f]{64}$/;
/** The members of a row line, in the order the export writes them (docs/audit-export.md). */
export const ROW_KEYS = [
  "type",
  "seq",
  "time",
  "actor",
  "action",
  "subject",
  "request_id",
  "detail",
  "prev_hash",
  "hash",
  "sig",
] as const;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isSeq(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isPair(value: unknown): value is { type: string; id: string } {
  return (
    isObject(value) &&
    Object.keys(value).length === 2 &&
    typeof value.type === "string" &&
    typeof value.id === "string"
  );
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A row line with exactly the documented fields, or the reason it is not one. */
function parseRow(value: unknown): SignedExportRow | string {
  if (!isObject(value) || value.type !== "row") return "not a row line";
  const keys = Object.keys(value);
  const unexpected = keys.filter((key) => !(ROW_KEYS as readonly string[]).includes(key));
  if (unexpected.length > 0)
    return `unexpected field ${unexpected.map((key) => JSON.stringify(key)).join(", ")}`;
  const missing = ROW_KEYS.filter((key) => !keys.includes(key));
  if (missing.length > 0) return `missing field ${missing.join(", ")}`;
  const ok =
    isSeq(value.seq) &&
    typeof value.time === "string" &&
    isPair(value.actor) &&
    typeof value.action === "string" &&
    isPair(value.subject) &&
    typeof value.request_id === "string" &&
    isObject(value.detail) &&
    typeof value.prev_hash === "string" &&
    HASH.test(value.prev_hash) &&
    typeof value.hash === "string" &&
    HASH.test(value.hash) &&
    typeof value.sig === "string";
  return ok ? (value as unknown as SignedExportRow) : "a field has the wrong type";
}

function parseSealPayload(bytes: Uint8Array): SealPayload | null {
  const value = parseJson(new TextDecoder().decode(bytes));
  if (!isObject(value) || value.typ !== AUDIT_SEAL_TYPE || value.format !== AUDIT_EXPORT_FORMAT) return null;
  const hashOrNull = (field: unknown) => field === null || (typeof field === "string" && HASH.test(field));
  const chain = value.chain;
  const ok =
    typeof value.tenant === "string" &&
    isSeq(value.from_seq) &&
    isSeq(value.to_seq) &&
    isSeq(value.rows) &&
    hashOrNull(value.first_prev_hash) &&
    hashOrNull(value.head_hash) &&
    isObject(chain) &&
    typeof chain.ok === "boolean" &&
    typeof value.sealed_at === "string";
  return ok ? (value as unknown as SealPayload) : null;
}

/** The seal's verified payload and the key that signed it, or the reason it cannot be trusted. */
async function openSeal(
  jws: string,
  jwks: JwkSet,
): Promise<{ payload: SealPayload; key: CryptoKey; kid: string } | string> {
  let kid: unknown;
  try {
    const header = decodeProtectedHeader(jws);
    if (header.alg !== AUDIT_SEAL_ALG) return `the seal's algorithm is ${String(header.alg)}, not EdDSA`;
    kid = header.kid;
  } catch {
    return "the seal is not a compact JWS";
  }
  const jwk = jwks.keys.find((candidate) => candidate.kid === kid);
  if (typeof kid !== "string" || !jwk)
    return `no key in the key set has the seal's kid ${JSON.stringify(kid)}`;
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || "d" in jwk)
    return "the seal's key is not an Ed25519 public key";
  const key = await importJWK({ ...jwk, alg: AUDIT_SEAL_ALG }, AUDIT_SEAL_ALG);
  if (!(key instanceof CryptoKey)) return "the seal's key is not an Ed25519 public key";
  try {
    const { payload, protectedHeader } = await compactVerify(jws, key, { algorithms: [AUDIT_SEAL_ALG] });
    if (protectedHeader.typ !== AUDIT_SEAL_TYPE) return "the seal's typ is not an audit export seal";
    const parsed = parseSealPayload(payload);
    return parsed ? { payload: parsed, key, kid } : "the seal's payload is not an audit export seal";
  } catch {
    return "the seal's signature does not verify: the seal was altered or made with another key";
  }
}

async function signatureValid(key: CryptoKey, tenant: string, row: SignedExportRow): Promise<boolean> {
  let signature: Uint8Array<ArrayBuffer>;
  try {
    signature = base64url.decode(row.sig) as Uint8Array<ArrayBuffer>;
  } catch {
    return false;
  }
  const { sig: _sig, ...content } = row;
  return crypto.subtle.verify({ name: "Ed25519" }, key, signature, lineSigningInput(tenant, content));
}

/**
 * Checks an export offline against the deployment's public key set (GET /api/v1/audit/export-key): the
 * seal's signature, every line's signature, the seq run and the hash linkage, the seal's range, count and
 * head, and the deployment's own chain verdict. Every problem names its line (and seq when it has one).
 */
export async function verifyAuditExport(text: string, jwks: JwkSet): Promise<ExportVerdict> {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const verdict: ExportVerdict = {
    ok: false,
    tenant: null,
    from_seq: null,
    to_seq: null,
    rows: 0,
    kid: null,
    problems: [],
    truncated: false,
  };
  const report = (problem: ExportProblem) => {
    if (verdict.problems.length < MAX_REPORTED_PROBLEMS) verdict.problems.push(problem);
    else verdict.truncated = true;
  };
  const sealAt = lines.length;
  const last = parseJson(lines[sealAt - 1] ?? "");
  if (!isObject(last) || last.type !== "seal" || typeof last.jws !== "string") {
    report({ line: Math.max(sealAt, 1), reason: "the last line is not a seal: the export is incomplete" });
    return verdict;
  }
  const seal = await openSeal(last.jws, jwks);
  if (typeof seal === "string") {
    report({ line: sealAt, reason: seal });
    return verdict;
  }
  const { payload, key } = seal;
  Object.assign(verdict, { tenant: payload.tenant, from_seq: payload.from_seq, to_seq: payload.to_seq });
  verdict.kid = seal.kid;

  let previousHash = payload.first_prev_hash;
  let lastSeq = payload.from_seq - 1;
  for (let index = 0; index < sealAt - 1; index++) {
    const line = index + 1;
    const row = parseRow(parseJson(lines[index] ?? ""));
    if (typeof row === "string") {
      report({ line, reason: `not a valid row line (${row})` });
      previousHash = null;
      continue;
    }
    verdict.rows += 1;
    const expectedSeq = payload.from_seq + index;
    if (!(await signatureValid(key, payload.tenant, row))) {
      report({
        line,
        seq: row.seq,
        reason: "its signature does not match its content: the line was altered",
      });
    }
    if (row.seq !== expectedSeq) {
      report({
        line,
        seq: row.seq,
        reason: `seq ${row.seq} where ${expectedSeq} was expected: a line was removed, added or moved`,
      });
    } else if (previousHash !== null && row.prev_hash !== previousHash) {
      report({
        line,
        seq: row.seq,
        reason: "its prev_hash is not the previous line's hash: the chain is broken",
      });
    }
    previousHash = row.hash;
    lastSeq = row.seq;
  }

  if (verdict.rows !== payload.rows || lastSeq !== payload.to_seq) {
    report({
      line: sealAt,
      reason: `the seal covers ${payload.rows} rows up to seq ${payload.to_seq}, the file holds ${verdict.rows} up to seq ${lastSeq}`,
    });
  } else if (payload.rows > 0 && previousHash !== payload.head_hash) {
    report({ line: sealAt, reason: "the last line's hash is not the seal's head hash" });
  }
  if (!payload.chain.ok) {
    const at = payload.chain.broken_at_seq === undefined ? "" : ` at seq ${payload.chain.broken_at_seq}`;
    report({
      line: sealAt,
      reason: `the deployment found its audit chain broken${at} when it sealed this export (${payload.chain.reason ?? "no reason given"})`,
    });
  }
  verdict.ok = verdict.problems.length === 0;
  return verdict;
}
