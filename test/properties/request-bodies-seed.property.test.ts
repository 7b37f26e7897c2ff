/** threat model case 16 for the seed wizard API (validate never stores; generate mints keys); see request-bodies-shared.ts. */
import { expect, it } from "vitest";
import { describeRequestBodyProperties } from "./request-bodies-shared";
import { OUTCOMES } from "./worker-support";

describeRequestBodyProperties(["POST /api/wizard/api-keys/validate", "POST /api/wizard/api-keys/generate"]);

it("the validate properties ran live checks (through the network mock) and stored nothing for them either", () => {
  const live = [...OUTCOMES].filter(([outcome]) => outcome.startsWith("validate live check"));
  expect(live.reduce((n, [, count]) => n + count, 0)).toBeGreaterThan(0);
});
