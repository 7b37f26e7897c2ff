/**
 * SECURITY.md case 16, shared by the request-bodies-*.property.test.ts files: every public JSON
 * endpoint gets ≥ 1,000 generated bodies through the real worker (650 mixed hostile + 275
 * schema-shaped + 25 oversize + 50 with a wrong content type): oversize, huge arrays, deep
 * nesting, NUL, lone surrogates, numbers as strings, `__proto__`/`constructor` keys, invalid
 * JSON, invalid UTF-8. For every single request:
 *
 * - the status is one the endpoint may legally give, never 5xx and never a silent 429;
 * - every 4xx is problem+json with a known `code`;
 * - a rejection changes nothing (row counts of tenants/data_keys/api_keys/audit_log/keyring,
 *   a fingerprint over every api_keys row, and the target key's row are compared before/after);
 * - a 2xx (the random body happened to be valid) has exactly the effect that outcome implies;
 * - a body over 64 KiB is 413, and a body at or under it never is;
 * - Object.prototype is never polluted.
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { parseKey } from "../../src/crypto/keys";
import { VERIFY_CODES } from "../../src/keys/verify-key";
import { createTenant } from "../helpers/api";
import {
  contentTypeArb,
  FIELDS,
  type FieldMap,
  type GeneratedBody,
  hostileBodyArb,
  MAX_BODY_BYTES,
  oversizeTextArb,
  schemaShapedTextArb,
  validTextArb,
} from "./body-arbitraries";
import {
  type Body,
  byteLength,
  type Counts,
  counts,
  delta,
  expectNoPrototypePollution,
  expectNotRateLimited,
  expectProblem,
  NO_CHANGE,
  send,
  TenantBudget,
} from "./worker-support";

type Delta = ReturnType<typeof delta>;

interface RunContext {
  path: string;
  bearer: string;
  targetId: string | null;
}

interface Endpoint {
  label: string;
  method: "POST" | "PATCH";
  fields: FieldMap;
  required: string[];
  /** Every status this endpoint may legally answer a generated body with. */
  allowed: number[];
  /** bootstrap: the operator token, no tenant budget; key: a tenant admin key; none: unauthenticated. */
  auth: "bootstrap" | "key" | "none";
  /** Whether the endpoint acts on an existing key (PATCH, rotate). */
  target: boolean;
  path: (targetId: string | null) => string;
  /** Checks a 2xx is a legal outcome with exactly the implied row changes; returns true if the target was consumed. */
  onSuccess: (status: number, body: Record<string, unknown>, change: Delta, ctx: RunContext) => boolean;
}

