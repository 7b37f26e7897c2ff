/**
 * SECURITY.md case 16 for the credential vault; see request-bodies-shared.ts. Also: the If-Match
 * precondition of PATCH and rollback refuses (428 without it, 412 when stale) before anything is
 * written, for valid bodies.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { stripeFieldsArb } from "./body-arbitraries";
import { describeRequestBodyProperties } from "./request-bodies-shared";
import { etag, makeTarget } from "./targets";
import {
  counts,
  expectNotRateLimited,
  expectProblem,
  expectUnchanged,
  send,
  TenantBudget,
} from "./worker-support";

describeRequestBodyProperties([
  "POST /api/v1/credentials",
  "PATCH /api/v1/credentials/{id}",
  "POST /api/v1/credentials/{id}/reveal",
  "POST /api/v1/credentials/{id}/rollback",
]);

describe("If-Match on PATCH and rollback", () => {
  it("a valid body without If-Match is 428 and with a stale or foreign ETag is 412; nothing changes", async () => {
    const budget = new TenantBudget("If-Match", 200);
    const target = await makeTarget("credential-3-versions", budget);
    const current = etag(target);
    const ifMatchArb = fc.oneof(
      fc.constant<string | null>(null),
      fc.integer({ min: 1, max: 2 }).map((v) => `"${target.rowId}.v${v}"`),
      fc.constantFrom(
        `"${target.rowId}.v4"`,
        `${target.rowId}.v3`,
        `W/${current}`,
        "*",
        `${current}, "x"`,
        `"cred_other.v3"`,
        `"${target.rowId}.v3 "`,
        `"${target.rowId}.V3"`,
        "",
      ),
      fc.string({ maxLength: 40 }),
    );
    const bodyArb = fc.oneof(
      stripeFieldsArb.map((fields) => ({ label: "PATCH", method: "PATCH", suffix: "", body: { fields } })),
      fc.constant({ label: "PATCH", method: "PATCH", suffix: "", body: { name: "renamed" } }),
      fc
        .integer({ min: 1, max: 3 })
        .map((version) => ({ label: "rollback", method: "POST", suffix: "/rollback", body: { version } })),
    );
    await fc.assert(
      fc.asyncProperty(bodyArb, ifMatchArb, async (request, ifMatch) => {
        fc.pre(ifMatch !== current);
        await budget.take(1);
        const before = await counts(target.rowId);
        const response = await send(request.method, `/api/v1/credentials/${target.rowId}${request.suffix}`, {
          body: JSON.stringify(request.body),
          bearer: target.tenant.adminKey,
          ...(ifMatch === null ? {} : { headers: { "if-match": ifMatch } }),
        });
        expectNotRateLimited(response.status, request.label);
        // An empty If-Match header is the same as none.
        expect(response.status).toBe(ifMatch === null || ifMatch === "" ? 428 : 412);
        expect(expectProblem(response)).toBe(
          response.status === 428 ? "PRECONDITION_REQUIRED" : "PRECONDITION_FAILED",
        );
        expectUnchanged(before, await counts(target.rowId));
      }),
      { numRuns: 60 },
    );
  });
});
