/**
 * threat model case 16 for the wizard's first three steps; see request-bodies-shared.ts. Also
 * regression tests for two defects of POST /api/v1/wizard/{id}/keys/{service_id} that the
 * properties brought up (both fixed).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { randomBase62 } from "../../src/crypto/random";
import { serviceSlot } from "../../src/wizard/slots";
import type { WizardState } from "../../src/wizard/wizard-state";
import { runs } from "../setup/fast-check";
import { parseSnapshot } from "./endpoints-wizard";
import { describeRequestBodyProperties } from "./request-bodies-shared";
import { makeTarget, useMockNetwork, WIZARD_SECURITY } from "./targets";
import {
  type Counts,
  counts,
  delta,
  expectNotRateLimited,
  expectProblem,
  NO_CHANGE,
  send,
  TenantBudget,
  wizardSnapshot,
} from "./worker-support";

// The commit walk below runs the testing step, whose GitHub probe goes to the network mock.
useMockNetwork();

describeRequestBodyProperties([
  "PUT /api/v1/wizard/{id}/steps/services",
  "PUT /api/v1/wizard/{id}/steps/security",
  "POST /api/v1/wizard/{id}/keys/{service_id}",
]);

const githubToken = fc
  .noBias(
    fc.string({
      unit: fc.constantFrom(..."0123456789ABCDEFabcdefghijklmnopqrstuvwxyz"),
      minLength: 36,
      maxLength: 36,
    }),
  )
  .map((body) => `ghp_${body}`);

describe("entering values for a catalogue service the wizard has not selected", () => {
  const observed: { before: Counts; after: Counts }[] = [];

  it("is refused with 409 problem+json; the wizard and every row count stay as they were", async () => {
    const budget = new TenantBudget("unselected service", 100);
    const wizard = await makeTarget("wizard-at-keys", budget);
    await fc.assert(
      fc.asyncProperty(githubToken, async (token) => {
        await budget.take(1);
        const snapshot = await wizardSnapshot(wizard.tenant.id, wizard.wizardId as string);
        const before = await counts();
        const response = await send("POST", `/api/v1/wizard/${wizard.wizardId}/keys/github`, {
          bearer: wizard.tenant.adminKey,
          body: JSON.stringify({ fields: { token } }),
        });
        expectNotRateLimited(response.status, "keys/github");
        expect(response.status).toBe(409);
        expect(expectProblem(response)).toBe("CONFLICT");
        const after = await counts();
        expect(await wizardSnapshot(wizard.tenant.id, wizard.wizardId as string)).toBe(snapshot);
        expect(delta(before, after)).toEqual(NO_CHANGE);
        observed.push({ before, after });
      }),
      { numRuns: runs(10) },
    );
  });

  // Regression test for a bug found by this suite (fixed).
  it("... and encrypts nothing: the DEK's encryption counter is unchanged", () => {
    expect(observed.length).toBeGreaterThan(0);
    for (const { before, after } of observed)
      expect(after.dataKeysFingerprint).toBe(before.dataKeysFingerprint);
  });
});

describe("a secret Keywarden generated for a service, then the service's other values entered", () => {
  let generatedSecret = "";
  let committedFields: Record<string, string> = {};

  it("generate, enter the token, walk on and commit: every step succeeds and the wizard lists the generated secret", async () => {
    const budget = new TenantBudget("generated secret", 100);
    const wizard = await makeTarget("wizard-started", budget);
    const tenant = wizard.tenant;
    await budget.take(12);
    const call = async (method: string, path: string, body: unknown) => {
      const response = await send(method, `/api/v1/wizard/${wizard.wizardId}${path}`, {
        bearer: tenant.adminKey,
        body: JSON.stringify(body),
      });
      expect(response.status, `${method} ${path}: ${response.text.slice(0, 200)}`).toBe(200);
      return JSON.parse(response.text) as Record<string, unknown>;
    };
    await call("PUT", "/steps/services", { service_ids: ["github"] });
    await call("PUT", "/steps/security", WIZARD_SECURITY);
    const generated = await call("POST", "/keys/generate", {});
    generatedSecret = (generated.generated as Record<string, { secrets: Record<string, string> }>).github
      ?.secrets.webhook_secret as string;
    expect(generatedSecret).toMatch(/^[0-9a-f]{64}$/);
    const entered = await call("POST", "/keys/github", { fields: { token: `ghp_${randomBase62(36)}` } });
    const entry = (entered.state as WizardState).steps.keys.services.github;
    // The wizard still shows the generated secret as part of the service's values...
    expect(entry?.generated).toEqual(["webhook_secret"]);
    expect(Object.keys(entry?.fields ?? {}).sort()).toEqual(["token", "webhook_secret"]);
    const sealed = parseSnapshot(await wizardSnapshot(tenant.id, wizard.wizardId as string)).sealed;
    expect(Object.keys(sealed)).toContain(serviceSlot("github", "token"));
    await call("PUT", "/steps/keys", {});
    await call("POST", "/tests", {});
    await call("PUT", "/steps/testing", {});
    await call("PUT", "/steps/monitoring", {});
    const committed = await call("POST", "/commit", {});
    const [credentialId] = (committed.state as WizardState).commit?.created.credentials ?? [];
    const revealed = await send("POST", `/api/v1/credentials/${credentialId}/reveal`, {
      bearer: tenant.adminKey,
      body: "{}",
    });
    expect(revealed.status).toBe(200);
    committedFields = (JSON.parse(revealed.text) as { fields: Record<string, string> }).fields;
    expect(Object.keys(committedFields)).toContain("token");
  });

  // Regression test for a bug found by this suite (fixed).
  it("... and the committed credential holds the generated secret the wizard showed", () => {
    expect(generatedSecret).not.toBe("");
    expect(committedFields.webhook_secret).toBe(generatedSecret);
  });
});