const ENDPOINTS: Endpoint[] = [
  {
    label: "POST /api/v1/tenants",
    method: "POST",
    fields: FIELDS.tenants,
    required: ["name"],
    allowed: [201, 400, 413, 415, 422],
    auth: "bootstrap",
    target: false,
    path: () => "/api/v1/tenants",
    onSuccess: (status, body, change) => {
      expect(status).toBe(201);
      const tenant = body.tenant as { id: string; name: string; key_prefix: string };
      expect(tenant.id).toMatch(/^ten_/);
      expect(tenant.name.length).toBeGreaterThan(0);
      const parsed = parseKey(body.admin_key as string);
      expect(parsed?.prefix).toBe(tenant.key_prefix);
      expect(change).toEqual({ tenants: 1, dataKeys: 1, apiKeys: 1, auditLog: 2, keyring: 0 });
      return false;
    },
  },
  {
    label: "POST /api/v1/keys",
    method: "POST",
    fields: FIELDS.createKey,
    required: ["name"],
    allowed: [201, 400, 413, 415, 422],
    auth: "key",
    target: false,
    path: () => "/api/v1/keys",
    onSuccess: (status, body, change) => {
      expect(status).toBe(201);
      expect(parseKey(body.key as string)).not.toBeNull();
      expect((body.name as string).trim().length).toBeGreaterThan(0);
      const made = body.backup_key ? 2 : 1;
      expect(body.backup_key !== undefined).toBe(body.security_level === "enterprise");
      expect(change).toEqual({ tenants: 0, dataKeys: 0, apiKeys: made, auditLog: made, keyring: 0 });
      return false;
    },
  },
  {
    label: "PATCH /api/v1/keys/{id}",
    method: "PATCH",
    fields: FIELDS.updateKey,
    required: [],
    allowed: [200, 400, 413, 415, 422],
    auth: "key",
    target: true,
    path: (id) => `/api/v1/keys/${id}`,
    onSuccess: (status, body, change, ctx) => {
      expect(status).toBe(200);
      expect(body.id).toBe(ctx.targetId);
      expect(change).toEqual({ ...NO_CHANGE, auditLog: 1 });
      return false;
    },
  },
  {
    label: "POST /api/v1/keys/{id}/rotate",
    method: "POST",
    fields: FIELDS.rotateKey,
    required: [],
    allowed: [201, 400, 409, 413, 415, 422],
    auth: "key",
    target: true,
    path: (id) => `/api/v1/keys/${id}/rotate`,
    onSuccess: (status, body, change, ctx) => {
      expect(status).toBe(201);
      expect((body.previous as { id: string }).id).toBe(ctx.targetId);
      expect(parseKey(body.key as string)).not.toBeNull();
      expect(change).toEqual({ ...NO_CHANGE, apiKeys: 1, auditLog: 1 });
      return true; // a rotated key cannot be rotated again: use a fresh target
    },
  },
  {
    label: "POST /api/v1/keys/verify",
    method: "POST",
    fields: FIELDS.verifyKey,
    required: ["key"],
    allowed: [200, 400, 413, 415, 422],
    auth: "key",
    target: false,
    path: () => "/api/v1/keys/verify",
    onSuccess: (status, body, change) => {
      expect(status).toBe(200);
      // Generated keys are never real ones: always a well-formed negative verdict.
      expect(body.valid).toBe(false);
      expect(VERIFY_CODES).toContain(body.code);
      expect(change).toEqual(NO_CHANGE);
      return false;
    },
  },
  {
    label: "POST /api/v1/auth/session",
    method: "POST",
    fields: FIELDS.session,
    required: ["key"],
    // No generated key is real, so a 2xx here would be an authentication bypass.
    allowed: [400, 401, 413, 415, 422],
    auth: "none",
    target: false,
    path: () => "/api/v1/auth/session",
    onSuccess: () => {
      throw new Error("a generated body started a session");
    },
  },
];

/** Drives one endpoint with generated bodies and checks every response. */
class EndpointDriver {
  private readonly budget: TenantBudget;
  private target: { tenantId: string; id: string } | null = null;
  readonly seen = new Map<number, number>();
  /**
   * The snapshot taken after the previous run. Nothing else writes counted rows between runs, so
   * it is the next run's "before" unless this driver set something up in between.
   */
  private cached: { generation: number; targetId: string | null; counts: Counts } | null = null;
  private refreshes = 0;

  constructor(private readonly endpoint: Endpoint) {
    this.budget = new TenantBudget(endpoint.label);
  }

  private async context(): Promise<RunContext> {
    if (this.endpoint.auth === "bootstrap") {
      return { path: this.endpoint.path(null), bearer: env.BOOTSTRAP_TOKEN, targetId: null };
    }
    if (this.endpoint.auth === "none") return { path: this.endpoint.path(null), bearer: "", targetId: null };
    let tenant = await this.budget.take(1);
    if (this.endpoint.target && this.target?.tenantId !== tenant.id) {
      const fresh = await this.budget.newKey("property target");
      tenant = fresh.tenant;
      this.target = { tenantId: fresh.tenant.id, id: fresh.id };
    }
    const targetId = this.endpoint.target ? (this.target?.id ?? null) : null;
    return { path: this.endpoint.path(targetId), bearer: tenant.adminKey, targetId };
  }

