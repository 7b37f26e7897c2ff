/**
 * The crash matrix of credential rotation (threat model cases 20 and 32), for a provider rotation (SendGrid
 * API keys, minted and revoked by the SendGrid stand-in) and an external rotation (the tenant's own
 * endpoint): at every step boundary, (a) a step that throws once is retried, and (b) a crash after a step's
 * work committed but before the engine recorded it (the step's domain function run first, then the whole
 * Workflow) ends in the same state as the fault-free run, with one new key at the provider, the old one
 * revoked after the overlap, and every version decrypting to what it should.
 */
import { env } from "cloudflare:workers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  beginCredentialRotation,
  createPendingVersion,
  promotePendingVersion,
  type RotationPlan,
  retirePreviousVersion,
  testPendingVersion,
} from "../../src/lifecycle/credential-rotation";
import type { RotationParams } from "../../src/lifecycle/rotation-params";
import { createTenant, type TestTenant } from "../helpers/api";
import { network } from "../setup/network";
import {
  claimRun,
  configureRotation,
  DAY,
  decryptedVersions,
  expectStageInvariant,
  runWorkflow,
  SendgridAccount,
  storeCredential,
  storedState,
  T0,
} from "./credential-rotation-fixtures";
import { ExternalEndpointStandIn } from "./stand-ins/external";

const sendgrid = new SendgridAccount();
let tenant: TestTenant;
let rotatorId: string;

beforeAll(async () => {
  network.enable();
  network.use(...sendgrid.handlers());
  tenant = await createTenant("credential rotation crash matrix");
  rotatorId = await storeCredential(tenant, "sendgrid", { api_key: sendgrid.rotatorKey().key });
});
afterAll(() => network.disable());

/** The steps a run goes through, in order; each crash case runs the domain functions up to one of them. */
const STEPS = ["begin", "create", "test", "promote", "retire"] as const;
type Step = (typeof STEPS)[number];

/** Runs the run's steps directly up to and including `last`, as an engine that crashed right after it would have. */
async function runStepsDirectly(params: RotationParams, last: Step): Promise<void> {
  const plan = (await beginCredentialRotation(env, params)) as RotationPlan;
  if (last === "begin") return;
  const version = plan.pendingVersion ?? (await createPendingVersion(env, params, plan));
  if (last === "create") return;
  await testPendingVersion(env, params, plan, version);
  if (last === "test") return;
  await promotePendingVersion(env, params, plan, version);
  if (last === "promote") return;
  await retirePreviousVersion(env, params, plan, version, params.now + DAY);
}

/** The end state with the run id and provider key ids left out: those differ between credentials. */
function normalized(state: Awaited<ReturnType<typeof storedState>>) {
  return {
    ...state,
    versions: state.versions.map((v) => ({ ...v, provider_key_id: v.provider_key_id !== null })),
    runs: state.runs.map(({ id: _id, ...run }) => run),
  };
}

interface Rotated {
  credentialId: string;
  params: RotationParams;
  /** The value before the rotation. */
  original: Record<string, string>;
}

describe("provider rotation crash matrix (threat model cases 20, 32)", () => {
  async function rotatedSendgrid(): Promise<Rotated> {
    const original = { api_key: sendgrid.api.addKey("production mail", ["mail.send"]).key };
    const credentialId = await storeCredential(tenant, "sendgrid", original);
    const configured = await configureRotation(tenant, credentialId, {
      method: "provider",
      policy_days: 30,
      rotator_credential_id: rotatorId,
    });
    expect(configured.status).toBe(200);
    return { credentialId, params: await claimRun(tenant, credentialId), original };
  }

  /** One new key at SendGrid, the old one gone, and every version decrypting to the right key. */
  async function expectProviderOutcome({ credentialId, params, original }: Rotated) {
    const minted = sendgrid.mintedBy(params.runId);
    expect(minted).toHaveLength(1);
    expect(sendgrid.isLive(original.api_key as string)).toBe(false);
    const plain = await decryptedVersions(tenant.id, credentialId);
    expect(plain.get(1)).toEqual(original);
    expect(plain.get(2)).toEqual({ api_key: minted[0]?.key });
    await expectStageInvariant(credentialId);
  }

  let faultFree: ReturnType<typeof normalized>;

  it("rotates a SendGrid key fault-free: new key current, old one previous and revoked after the overlap", async () => {
    const rotated = await rotatedSendgrid();
    expect(await runWorkflow(rotated.params)).toBe("completed");
    const state = await storedState(rotated.credentialId);
    expect(state.versions).toMatchObject([
      { version: 1, stage: "previous" },
      { version: 2, stage: "current", created_by: "rotation" },
    ]);
    expect(state.credential).toEqual({ current_version: 2, revision: 2 });
    expect(state.config).toEqual({ next_rotation_at: T0 + 30 * DAY, last_rotated_at: T0 });
    expect(state.runs).toMatchObject([{ state: "completed", error: null, successor_id: "2" }]);
    expect(state.events).toEqual(["rotation.completed"]);
    await expectProviderOutcome(rotated);
    faultFree = normalized(state);
  });

  for (const step of STEPS) {
    it(`retries step "${step}" after it throws once and ends as the fault-free run`, async () => {
      const rotated = await rotatedSendgrid();
      const output = await runWorkflow(rotated.params, async (m) => {
        await m.mockStepError({ name: step }, new Error(`injected fault in ${step}`), 1);
      });
      expect(output).toBe("completed");
      expect(normalized(await storedState(rotated.credentialId))).toEqual(faultFree);
      await expectProviderOutcome(rotated);
    });

    it(`resumes after a crash between step "${step}" committing and the engine recording it`, async () => {
      const rotated = await rotatedSendgrid();
      await runStepsDirectly(rotated.params, step);
      await runWorkflow(rotated.params);
      expect(normalized(await storedState(rotated.credentialId))).toEqual(faultFree);
      await expectProviderOutcome(rotated);
    });
  }
});

