/**
 * threat model case 16 for the two export/import bodies (POST /api/v1/export, POST /api/v1/import): ≥ 1,000
 * generated bodies each (650 mixed hostile, 275 schema-shaped, 25 oversize, 50 with a wrong content type)
 * through the real worker, with the generators of body-arbitraries.ts. The shared driver
 * (request-bodies-shared.ts) holds every body over 64 KiB to 413, which the import route deliberately does
 * not (it takes a whole tenant's export, up to 16 MiB), so these two run here with the same checks:
 * - no 5xx, no silent 429, every 4xx problem+json with a known code;
 * - a rejection writes nothing at all (the write watch over every table) and calls nothing out;
 * - a 2xx has exactly its effect: an export adds its one audit row and nothing else; a dry run writes
 *   nothing; an applied import writes credentials and audit rows only (the bundle's key is a conflict);
 * - Object.prototype is never polluted.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { createTenant } from "../helpers/api";
import { storeStripe } from "../portability/export-support";
import { runs } from "../setup/fast-check";
import {
  contentTypeArb,
  type FieldMap,
  hostileBodyArb,
  hostileStringArb,
  MAX_BODY_BYTES,
  oversizeTextArb,
  schemaShapedTextArb,
} from "./body-arbitraries";
import { takeOutbound, useMockNetwork } from "./targets";
import {
  type Body,
  byteLength,
  counts,
  delta,
  expectNoPrototypePollution,
  expectNotRateLimited,
  expectProblem,
  expectUnchanged,
  NO_CHANGE,
  send,
  TenantBudget,
} from "./worker-support";

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

type Check = (
  status: number,
  text: string,
  headers: Headers,
  change: ReturnType<typeof delta>,
  request: unknown,
) => void;

interface Subject {
  path: string;
  fields: FieldMap;
  valid: fc.Arbitrary<string>;
  onSuccess: Check;
}

const SUBJECTS: Subject[] = [
  {
    path: "/api/v1/export",
    fields: EXPORT_FIELDS,
    valid: exportValidArb,
    onSuccess: (status, text, headers, change) => {
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
    onSuccess: (status, text, _headers, change, request) => {
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

describe.each(SUBJECTS)("POST $path (threat model case 16)", (subject) => {
  const budget = new TenantBudget(`portability ${subject.path}`);

  async function run(body: Body, contentType: string | null = "application/json"): Promise<number> {
    const tenant = await budget.take(1);
    const before = await counts();
    takeOutbound();
    const response = await send("POST", subject.path, { body, contentType, bearer: tenant.adminKey });
    expectNotRateLimited(response.status, subject.path);
    expect(response.status, response.text.slice(0, 300)).toBeLessThan(500);
    const after = await counts();
    expect(takeOutbound(), "an export or import called out").toEqual([]);
    if (response.status >= 400) {
      expectProblem(response);
      expectUnchanged(before, after);
    } else {
      let request: unknown;
      try {
        request = JSON.parse(typeof body === "string" ? body : new TextDecoder().decode(body as Uint8Array));
      } catch {
        request = undefined;
      }
      subject.onSuccess(response.status, response.text, response.headers, delta(before, after), request);
    }
    if (subject.path === "/api/v1/export" && byteLength(body) > MAX_BODY_BYTES)
      expect(response.status).toBe(413);
    expectNoPrototypePollution();
    return response.status;
  }

  it(
    "650 mixed hostile bodies: only legal 2xx or problem+json 4xx, and a rejection changes nothing",
    async () => {
      const seen = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(hostileBodyArb(subject.fields, [], subject.valid), async ({ body }) => {
          const status = await run(body);
          seen.set(status, (seen.get(status) ?? 0) + 1);
        }),
        { numRuns: runs(650) },
      );
      expect(seen.get(422) ?? 0).toBeGreaterThan(0);
      expect(seen.get(400) ?? 0).toBeGreaterThan(0);
      expect(seen.get(200) ?? 0).toBeGreaterThan(0);
    },
    TIMEOUT_MS,
  );

  it(
    "275 schema-shaped bodies (valid and hostile field values, dangerous keys): same guarantees",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            { weight: 3, arbitrary: schemaShapedTextArb(subject.fields) },
            { weight: 1, arbitrary: subject.valid },
          ),
          async (body) => {
            await run(body);
          },
        ),
        { numRuns: runs(275) },
      );
    },
    TIMEOUT_MS,
  );

  it("25 oversize bodies: the export refuses them with 413, the import (16 MiB cap) as invalid; nothing changes", async () => {
    await fc.assert(
      fc.asyncProperty(oversizeTextArb, async (body) => {
        const status = await run(body);
        expect([413, 422]).toContain(status);
      }),
      { numRuns: runs(25) },
    );
  });

  it("50 bodies with a content type that is not JSON: refused, nothing changes", async () => {
    await fc.assert(
      fc.asyncProperty(contentTypeArb, subject.valid, async (contentType, body) => {
        const status = await run(body, contentType);
        if (status < 300) expect(contentType ?? "").toMatch(/json/i);
      }),
      { numRuns: runs(50) },
    );
  });
});
