/**
 * threat model case 16 for POST /api/v1/import/vault: ≥ 1,000 generated bodies (650 mixed hostile, 275
 * schema-shaped, 25 oversize, 50 with a wrong content type) through the real worker, against a Vault KV stand-in
 * holding one valid Stripe secret, with the generators and checks of test/properties:
 * - no 5xx, no silent 429, every 4xx problem+json with a known code;
 * - a rejection writes nothing at all and sends nothing to Vault or anywhere else;
 * - a 2xx has exactly its effect: a dry run, or an import of only unchanged secrets, writes nothing; an import
 *   writes credentials, their versions and audit rows only;
 * - Object.prototype is never polluted.
 */
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { randomBase62 } from "../../src/crypto/random";
import type { VaultImportResult } from "../../src/portability/vault-kv-schemas";
import { stripeKey } from "../credentials/samples";
import {
  contentTypeArb,
  type FieldMap,
  hostileBodyArb,
  hostileStringArb,
  oversizeTextArb,
  schemaShapedTextArb,
} from "../properties/body-arbitraries";
import { takeOutbound, useMockNetwork } from "../properties/targets";
import {
  type Body,
  counts,
  delta,
  expectNoPrototypePollution,
  expectNotRateLimited,
  expectProblem,
  expectUnchanged,
  NO_CHANGE,
  send,
  TenantBudget,
} from "../properties/worker-support";
import { runs } from "../setup/fast-check";
import { network } from "../setup/network";
import { VaultKvStandIn } from "./vault-kv-stand-in";

const PATH = "/api/v1/import/vault";
const ADDR = "https://vault-properties.example.com:8443";
const TOKEN = `hvs.CAES${randomBase62(40)}`;
const vault = new VaultKvStandIn({ addr: ADDR, token: TOKEN });
vault.put("payments/stripe", { secret_key: stripeKey(), owner: "ops" });
vault.put("team/stripe-eu", { secret_key: stripeKey() });

const str = (value: unknown) => JSON.stringify(value);
const entryArb = fc.record(
  {
    path: fc.constantFrom("payments/stripe", "team/", "missing/stripe", "../sys", "/", "a//b"),
    service: fc.constantFrom("stripe", "openai", "no-such-service"),
    environment: fc.constantFrom("development", "production", "moon"),
    name: fc.string({ maxLength: 120 }),
    field_map: fc.constantFrom({ secret_key: "secret_key" }, { secret_key: "NOPE" }, { nope: "x" }),
  },
  { requiredKeys: ["path", "service", "environment"] },
);

const FIELDS: FieldMap = {
  address: fc.oneof(
    fc.constant(str(ADDR)),
    fc.constantFrom("http://127.0.0.1", "https://169.254.169.254", "https://[::1]:8443").map(str),
    hostileStringArb.map(str),
  ),
  token: fc.oneof(fc.constant(str(TOKEN)), hostileStringArb.map(str)),
  namespace: fc.oneof(fc.constantFrom("team-a", "a/b").map(str), hostileStringArb.map(str)),
  mount: fc.oneof(fc.constantFrom("secret", "other", "secret/..").map(str), hostileStringArb.map(str)),
  paths: fc.oneof(fc.array(entryArb, { minLength: 1, maxLength: 3 }).map(str), hostileStringArb.map(str)),
  dry_run: fc.boolean().map(str),
};
const validArb = fc
  .tuple(fc.boolean(), fc.subarray(["payments/stripe", "team/"], { minLength: 1 }))
  .map(([dryRun, paths]) =>
    str({
      address: ADDR,
      token: TOKEN,
      mount: "secret",
      dry_run: dryRun,
      paths: paths.map((path) => ({ path, service: "stripe", environment: "development" })),
    }),
  );

useMockNetwork();
// After the catch-all of useMockNetwork: handlers added later answer first.
beforeAll(() => network.use(...vault.handlers));

describe("POST /api/v1/import/vault (threat model case 16)", () => {
  const budget = new TenantBudget("vault import properties");

  async function run(body: Body, contentType: string | null = "application/json"): Promise<number> {
    const tenant = await budget.take(1);
    const before = await counts();
    const vaultRequests = vault.log.length;
    takeOutbound();
    const response = await send("POST", PATH, { body, contentType, bearer: tenant.adminKey });
    expectNotRateLimited(response.status, PATH);
    expect(response.status, response.text.slice(0, 300)).toBeLessThan(500);
    expect(takeOutbound(), "the import called somewhere other than Vault").toEqual([]);
    const after = await counts();
    expect(response.text).not.toContain(TOKEN);
    if (response.status >= 400) {
      expectProblem(response);
      expectUnchanged(before, after);
      if (response.status !== 422)
        expect(vault.log.length, "a refused body reached Vault").toBe(vaultRequests);
    } else {
      expect(response.status).toBe(200);
      const result = JSON.parse(response.text) as VaultImportResult;
      const change = delta(before, after);
      if (result.dry_run || result.summary.create + result.summary.update === 0)
        expectUnchanged(before, after);
      else {
        // A tenant's first credential also creates its first data key.
        expect({ ...change, credentials: 0, credentialVersions: 0, auditLog: 0, dataKeys: 0 }).toEqual(
          NO_CHANGE,
        );
        expect(change.credentials + change.credentialVersions).toBeGreaterThan(0);
        expect(change.auditLog).toBeGreaterThanOrEqual(2);
      }
    }
    expectNoPrototypePollution();
    return response.status;
  }

  it("650 mixed hostile bodies: only 200 or problem+json 4xx, and a rejection changes nothing", async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(hostileBodyArb(FIELDS, [], validArb), async ({ body }) => {
        const status = await run(body);
        seen.set(status, (seen.get(status) ?? 0) + 1);
      }),
      { numRuns: runs(650) },
    );
    expect(seen.get(422) ?? 0).toBeGreaterThan(0);
    expect(seen.get(400) ?? 0).toBeGreaterThan(0);
    expect(seen.get(200) ?? 0).toBeGreaterThan(0);
  });

  it("275 schema-shaped bodies (valid and hostile field values, dangerous keys): same guarantees", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof({ weight: 3, arbitrary: schemaShapedTextArb(FIELDS) }, { weight: 1, arbitrary: validArb }),
        async (body) => {
          await run(body);
        },
      ),
      { numRuns: runs(275) },
    );
  });

  it("25 oversize bodies are refused with 413, nothing changes", async () => {
    await fc.assert(
      fc.asyncProperty(oversizeTextArb, async (body) => {
        expect(await run(body)).toBe(413);
      }),
      { numRuns: runs(25) },
    );
  });

  it("50 bodies with a content type that is not JSON: refused, nothing changes", async () => {
    await fc.assert(
      fc.asyncProperty(contentTypeArb, validArb, async (contentType, body) => {
        const status = await run(body, contentType);
        if (status < 300) expect(contentType ?? "").toMatch(/json/i);
      }),
      { numRuns: runs(50) },
    );
  });
});
