/**
 * threat model case 16 for a POST endpoint the shared driver (request-bodies-shared.ts) does not take: one
 * whose size cap is not the 64 KiB every other body has (the import takes a whole tenant's export), or whose
 * 2xx depends on a stand-in (the Vault KV import). The same 1,000 generated bodies (650 mixed hostile, 275
 * schema-shaped, 25 oversize, 50 with a wrong content type) through the real worker, and the same checks on
 * every response:
 * - no 5xx, no silent 429, every 4xx problem+json with a known code;
 * - a rejection writes nothing at all (the write watch over every table) and calls nothing out;
 * - a 2xx has exactly its effect (the endpoint's `onSuccess`);
 * - Object.prototype is never polluted.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { runs } from "../setup/fast-check";
import {
  contentTypeArb,
  type FieldMap,
  hostileBodyArb,
  MAX_BODY_BYTES,
  oversizeTextArb,
  schemaShapedTextArb,
} from "./body-arbitraries";
import { takeOutbound } from "./targets";
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
  OVERSIZE_RUNS,
  parsedRequest,
  SHAPED_RUNS,
  send,
  TenantBudget,
} from "./worker-support";

export interface Sent {
  status: number;
  headers: Headers;
  text: string;
}

export interface StandaloneEndpoint {
  /** The POST path, called with a fresh tenant's admin key. */
  path: string;
  fields: FieldMap;
  /** Coherent valid bodies. */
  valid: fc.Arbitrary<string>;
  /**
   * The statuses a body over 64 KiB may get. Just 413: every such body, in every property, must be 413;
   * with another status too, only the oversize property checks it (`note` says why).
   */
  oversize: { statuses: number[]; note?: string };
  /** Checks a 2xx: the row counts before and after, their change, and the request as JSON (or undefined). */
  onSuccess: (
    response: Sent,
    effect: { before: Counts; after: Counts; change: Delta },
    request: unknown,
  ) => void;
  /** Runs before each request; the check it returns runs on the response (e.g. what a stand-in received). */
  watch?: () => (response: Sent) => void;
  /** For the mixed and schema-shaped properties, when each valid body costs real time (PBKDF2). */
  timeoutMs?: number;
}

export function describeStandaloneBodyProperties(endpoint: StandaloneEndpoint): void {
  const { path } = endpoint;
  const capped = endpoint.oversize.statuses.length === 1 && endpoint.oversize.statuses[0] === 413;

  describe(`POST ${path} (threat model case 16)`, () => {
    const budget = new TenantBudget(`POST ${path} body properties`);

    async function run(body: Body, contentType: string | null = "application/json"): Promise<number> {
      const tenant = await budget.take(1);
      const before = await counts();
      const check = endpoint.watch?.();
      takeOutbound();
      const response = await send("POST", path, { body, contentType, bearer: tenant.adminKey });
      expectNotRateLimited(response.status, path);
      expect(response.status, response.text.slice(0, 300)).toBeLessThan(500);
      const after = await counts();
      expect(takeOutbound(), `POST ${path} called out`).toEqual([]);
      if (capped && byteLength(body) > MAX_BODY_BYTES) expect(response.status).toBe(413);
      if (response.status >= 400) {
        expectProblem(response);
        expectUnchanged(before, after);
      } else {
        endpoint.onSuccess(response, { before, after, change: delta(before, after) }, parsedRequest(body));
      }
      check?.(response);
      expectNoPrototypePollution();
      return response.status;
    }

    it(
      `${MIXED_RUNS} mixed hostile bodies: only legal 2xx or problem+json 4xx, and a rejection changes nothing`,
      async () => {
        const seen = new Map<number, number>();
        await fc.assert(
          fc.asyncProperty(hostileBodyArb(endpoint.fields, [], endpoint.valid), async ({ body }) => {
            const status = await run(body);
            seen.set(status, (seen.get(status) ?? 0) + 1);
          }),
          { numRuns: runs(MIXED_RUNS) },
        );
        // The generator must actually reach validation failures, parse failures and successes.
        expect(seen.get(422) ?? 0).toBeGreaterThan(0);
        expect(seen.get(400) ?? 0).toBeGreaterThan(0);
        expect(seen.get(200) ?? 0).toBeGreaterThan(0);
      },
      endpoint.timeoutMs,
    );

    it(
      `${SHAPED_RUNS} schema-shaped bodies (valid and hostile field values, dangerous keys): same guarantees`,
      async () => {
        await fc.assert(
          fc.asyncProperty(
            fc.oneof(
              { weight: 3, arbitrary: schemaShapedTextArb(endpoint.fields) },
              { weight: 1, arbitrary: endpoint.valid },
            ),
            async (body) => {
              await run(body);
            },
          ),
          { numRuns: runs(SHAPED_RUNS) },
        );
      },
      endpoint.timeoutMs,
    );

    const { statuses, note } = endpoint.oversize;
    it(`${OVERSIZE_RUNS} oversize bodies are refused with ${statuses.join(" or ")}${note ? ` (${note})` : ""}, nothing changes`, async () => {
      await fc.assert(
        fc.asyncProperty(oversizeTextArb, async (body) => {
          expect(statuses).toContain(await run(body));
        }),
        { numRuns: runs(OVERSIZE_RUNS) },
      );
    });

    it(`${CONTENT_TYPE_RUNS} bodies with a content type that is not JSON: refused, nothing changes`, async () => {
      await fc.assert(
        fc.asyncProperty(contentTypeArb, endpoint.valid, async (contentType, body) => {
          const status = await run(body, contentType);
          if (status < 300) expect(contentType ?? "").toMatch(/json/i);
        }),
        { numRuns: runs(CONTENT_TYPE_RUNS) },
      );
    });
  });
}
