/**
 * threat model case 16 for the credential vault; see request-bodies-shared.ts. Also: the If-Match
 * precondition of PATCH, rollback and DELETE refuses (428 without it, 412 when it does not name the
 * current ETag) before anything is written, for valid requests.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { runs } from "../setup/fast-check";
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

/**
 * What the runtime hands the Worker for an If-Match value: nothing when it is blank. fetch's Headers trims
 * HTTP whitespace, and workerd keeps If-Match among its indexed common headers, where an empty value is
 * no value. A blank header that did arrive would be an empty list and 412 (test/credentials/preconditions).
 */
const arrivesAsAbsent = (ifMatch: string | null) => ifMatch === null || /^[\t\n\r ]*$/.test(ifMatch);

describe("If-Match on PATCH, rollback and DELETE", () => {
  it("a valid request without If-Match (or with a blank one, which arrives as none) is 428; with a malformed, weak, `*`, stale or foreign one it is 412; nothing changes", async () => {
    const budget = new TenantBudget("If-Match", 200);
    const target = await makeTarget("credential-3-versions", budget);
    const current = etag(target);
    expect(current).toBe(`"${target.rowId}.r3"`);
    const ifMatchArb = fc.oneof(
      fc.constant<string | null>(null),
      fc.integer({ min: 0, max: 2 }).map((r) => `"${target.rowId}.r${r}"`),
      fc.constantFrom(
        `"${target.rowId}.r4"`,
        `${target.rowId}.r3`,
        `W/${current}`,
        "*",
        `*, ${current}`,
        `"${target.rowId}.r2", "x"`,
        `"cred_other.r3"`,
        `"${target.rowId}.r3 "`,
        `"${target.rowId}.R3"`,
        `"${target.rowId}.v3"`,
        `${current}x`,
        "",
        " ",
        ",",
      ),
      fc.string({ maxLength: 40 }),
    );
    const requestArb = fc.oneof(
      stripeFieldsArb.map((fields) => ({ label: "PATCH", method: "PATCH", suffix: "", body: { fields } })),
      fc.constant({ label: "PATCH", method: "PATCH", suffix: "", body: { name: "renamed" } }),
      fc
        .integer({ min: 1, max: 3 })
        .map((version) => ({ label: "rollback", method: "POST", suffix: "/rollback", body: { version } })),
      fc.constant({ label: "DELETE", method: "DELETE", suffix: "", body: undefined }),
    );
    await fc.assert(
      fc.asyncProperty(requestArb, ifMatchArb, async (request, ifMatch) => {
        fc.pre(ifMatch !== current);
        await budget.take(1);
        const before = await counts(target.rowId);
        const response = await send(request.method, `/api/v1/credentials/${target.rowId}${request.suffix}`, {
          ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) }),
          bearer: target.tenant.adminKey,
          ...(ifMatch === null ? {} : { headers: { "if-match": ifMatch } }),
        });
        expectNotRateLimited(response.status, request.label);
        expect(response.status).toBe(arrivesAsAbsent(ifMatch) ? 428 : 412);
        expect(expectProblem(response)).toBe(
          response.status === 428 ? "PRECONDITION_REQUIRED" : "PRECONDITION_FAILED",
        );
        expectUnchanged(before, await counts(target.rowId));
      }),
      { numRuns: runs(60) },
    );
  });
});
