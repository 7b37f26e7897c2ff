/**
 * threat model case 16 for POST /api/v1/import/vault: ≥ 1,000 generated bodies (650 mixed hostile, 275
 * schema-shaped, 25 oversize, 50 with a wrong content type) through the real worker, against a Vault KV stand-in
 * holding one valid Stripe secret, with the generators and checks of test/properties (standalone-bodies.ts):
 * - no 5xx, no silent 429, every 4xx problem+json with a known code;
 * - a rejection writes nothing at all and sends nothing to Vault or anywhere else;
 * - a 2xx has exactly its effect: a dry run, or an import of only unchanged secrets, writes nothing; an import
 *   writes credentials, their versions and audit rows only;
 * - Object.prototype is never polluted.
 */
import fc from "fast-check";
import { beforeAll, expect } from "vitest";
import { randomBase62 } from "../../src/crypto/random";
import type { VaultImportResult } from "../../src/portability/vault-kv-schemas";
import { stripeKey } from "../credentials/samples";
import { type FieldMap, hostileStringArb } from "../properties/body-arbitraries";
import { describeStandaloneBodyProperties } from "../properties/standalone-bodies";
import { useMockNetwork } from "../properties/targets";
import { expectUnchanged, NO_CHANGE } from "../properties/worker-support";
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

describeStandaloneBodyProperties({
  path: PATH,
  fields: FIELDS,
  valid: validArb,
  oversize: { statuses: [413] },
  onSuccess: ({ status, text }, { before, after, change }) => {
    expect(status).toBe(200);
    const result = JSON.parse(text) as VaultImportResult;
    if (result.dry_run || result.summary.create + result.summary.update === 0) expectUnchanged(before, after);
    else {
      // A tenant's first credential also creates its first data key.
      expect({ ...change, credentials: 0, credentialVersions: 0, auditLog: 0, dataKeys: 0 }).toEqual(
        NO_CHANGE,
      );
      expect(change.credentials + change.credentialVersions).toBeGreaterThan(0);
      expect(change.auditLog).toBeGreaterThanOrEqual(2);
    }
  },
  watch: () => {
    const reached = vault.log.length;
    return ({ status, text }) => {
      expect(text).not.toContain(TOKEN);
      // A 422 may come from Vault's answer (a secret whose fields the catalogue refuses); any other refusal
      // is decided before Vault is asked.
      if (status >= 400 && status !== 422)
        expect(vault.log.length, "a refused body reached Vault").toBe(reached);
    };
  },
});