describe("external rotation crash matrix (threat model cases 20, 32)", () => {
  let endpoints = 0;

  async function rotatedExternally(): Promise<Rotated & { endpoint: ExternalEndpointStandIn }> {
    const original = { api_key: sendgrid.api.addKey("external mail", ["mail.send"]).key };
    const credentialId = await storeCredential(tenant, "sendgrid", original);
    const url = `https://rotation.example.com/hooks/${++endpoints}`;
    const configured = await configureRotation(tenant, credentialId, {
      method: "external",
      policy_days: 7,
      endpoint_url: url,
    });
    expect(configured.status).toBe(200);
    expect(configured.body.signing_secret).toMatch(/^whsec_/);
    // The tenant's endpoint mints its keys at SendGrid, where the live probe finds them.
    const endpoint = new ExternalEndpointStandIn(url, configured.body.signing_secret as string, (n) => ({
      api_key: sendgrid.api.addKey(`external ${n}`, ["mail.send"]).key,
    }));
    endpoint.live.set("original", original);
    network.use(...endpoint.handlers());
    return { credentialId, params: await claimRun(tenant, credentialId), original, endpoint };
  }

  async function expectExternalOutcome({
    credentialId,
    original,
    endpoint,
  }: Rotated & { endpoint: ExternalEndpointStandIn }) {
    expect(endpoint.mintCount).toBe(1);
    expect(endpoint.calls.filter((call) => call.step === "create")).toHaveLength(1);
    expect(endpoint.calls.filter((call) => call.step === "test")).toHaveLength(1);
    const revoked = endpoint.calls.filter((call) => call.step === "revoke");
    expect(revoked.map((call) => call.body.version)).toEqual([1]);
    const plain = await decryptedVersions(tenant.id, credentialId);
    expect(plain.get(1)).toEqual(original);
    expect(plain.get(2)).toEqual(endpoint.live.get("ext-key-1"));
    await expectStageInvariant(credentialId);
  }

  let faultFree: ReturnType<typeof normalized>;

  it("rotates through the tenant's endpoint fault-free: create, live test, promote, revoke after the overlap", async () => {
    const rotated = await rotatedExternally();
    expect(await runWorkflow(rotated.params)).toBe("completed");
    const state = await storedState(rotated.credentialId);
    expect(state.versions).toMatchObject([
      { version: 1, stage: "previous" },
      { version: 2, stage: "current", provider_key_id: "ext-key-1" },
    ]);
    expect(state.config).toEqual({ next_rotation_at: T0 + 7 * DAY, last_rotated_at: T0 });
    expect(state.events).toEqual(["rotation.completed"]);
    await expectExternalOutcome(rotated);
    faultFree = normalized(state);
  });

  for (const step of STEPS) {
    it(`retries step "${step}" after it throws once and ends as the fault-free run`, async () => {
      const rotated = await rotatedExternally();
      await runWorkflow(rotated.params, async (m) => {
        await m.mockStepError({ name: step }, new Error(`injected fault in ${step}`), 1);
      });
      expect(normalized(await storedState(rotated.credentialId))).toEqual(faultFree);
      await expectExternalOutcome(rotated);
    });

    it(`resumes after a crash between step "${step}" committing and the engine recording it`, async () => {
      const rotated = await rotatedExternally();
      await runStepsDirectly(rotated.params, step);
      await runWorkflow(rotated.params);
      expect(normalized(await storedState(rotated.credentialId))).toEqual(faultFree);
      await expectExternalOutcome(rotated);
    });
  }
});
