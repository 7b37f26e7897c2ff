/**
 * threat model case 16, shared by the request-bodies-*.property.test.ts files: every public JSON
 * endpoint gets ≥ 1,000 generated bodies through the real worker (650 mixed hostile + 275
 * schema-shaped + 25 oversize + 50 with a wrong content type): oversize, huge arrays, deep
 * nesting, NUL, lone surrogates, numbers as strings, `__proto__`/`constructor` keys, invalid
 * JSON, invalid UTF-8. For every single request:
 *
 * - the status is one the endpoint may legally give, never 5xx and never a silent 429;
 * - every 4xx is problem+json with a known `code`;
 * - a rejection changes nothing: the row counts of every table a request can write, fingerprints
 *   that move on any update of api_keys, credentials, data_keys (the encryption counter) and the
 *   channel/rule/policy tables, the target key's or credential's full row, and a target wizard's
 *   whole Durable Object state (what GET /api/v1/wizard/{id} shows, plus its sealed blobs) are
 *   compared before/after; and a rejected request never calls out to the network;
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
import { runs } from "../setup/fast-check";
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
import { MONITORING_ENDPOINTS } from "./endpoints-monitoring";
import { VAULT_ENDPOINTS } from "./endpoints-vault";
import { WIZARD_ENDPOINTS } from "./endpoints-wizard";
import { bindRefs, makeTarget, type Target, type TargetKind, takeOutbound, useMockNetwork } from "./targets";
import {
  type Body,
  byteLength,
  CONTENT_TYPE_RUNS,
  type Counts,
  counts,
  type Delta,
  delta,
  expectNoPrototypePollution,
  expectNotRateLimited,
  expectProblem,
  expectUnchanged,
  MIXED_RUNS,
  NO_CHANGE,
  OVERSIZE_RUNS,
  parsedRequest,
  SHAPED_RUNS,
  send,
  TenantBudget,
  wizardSnapshot,
} from "./worker-support";

export interface RunContext {
  path: string;
  bearer: string;
  /** The api key or credential row compared before/after (null for none or a wizard). */
  targetId: string | null;
  target: Target | null;
  /** The path parameter drawn for this request, if the endpoint has any. */
  variant: string | undefined;
  /** The request body as JSON.parse reads it (undefined when it is not JSON text). */
  request: unknown;
}

/** What a 2xx did, for the endpoint's own checks beyond the row-count delta. */
export interface Effect {
  before: Counts;
  after: Counts;
  /** A target wizard's Durable Object snapshot (state, sealed blobs, issued rows) before/after. */
  wizardBefore: string | null;
  wizardAfter: string | null;
  /** "METHOD url" of every outbound request the worker made while answering. */
  outbound: string[];
  text: string;
  headers: Headers;
}

export interface Endpoint {
  label: string;
  method: "POST" | "PATCH" | "PUT";
  fields: FieldMap;
  required: string[];
  /** Coherent valid bodies, for endpoints whose fields depend on one another; default validTextArb. */
  valid?: fc.Arbitrary<string>;
  /** Every status this endpoint may legally answer a generated body with. */
  allowed: number[];
  /** bootstrap: the operator token, no tenant budget; key: a tenant admin key; none: unauthenticated. */
  auth: "bootstrap" | "key" | "none";
  /** What the endpoint acts on (made fresh per tenant, and after a success that consumes it). */
  target: TargetKind | null;
  /** Path parameters drawn per request (e.g. the service of POST …/keys/{service_id}, or which stored channel). */
  variants?: string[];
  /** Whether the endpoint may call out at all (live checks, channel tests); any other never may. */
  network?: boolean;
  path: (target: Target | null, variant: string | undefined) => string;
  /** Extra request headers (If-Match). */
  headers?: (target: Target) => Record<string, string>;
  /** Checks a 2xx is a legal outcome with exactly the implied changes; returns true if the target was consumed. */
  onSuccess: (
    status: number,
    body: Record<string, unknown>,
    change: Delta,
    ctx: RunContext,
    effect: Effect,
  ) => boolean;
}

/** Rows a 2xx of an endpoint that only writes keys and audit rows must leave alone. */
function expectOnlyKeysWritten(effect: Effect): void {
  expect(effect.after.credentialsFingerprint).toBe(effect.before.credentialsFingerprint);
  expect(effect.after.monitoringFingerprint).toBe(effect.before.monitoringFingerprint);
  expect(effect.outbound).toEqual([]);
}

