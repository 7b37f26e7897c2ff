/**
 * threat model case 16 for the two export/import bodies (POST /api/v1/export, POST /api/v1/import): ≥ 1,000
 * generated bodies each (650 mixed hostile, 275 schema-shaped, 25 oversize, 50 with a wrong content type)
 * through the real worker, with the generators of body-arbitraries.ts. The shared driver
 * (request-bodies-shared.ts) holds every body over 64 KiB to 413, which the import route deliberately does
 * not (it takes a whole tenant's export, up to 16 MiB), so these two run through standalone-bodies.ts, with
 * the same checks:
 * - no 5xx, no silent 429, every 4xx problem+json with a known code;
 * - a rejection writes nothing at all (the write watch over every table) and calls nothing out;
 * - a 2xx has exactly its effect: an export adds its one audit row and nothing else; a dry run writes
 *   nothing; an applied import writes credentials and audit rows only (the bundle's key is a conflict);
 * - Object.prototype is never polluted.
 */
import fc from "fast-check";
import { beforeAll, expect, inject } from "vitest";
import { createTenant } from "../helpers/api";
import { storeStripe } from "../portability/export-support";
import { type FieldMap, hostileStringArb } from "./body-arbitraries";
import { describeStandaloneBodyProperties, type StandaloneEndpoint } from "./standalone-bodies";
import { useMockNetwork } from "./targets";
import { NO_CHANGE, send } from "./worker-support";

const PASSPHRASE = "property passphrase of the suite";
/**
 * Each valid body runs PBKDF2 at 100,000 iterations (export and import alike), so these properties take
 * longer than the suite's 30 s default on a loaded machine; the bound is generous, not a race.
 */
const TIMEOUT_MS = 180_000 * inject("fcRunsFactor");
const str = (value: unknown) => JSON.stringify(value);
/** RFC 7517 appendix A.1's P-256 public key: a valid point, usable as an export recipient. */
const P256 = {
  kty: "EC",
  crv: "P-256",
  x: "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
  y: "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
};

/** The real export (to P256) the import bodies carry; made once the worker is up. */
let realExport = "";
const realExportArb = fc.constant(null).map(() => str(realExport));

/** Valid passphrases are a minority: each one costs a 100,000-iteration PBKDF2. */
const passphraseArb = fc.oneof(
  { weight: 1, arbitrary: fc.constant(str(PASSPHRASE)) },
  { weight: 2, arbitrary: fc.string({ maxLength: 24 }).map(str) },
  { weight: 3, arbitrary: hostileStringArb.map(str) },
);
/** RFC 7517 appendix A.2: the private half of P256. */
const P256_PRIVATE = { ...P256, d: "870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE" };
const totpArb = fc.oneof(fc.stringMatching(/^[0-9]{6}$/), fc.string({ maxLength: 12 })).map(str);

const EXPORT_FIELDS: FieldMap = {
  passphrase: passphraseArb,
  public_key: fc.constantFrom(
    str(P256),
    str({ ...P256, alg: "ECDH-ES+A256KW" }),
    str(P256_PRIVATE),
    str({ kty: "RSA", n: "AQAB", e: "AQAB" }),
    str({ kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" }),
  ),
  stream: fc.boolean().map(str),
  totp: totpArb,
};
const exportValidArb = fc
  .tuple(fc.integer({ min: 0, max: 3 }), fc.option(fc.boolean(), { nil: undefined }))
  .map(([recipient, stream]) => [recipient > 0, stream] as const)
  .map(([toKey, stream]) =>
    str({
      ...(toKey ? { public_key: P256 } : { passphrase: PASSPHRASE }),
      ...(stream === undefined ? {} : { stream }),
    }),
  );

const IMPORT_FIELDS: FieldMap = {
  jwe: fc.oneof(realExportArb, hostileStringArb.map(str), fc.string({ maxLength: 400 }).map(str)),
  passphrase: passphraseArb,
  private_key: fc.constantFrom(str(P256_PRIVATE), str(P256)),
  dry_run: fc.boolean().map(str),
  totp: totpArb,
};
const importValidArb = fc
  .boolean()
  .map((dryRun) => `{"jwe":${str(realExport)},"private_key":${str(P256_PRIVATE)},"dry_run":${dryRun}}`);

const SUBJECTS: StandaloneEndpoint[] = [
  {
    path: "/api/v1/export",
    fields: EXPORT_FIELDS,
    valid: exportValidArb,
    oversize: { statuses: [413] },
    timeoutMs: TIMEOUT_MS,
    onSuccess: ({ status, text, headers }, { change }) => {
      expect(status).toBe(200);
      expect(headers.get("cache-control")).toBe("no-store");
      if ((headers.get("content-type") ?? "").startsWith("application/x-ndjson"))
        expect(text.trimEnd().split("\n").length).toBeGreaterThanOrEqual(3);
      else expect((JSON.parse(text) as { jwe: string }).jwe.split(".")).toHaveLength(5);
      expect(change).toEqual({ ...NO_CHANGE, auditLog: 1 });
    },
  },
  {
    path: "/api/v1/import",
    fields: IMPORT_FIELDS,
    valid: importValidArb,
    oversize: {
      statuses: [413, 422],
      note: "the import takes up to 16 MiB: a large body is read, then invalid",
    },
    timeoutMs: TIMEOUT_MS,
    onSuccess: ({ status, text }, { change }, request) => {
      expect(status).toBe(200);
      const body = JSON.parse(text) as { dry_run: boolean; plan: Record<string, { conflicts: unknown[] }> };
      expect(body.dry_run).toBe((request as { dry_run?: boolean }).dry_run === true);
      // The exporting tenant still holds its admin key: that key is a conflict, never a copy.
      expect(body.plan.keys?.conflicts).toHaveLength(1);
      if (body.dry_run) expect(change).toEqual(NO_CHANGE);
      else {
        expect({ ...change, credentials: 0, credentialVersions: 0, auditLog: 0 }).toEqual(NO_CHANGE);
        expect(change.auditLog).toBeGreaterThanOrEqual(1);
      }
    },
  },
];

useMockNetwork();
beforeAll(async () => {
  const source = await createTenant("portability property source");
  await storeStripe(source, "Property credential");
  const response = await send("POST", "/api/v1/export", {
    bearer: source.adminKey,
    body: str({ public_key: P256 }),
  });
  expect(response.status).toBe(200);
  realExport = (JSON.parse(response.text) as { jwe: string }).jwe;
});

for (const subject of SUBJECTS) describeStandaloneBodyProperties(subject);
