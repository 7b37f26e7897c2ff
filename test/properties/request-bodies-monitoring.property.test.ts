/**
 * threat model case 16 for the wizard's monitoring step and its channel test; see
 * request-bodies-shared.ts. The channel test sends for real, so every outbound request goes to
 * the network mock (targets.ts useMockNetwork), which records it and fails it like an unreachable
 * host: a generated URL can never reach the network.
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import type { Bindings } from "../../src/env";
import { runs } from "../setup/fast-check";
import { deliverableChannelArb } from "./body-arbitraries";
import { describeRequestBodyProperties } from "./request-bodies-shared";
import { makeTarget, takeOutbound } from "./targets";
import {
  type Counts,
  counts,
  delta,
  expectNotRateLimited,
  expectProblem,
  NO_CHANGE,
  OUTCOMES,
  send,
  TenantBudget,
  wizardSnapshot,
} from "./worker-support";

beforeAll(() => {
  // The properties assume the production SSRF guard: no loopback exception, no provider stand-in.
  const bindings = env as unknown as Bindings;
  expect(bindings.ALLOW_LOOPBACK_WEBHOOKS).not.toBe("true");
  expect(bindings.PROVIDER_STANDIN_ORIGIN ?? "").toBe("");
});

describeRequestBodyProperties([
  "PUT /api/v1/wizard/{id}/steps/monitoring",
  "POST /api/v1/wizard/{id}/monitoring/test",
]);

describe("a channel test or monitoring step on a wizard that has not reached the monitoring step", () => {
  const observed: { before: Counts; after: Counts; label: string }[] = [];

  it("is refused with 409 problem+json; the wizard, every row count and the network stay untouched", async () => {
    const budget = new TenantBudget("monitoring too early", 100);
    const wizard = await makeTarget("wizard-at-keys", budget);
    const requests = fc.oneof(
      deliverableChannelArb
        .filter((channel) => channel.kind === "webhook")
        .map((channel) => ({
          label: "monitoring/test",
          method: "POST",
          path: "/monitoring/test",
          body: { channel },
        })),
      fc
        .uniqueArray(
          deliverableChannelArb.filter((channel) => channel.kind !== "email"),
          { minLength: 1, maxLength: 3, selector: (c) => (c.name ?? "").trim() },
        )
        .map((channels) => ({
          label: "steps/monitoring",
          method: "PUT",
          path: "/steps/monitoring",
          body: { channels },
        })),
    );
    await fc.assert(
      fc.asyncProperty(requests, async ({ label, method, path, body }) => {
        await budget.take(1);
        const snapshot = await wizardSnapshot(wizard.tenant.id, wizard.wizardId as string);
        const before = await counts();
        takeOutbound();
        const response = await send(method, `/api/v1/wizard/${wizard.wizardId}${path}`, {
          bearer: wizard.tenant.adminKey,
          body: JSON.stringify(body),
        });
        expectNotRateLimited(response.status, label);
        expect(response.status, `${label}: ${response.text.slice(0, 200)}`).toBe(409);
        expect(expectProblem(response)).toBe("CONFLICT");
        const after = await counts();
        expect(await wizardSnapshot(wizard.tenant.id, wizard.wizardId as string)).toBe(snapshot);
        expect(delta(before, after)).toEqual(NO_CHANGE);
        expect(takeOutbound()).toEqual([]);
        observed.push({ before, after, label });
      }),
      { numRuns: runs(20) },
    );
    expect(new Set(observed.map((o) => o.label)).size).toBe(2);
  });

  // Regression test for a bug found by this suite (fixed).
  it("... and encrypts nothing: the DEK's encryption counter is unchanged", () => {
    expect(observed.length).toBeGreaterThan(0);
    for (const { before, after, label } of observed)
      expect(after.dataKeysFingerprint, label).toBe(before.dataKeysFingerprint);
  });
});

it("the channel-test properties reached every delivery path: e-mail, and each network kind through the mock", () => {
  for (const outcome of [
    "monitoring/test email delivered",
    "monitoring/test slack unreachable",
    "monitoring/test webhook unreachable",
    "monitoring/test sms unreachable",
    "monitoring/test signing secret created",
  ]) {
    expect(OUTCOMES.get(outcome) ?? 0, outcome).toBeGreaterThan(0);
  }
});