  async run(body: Body, contentType: string | null = "application/json"): Promise<number> {
    const ctx = await this.context();
    const reusable =
      this.cached !== null &&
      this.cached.generation === this.budget.generation &&
      this.cached.targetId === ctx.targetId;
    const before: Counts = reusable && this.cached ? this.cached.counts : await counts(ctx.targetId);
    const response = await send(this.endpoint.method, ctx.path, { body, contentType, bearer: ctx.bearer });
    const { status } = response;
    expectNotRateLimited(status, this.endpoint.label);
    this.seen.set(status, (this.seen.get(status) ?? 0) + 1);
    expect(status, `${this.endpoint.label} answered ${status}: ${response.text.slice(0, 300)}`).toBeLessThan(
      500,
    );
    expect(this.endpoint.allowed, `${this.endpoint.label} gave status ${status}`).toContain(status);
    const after = await counts(ctx.targetId);
    const size = byteLength(body);
    if (size > MAX_BODY_BYTES) expect(status).toBe(413);
    else if (!Number.isNaN(size)) expect(status).not.toBe(413);

    if (status >= 400) {
      expectProblem(response);
      expect(delta(before, after), "a rejected request changed row counts").toEqual(NO_CHANGE);
      expect(after.apiKeysFingerprint, "a rejected request modified an api_keys row").toBe(
        before.apiKeysFingerprint,
      );
      expect(after.target, "a rejected request modified the target key").toBe(before.target);
    } else {
      expect(response.headers.get("content-type")).toMatch(/^application\/json/);
      const consumed = this.endpoint.onSuccess(status, JSON.parse(response.text), delta(before, after), ctx);
      // A rotated key answers 409 to further rotations, which is itself a legal rejection worth
      // exercising; a fresh target is minted only for the first few successes (each costs writes).
      if (consumed && this.refreshes < MAX_TARGET_REFRESHES) {
        this.refreshes += 1;
        this.target = null;
      }
    }
    this.cached = { generation: this.budget.generation, targetId: ctx.targetId, counts: after };
    expectNoPrototypePollution();
    return status;
  }

  /** A fresh target after a successful rotation (the old one now answers 409). */
  async refreshTargetIfConsumed(): Promise<void> {
    if (this.endpoint.target && this.target === null) {
      const fresh = await this.budget.newKey("property target");
      this.target = { tenantId: fresh.tenant.id, id: fresh.id };
    }
  }
}

async function drive(endpoint: Endpoint, arb: fc.Arbitrary<GeneratedBody>, numRuns: number) {
  const driver = new EndpointDriver(endpoint);
  await fc.assert(
    fc.asyncProperty(arb, async ({ body }) => {
      await driver.refreshTargetIfConsumed();
      await driver.run(body);
    }),
    { numRuns },
  );
  return driver.seen;
}

// 650 mixed + 275 schema-shaped + 25 oversize + 50 wrong-content-type = 1,000 generated bodies
// per endpoint (plus the two 64 KiB boundary bodies and the deep-nesting cases).
const MIXED_RUNS = 650;
const SHAPED_RUNS = 275;
const OVERSIZE_RUNS = 25;
const CONTENT_TYPE_RUNS = 50;
const MAX_TARGET_REFRESHES = 15;
if (MIXED_RUNS + SHAPED_RUNS + OVERSIZE_RUNS + CONTENT_TYPE_RUNS < 1_000) {
  throw new Error("SECURITY.md case 16 needs at least 1,000 generated bodies per endpoint");
}

/**
 * Registers the property suite for the named endpoints. Each test file takes a share of the
 * endpoints so vitest can run them on separate workers (each file also gets its own storage).
 */