const KEY_ENDPOINTS: Endpoint[] = [
  {
    label: "POST /api/v1/tenants",
    method: "POST",
    fields: FIELDS.tenants,
    required: ["name"],
    allowed: [201, 400, 413, 415, 422],
    auth: "bootstrap",
    target: null,
    path: () => "/api/v1/tenants",
    onSuccess: (status, body, change, _ctx, effect) => {
      expect(status).toBe(201);
      const tenant = body.tenant as { id: string; name: string; key_prefix: string };
      expect(tenant.id).toMatch(/^ten_/);
      expect(tenant.name.length).toBeGreaterThan(0);
      const parsed = parseKey(body.admin_key as string);
      expect(parsed?.prefix).toBe(tenant.key_prefix);
      expect(change).toEqual({ ...NO_CHANGE, tenants: 1, dataKeys: 1, apiKeys: 1, auditLog: 2 });
      expectOnlyKeysWritten(effect);
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
    target: null,
    path: () => "/api/v1/keys",
    onSuccess: (status, body, change, _ctx, effect) => {
      expect(status).toBe(201);
      expect(parseKey(body.key as string)).not.toBeNull();
      expect((body.name as string).trim().length).toBeGreaterThan(0);
      const made = body.backup_key ? 2 : 1;
      expect(body.backup_key !== undefined).toBe(body.security_level === "enterprise");
      expect(change).toEqual({ ...NO_CHANGE, apiKeys: made, auditLog: made });
      expectOnlyKeysWritten(effect);
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
    target: "key",
    path: (target) => `/api/v1/keys/${target?.rowId}`,
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(200);
      expect(body.id).toBe(ctx.targetId);
      expect(change).toEqual({ ...NO_CHANGE, auditLog: 1 });
      expectOnlyKeysWritten(effect);
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
    target: "key",
    path: (target) => `/api/v1/keys/${target?.rowId}/rotate`,
    onSuccess: (status, body, change, ctx, effect) => {
      expect(status).toBe(201);
      expect((body.previous as { id: string }).id).toBe(ctx.targetId);
      expect(parseKey(body.key as string)).not.toBeNull();
      expect(change).toEqual({ ...NO_CHANGE, apiKeys: 1, auditLog: 1 });
      expectOnlyKeysWritten(effect);
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
    target: null,
    path: () => "/api/v1/keys/verify",
    onSuccess: (status, body, change, _ctx, effect) => {
      expect(status).toBe(200);
      // Generated keys are never real ones: always a well-formed negative verdict.
      expect(body.valid).toBe(false);
      expect(VERIFY_CODES).toContain(body.code);
      expect(change).toEqual(NO_CHANGE);
      expectUnchanged(effect.before, effect.after, "a verification");
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
    target: null,
    path: () => "/api/v1/auth/session",
    onSuccess: () => {
      throw new Error("a generated body started a session");
    },
  },
];

const ENDPOINTS: Endpoint[] = [
  ...KEY_ENDPOINTS,
  ...VAULT_ENDPOINTS,
  ...WIZARD_ENDPOINTS,
  ...MONITORING_ENDPOINTS,
];

/** Drives one endpoint with generated bodies and checks every response. */
export class EndpointDriver {
  private readonly budget: TenantBudget;
  private target: Target | null = null;
  readonly seen = new Map<number, number>();
  /**
   * The snapshot taken after the previous run. Nothing else writes counted rows (or the target
   * wizard) between runs, so it is the next run's "before" unless this driver set something up.
   */
  private cached: {
    generation: number;
    targetId: string | null;
    wizardId: string | null;
    counts: Counts;
    wizard: string | null;
  } | null = null;
  private refreshes = 0;
  /** The target was consumed and kept (refreshes used up): the next property starts with a fresh one. */
  private consumed = false;

  constructor(private readonly endpoint: Endpoint) {
    this.budget = new TenantBudget(endpoint.label);
  }

  private async context(variantIndex: number): Promise<RunContext> {
    const variants = this.endpoint.variants;
    const variant = variants ? variants[variantIndex % variants.length] : undefined;
    const base = { targetId: null, target: null, variant, request: undefined };
    if (this.endpoint.auth === "bootstrap") {
      return { ...base, path: this.endpoint.path(null, variant), bearer: env.BOOTSTRAP_TOKEN };
    }
    if (this.endpoint.auth === "none")
      return { ...base, path: this.endpoint.path(null, variant), bearer: "" };
    let tenant = await this.budget.take(1);
    if (this.endpoint.target && this.target?.tenant.id !== tenant.id) {
      this.target = await makeTarget(this.endpoint.target, this.budget);
    }
    const target = this.endpoint.target ? this.target : null;
    if (target) tenant = target.tenant;
    return {
      ...base,
      target,
      targetId: target?.rowId ?? null,
      path: this.endpoint.path(target, variant),
      bearer: tenant.adminKey,
    };
  }

  async run(
    generated: Body,
    contentType: string | null = "application/json",
    variantIndex = 0,
  ): Promise<number> {
    const ctx = await this.context(variantIndex);
    const body = bindRefs(generated, ctx.target);
    const wizardId = ctx.target?.wizardId ?? null;
    // Taken, not read: a run that fails midway leaves no snapshot behind for the shrinking runs.
    const cached = this.cached;
    this.cached = null;
    const reusable =
      cached !== null &&
      cached.generation === this.budget.generation &&
      cached.targetId === ctx.targetId &&
      cached.wizardId === wizardId;
    const before: Counts = reusable ? cached.counts : await counts(ctx.targetId);
    const snapshot = () => (ctx.target && wizardId ? wizardSnapshot(ctx.target.tenant.id, wizardId) : null);
    const wizardBefore = reusable ? cached.wizard : await snapshot();
    takeOutbound();
    const headers = ctx.target && this.endpoint.headers ? this.endpoint.headers(ctx.target) : undefined;
    const response = await send(this.endpoint.method, ctx.path, {
      body,
      contentType,
      bearer: ctx.bearer,
      ...(headers ? { headers } : {}),
    });
    const { status } = response;
    expectNotRateLimited(status, this.endpoint.label);
    this.seen.set(status, (this.seen.get(status) ?? 0) + 1);
    expect(status, `${this.endpoint.label} answered ${status}: ${response.text.slice(0, 300)}`).toBeLessThan(
      500,
    );
    expect(this.endpoint.allowed, `${this.endpoint.label} gave status ${status}`).toContain(status);
    const [after, wizardAfter] = await Promise.all([counts(ctx.targetId), snapshot()]);
    const outbound = takeOutbound();
    if (!this.endpoint.network) expect(outbound, `${this.endpoint.label} called out`).toEqual([]);
    const size = byteLength(body);
    if (size > MAX_BODY_BYTES) expect(status).toBe(413);
    else if (!Number.isNaN(size)) expect(status).not.toBe(413);

    if (status >= 400) {
      expectProblem(response);
      expectUnchanged(before, after);
      expect(wizardAfter, "a rejected request changed the wizard").toBe(wizardBefore);
      expect(outbound, "a rejected request called out").toEqual([]);
    } else {
      expect(response.headers.get("content-type")).toMatch(/^application\/json/);
      ctx.request = parsedRequest(body);
      const consumed = this.endpoint.onSuccess(status, JSON.parse(response.text), delta(before, after), ctx, {
        before,
        after,
        wizardBefore,
        wizardAfter,
        outbound,
        text: response.text,
        headers: response.headers,
      });
      // A rotated key answers 409 to further rotations, which is itself a legal rejection worth
      // exercising; a fresh target is minted only for the first few successes (each costs writes).
      if (consumed && this.refreshes < MAX_TARGET_REFRESHES) {
        this.refreshes += 1;
        this.target = null;
      } else if (consumed) this.consumed = true;
    }
    this.cached = {
      generation: this.budget.generation,
      targetId: ctx.targetId,
      wizardId,
      counts: after,
      wizard: wizardAfter,
    };
    expectNoPrototypePollution();
    return status;
  }

  /** Starts a property: its own status tally, its own target refreshes, no consumed target. */
  beginProperty(): void {
    this.seen.clear();
    this.refreshes = 0;
    if (this.consumed) this.target = null;
    this.consumed = false;
  }

  /** A fresh target after a success that consumed the old one (a rotated key now answers 409). */
  async refreshTargetIfConsumed(): Promise<void> {
    if (this.endpoint.target && this.target === null) {
      this.target = await makeTarget(this.endpoint.target, this.budget);
    }
  }

  /**
   * Ends a property: a target wizard's GET /api/v1/wizard/{id} still shows exactly the state the
   * per-request snapshots compared (they read the Durable Object directly, to spare the budget).
   */
  async endProperty(): Promise<void> {
    const target = this.target;
    if (!target?.wizardId) return;
    await this.budget.take(1);
    const viaHttp = await send("GET", `/api/v1/wizard/${target.wizardId}`, {
      bearer: target.tenant.adminKey,
    });
    expectNotRateLimited(viaHttp.status, "GET /api/v1/wizard/{id}");
    expect(viaHttp.status).toBe(200);
    const stored = JSON.parse(await wizardSnapshot(target.tenant.id, target.wizardId)) as {
      storage: { state: unknown };
    };
    expect(JSON.parse(viaHttp.text)).toEqual(stored.storage.state);
  }
}

async function drive(driver: EndpointDriver, arb: fc.Arbitrary<GeneratedBody>, numRuns: number) {
  driver.beginProperty();
  await fc.assert(
    fc.asyncProperty(arb, fc.nat(), async ({ body }, variant) => {
      await driver.refreshTargetIfConsumed();
      await driver.run(body, "application/json", variant);
    }),
    { numRuns: runs(numRuns) },
  );
  await driver.endProperty();
  return driver.seen;
}

/** Coherent valid bodies of an endpoint. */
export function validBodyArb(endpoint: Endpoint): fc.Arbitrary<string> {
  return endpoint.valid ?? validTextArb(endpoint.fields, endpoint.required);
}

// Plus the two 64 KiB boundary bodies and the deep-nesting cases.
const MAX_TARGET_REFRESHES = 15;

/** The endpoints of the given labels, in order; throws on an unknown label. */
export function endpointsByLabel(labels: string[]): Endpoint[] {
  const endpoints = labels.map((label) => ENDPOINTS.find((endpoint) => endpoint.label === label));
  const missing = labels.filter((_, index) => endpoints[index] === undefined);
  if (missing.length) throw new Error(`unknown endpoint ${missing.join(", ")}`);
  return endpoints as Endpoint[];
}

/**
 * Registers the property suite for the named endpoints. Each test file takes a share of the
 * endpoints so vitest can run them on separate workers (each file also gets its own storage).
 */
export function describeRequestBodyProperties(labels: string[]): void {
  const endpoints = endpointsByLabel(labels);
  // Every file mocks the network: live checks, channel tests and the wizard's testing step call out,
  // and for every other endpoint the recorder proves no request (rejected or not) ever does.
  useMockNetwork();

  // The first unseal of a fresh database writes the keyring row; do it before any counting.
  beforeAll(async () => {
    await createTenant("keyring warm-up");
  });

  describe.each(endpoints)("$label", (endpoint) => {
    // One driver for all of this endpoint's properties: its tenant and target carry over (a new
    // tenant only when the budget is spent), which saves a tenant and a target walk per property.
    let shared: EndpointDriver | undefined;
    const driverOf = () => {
      shared ??= new EndpointDriver(endpoint);
      return shared;
    };

    it(`${MIXED_RUNS} mixed hostile bodies: only legal 2xx or problem+json 4xx, and a rejection changes nothing`, async () => {
      const seen = await drive(
        driverOf(),
        hostileBodyArb(endpoint.fields, endpoint.required, validBodyArb(endpoint)),
        MIXED_RUNS,
      );
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
        { weight: 1, arbitrary: validBodyArb(endpoint).map((body) => ({ kind: "valid", body })) },
      );
      const seen = await drive(driverOf(), arb, SHAPED_RUNS);
      const successes = [...seen].filter(([status]) => status < 300).reduce((n, [, count]) => n + count, 0);
      // Valid bodies do happen, and are then handled as real requests (except the session endpoint,
      // where no generated key is real).
      if (endpoint.auth !== "none") expect(successes).toBeGreaterThan(0);
    });

    it("bodies over 64 KiB are 413 whether sent with a Content-Length or streamed without one", async () => {
      const driver = driverOf();
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
        { numRuns: runs(OVERSIZE_RUNS) },
      );
      await driver.endProperty();
    });

    it("a body of exactly 64 KiB is not 413, one byte more is", async () => {
      const driver = driverOf();
      const exact = `{"x":"${"a".repeat(MAX_BODY_BYTES - 8)}"}`;
      expect(new TextEncoder().encode(exact).byteLength).toBe(MAX_BODY_BYTES);
      expect(await driver.run(exact)).not.toBe(413);
      expect(await driver.run(`${exact} `)).toBe(413);
      await driver.endProperty();
    });

    // Was a 500 until toApiError mapped @hono/zod-openapi's HTTPException(415) (commit ab8c218).
    it("a wrong or missing Content-Type is 415 problem+json and changes nothing", async () => {
      const driver = driverOf();
      await fc.assert(
        fc.asyncProperty(validBodyArb(endpoint), contentTypeArb, async (body, contentType) => {
          const status = await driver.run(body, contentType);
          expect(status).toBe(415);
        }),
        { numRuns: runs(CONTENT_TYPE_RUNS) },
      );
      await driver.endProperty();
    });

    // Regression: a recursive walk once overflowed the stack on deep bodies (500).
    it("JSON nested 8,000 to 30,000 levels deep (under 64 KiB) is a 4xx, never a 5xx", async () => {
      const driver = driverOf();
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
        { numRuns: runs(10) },
      );
      await driver.endProperty();
    });
  });
}