export function describeRequestBodyProperties(labels: string[]): void {
  const endpoints = ENDPOINTS.filter((endpoint) => labels.includes(endpoint.label));
  if (endpoints.length !== labels.length) throw new Error(`unknown endpoint in ${labels.join(", ")}`);

  // The first unseal of a fresh database writes the keyring row; do it before any counting.
  beforeAll(async () => {
    await createTenant("keyring warm-up");
  });

  describe.each(endpoints)("$label", (endpoint) => {
    it(`${MIXED_RUNS} mixed hostile bodies: only legal 2xx or problem+json 4xx, and a rejection changes nothing`, async () => {
      const seen = await drive(endpoint, hostileBodyArb(endpoint.fields, endpoint.required), MIXED_RUNS);
      // The generator must actually reach validation failures, parse failures and the size cap.
      expect(seen.get(422) ?? 0).toBeGreaterThan(0);
      expect(seen.get(400) ?? 0).toBeGreaterThan(0);
      expect(seen.get(413) ?? 0).toBeGreaterThan(0);
    });

    it(`${SHAPED_RUNS} schema-shaped bodies (valid and hostile field values, dangerous keys): same guarantees`, async () => {
      const arb = fc.oneof(
        {
          weight: 3,
          arbitrary: schemaShapedTextArb(endpoint.fields).map((body) => ({ kind: "shaped", body })),
        },
        {
          weight: 1,
          arbitrary: validTextArb(endpoint.fields, endpoint.required).map((body) => ({
            kind: "valid",
            body,
          })),
        },
      );
      const seen = await drive(endpoint, arb, SHAPED_RUNS);
      const successes = [...seen].filter(([status]) => status < 300).reduce((n, [, count]) => n + count, 0);
      // Valid bodies do happen, and are then handled as real requests (except the session endpoint,
      // where no generated key is real).
      if (endpoint.auth !== "none") expect(successes).toBeGreaterThan(0);
    });

    it("bodies over 64 KiB are 413 whether sent with a Content-Length or streamed without one", async () => {
      const driver = new EndpointDriver(endpoint);
      await fc.assert(
        fc.asyncProperty(oversizeTextArb, fc.boolean(), async (text, streamed) => {
          const bytes = new TextEncoder().encode(text);
          const body: Body = streamed
            ? new ReadableStream<Uint8Array>({
                start(controller) {
                  for (let i = 0; i < bytes.length; i += 8_192) controller.enqueue(bytes.slice(i, i + 8_192));
                  controller.close();
                },
              })
            : bytes;
          expect(await driver.run(body)).toBe(413);
        }),
        { numRuns: OVERSIZE_RUNS },
      );
    });

    it("a body of exactly 64 KiB is not 413, one byte more is", async () => {
      const driver = new EndpointDriver(endpoint);
      const exact = `{"x":"${"a".repeat(MAX_BODY_BYTES - 8)}"}`;
      expect(new TextEncoder().encode(exact).byteLength).toBe(MAX_BODY_BYTES);
      expect(await driver.run(exact)).not.toBe(413);
      expect(await driver.run(`${exact} `)).toBe(413);
    });

    // Was a 500 until toApiError mapped @hono/zod-openapi's HTTPException(415) (commit ab8c218).
    it("a wrong or missing Content-Type is 415 problem+json and changes nothing", async () => {
      const driver = new EndpointDriver(endpoint);
      await fc.assert(
        fc.asyncProperty(
          validTextArb(endpoint.fields, endpoint.required),
          contentTypeArb,
          async (body, contentType) => {
            const status = await driver.run(body, contentType);
            expect(status).toBe(415);
          },
        ),
        { numRuns: CONTENT_TYPE_RUNS },
      );
    });

    // Regression: a recursive walk once overflowed the stack on deep bodies (500).
    it("JSON nested 8,000 to 30,000 levels deep (under 64 KiB) is a 4xx, never a 5xx", async () => {
      const driver = new EndpointDriver(endpoint);
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 8_000, max: 30_000 }),
          fc.constantFrom("array", "object", "in-field"),
          async (depth, shape) => {
            const nested =
              shape === "object"
                ? `${'{"a":'.repeat(Math.min(depth, 10_000))}1${"}".repeat(Math.min(depth, 10_000))}`
                : `${"[".repeat(depth)}${"]".repeat(depth)}`;
            const body = shape === "in-field" ? `{"${Object.keys(endpoint.fields)[0]}":${nested}}` : nested;
            expect(byteLength(body)).toBeLessThanOrEqual(MAX_BODY_BYTES);
            await driver.run(body);
          },
        ),
        { numRuns: 10 },
      );
    });
  });
}
