/**
 * Credential rotation through the API and the Workflow: how a credential is set to rotate, a provider
 * refusing mid-rotation (threat model case 32), assisted rotation (an admin's value tested, promoted, rolled
 * back), and the stage labels' invariant after every kind of change.
 */
import { introspectWorkflow, introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  beginCredentialRotation,
  createPendingVersion,
  type RotationPlan,
} from "../../src/lifecycle/credential-rotation";
import { OVERLAP_ENDED } from "../../src/lifecycle/rotation-params";
import { ROTATION_RETRY_MS } from "../../src/lifecycle/rotation-steps";
import { callJson, createTenant, type TestTenant } from "../helpers/api";
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
  stripeTestKey,
  T0,
} from "./credential-rotation-fixtures";
import { sendgridError } from "./stand-ins/sendgrid";

interface Detail {
  id: string;
  version: number;
  versions: { version: number; stage: string | null }[];
  rotation: {
    method: string | null;
    policy_days: number | null;
    next_rotation_at: string | null;
    state: string;
    last_rotated_at: string | null;
    last_error: string | null;
    in_progress?: { run_id: string; step: string };
  };
}

const sendgrid = new SendgridAccount();
/** Stripe keys `GET /v1/balance` accepts; any other Bearer key is answered 401 as Stripe does. */
const liveStripeKeys = new Set<string>();
let tenant: TestTenant;
let other: TestTenant;
let rotatorId: string;

beforeAll(async () => {
  network.enable();
  network.use(
    ...sendgrid.handlers(),
    http.get("https://api.stripe.com/v1/balance", ({ request }) => {
      const token = /^Bearer (.+)$/.exec(request.headers.get("authorization") ?? "")?.[1] ?? "";
      return liveStripeKeys.has(token)
        ? HttpResponse.json({ object: "balance", available: [], pending: [], livemode: false })
        : HttpResponse.json(
            { error: { type: "invalid_request_error", message: "Invalid API Key provided" } },
            { status: 401 },
          );
    }),
  );
  tenant = await createTenant("credential rotation");
  other = await createTenant("credential rotation, other tenant");
  rotatorId = await storeCredential(tenant, "sendgrid", { api_key: sendgrid.rotatorKey().key });
});
afterEach(() => {
  sendgrid.probeRefuses = () => false;
});
afterAll(() => network.disable());

async function detail(id: string, as = tenant) {
  return callJson<Detail>("GET", `/api/v1/credentials/${id}`, { key: as.adminKey });
}

async function sendgridCredential(policyDays = 30) {
  const original = sendgrid.api.addKey("production mail", ["mail.send"]).key;
  const id = await storeCredential(tenant, "sendgrid", { api_key: original });
  const configured = await configureRotation(tenant, id, {
    method: "provider",
    policy_days: policyDays,
    rotator_credential_id: rotatorId,
  });
  expect(configured.status).toBe(200);
  return { id, original };
}

async function stripeCredential() {
  const value = stripeTestKey();
  liveStripeKeys.add(value);
  return { id: await storeCredential(tenant, "stripe", { secret_key: value }), value };
}

async function reveal(id: string, version?: number) {
  const response = await callJson<{ fields: Record<string, string> }>(
    "POST",
    `/api/v1/credentials/${id}/reveal`,
    { key: tenant.adminKey, body: version ? { version } : {} },
  );
  return response.body.fields;
}

/** POST .../rotate with `fields`, then waits for the Workflow instance it started. */
async function rotateByHand(id: string, fields: Record<string, string>) {
  const introspector = await introspectWorkflow(env.CREDENTIAL_ROTATION);
  try {
    await introspector.modifyAll(async (m) => {
      await m.disableSleeps();
      await m.disableRetryDelays();
    });
    const started = await callJson<Detail["rotation"]>("POST", `/api/v1/credentials/${id}/rotate`, {
      key: tenant.adminKey,
      body: { fields },
    });
    const instances = await introspector.get();
    for (const instance of instances) await instance.waitForStatus("complete");
    return { started, outputs: await Promise.all(instances.map((instance) => instance.getOutput())) };
  } finally {
    await introspector.dispose();
  }
}

describe("rotation settings of a credential", () => {
  it("configures provider rotation with a separate SendGrid rotation credential; GET and the list show it", async () => {
    const before = Date.now();
    const { id } = await sendgridCredential(30);
    const { body } = await detail(id);
    expect(body.rotation).toMatchObject({
      method: "provider",
      policy_days: 30,
      state: "idle",
      last_rotated_at: null,
      last_error: null,
      rotator_credential_id: rotatorId,
    });
    const next = Date.parse(body.rotation.next_rotation_at as string);
    expect(next).toBeGreaterThanOrEqual(before + 30 * DAY);
    expect(next).toBeLessThanOrEqual(Date.now() + 30 * DAY);
    expect(body.versions).toEqual([expect.objectContaining({ version: 1, stage: "current" })]);
    const list = await callJson<{ items: Detail[] }>(
      "GET",
      "/api/v1/credentials?service=sendgrid&limit=100",
      {
        key: tenant.adminKey,
      },
    );
    expect(list.body.items.find((item) => item.id === id)?.rotation.method).toBe("provider");
    expect(list.body.items.find((item) => item.id === rotatorId)?.rotation).toMatchObject({
      method: null,
      policy_days: null,
      next_rotation_at: null,
      state: "idle",
    });
  });

  it("refuses provider rotation without a rotator, with a rotation credential that is itself, of another service or of another tenant (422, nothing stored)", async () => {
    const stripe = await stripeCredential();
    const { id } = await sendgridCredential();
    const theirs = await storeCredential(other, "sendgrid", { api_key: sendgrid.rotatorKey().key });
    const cases: [string, Record<string, unknown>, string][] = [
      [stripe.id, { method: "provider", policy_days: 30, rotator_credential_id: rotatorId }, "method"],
      [id, { method: "provider", policy_days: 30, rotator_credential_id: id }, "rotator_credential_id"],
      [
        id,
        { method: "provider", policy_days: 30, rotator_credential_id: stripe.id },
        "rotator_credential_id",
      ],
      [id, { method: "provider", policy_days: 30, rotator_credential_id: theirs }, "rotator_credential_id"],
      [id, { method: "provider", policy_days: 0, rotator_credential_id: rotatorId }, "policy_days"],
      [id, { method: "assisted", policy_days: 30, overlap_seconds: 31 * 86_400 }, "overlap_seconds"],
    ];
    const configBefore = (await storedState(id)).config;
    for (const [target, body, path] of cases) {
      const response = await configureRotation(tenant, target, body);
      expect(response.status, JSON.stringify(body)).toBe(422);
      expect(JSON.stringify(response.body), JSON.stringify(body)).toContain(path);
    }
    expect((await storedState(id)).config).toEqual(configBefore);
    expect((await storedState(stripe.id)).config).toBeNull();
    // Another tenant's credential id reads exactly like one that never existed.
    const foreign = await configureRotation(tenant, id, {
      method: "provider",
      policy_days: 30,
      rotator_credential_id: theirs,
    });
    const never = await configureRotation(tenant, id, {
      method: "provider",
      policy_days: 30,
      rotator_credential_id: "cred_0000000000000000000000",
    });
    expect({ ...foreign.body, request_id: 0 }).toEqual({ ...never.body, request_id: 0 });
  });

  it("refuses an external rotation endpoint that is not public https (threat model case 31)", async () => {
    const { id } = await stripeCredential();
    for (const url of [
      "http://rotate.example.com/hook",
      "https://127.0.0.1/hook",
      "https://2130706433/hook",
      "https://[::ffff:169.254.169.254]/hook",
      "https://rotate.example.com:8080/hook",
      "https://intranet.internal/hook",
    ]) {
      const response = await configureRotation(tenant, id, {
        method: "external",
        policy_days: 30,
        endpoint_url: url,
      });
      expect(response.status, url).toBe(422);
      expect(response.body.signing_secret).toBeUndefined();
    }
    expect((await storedState(id)).config).toBeNull();
  });

  it("shows an external endpoint's signing secret once, stores it sealed, and keeps it when the policy changes", async () => {
    const { id } = await stripeCredential();
    const first = await configureRotation(tenant, id, {
      method: "external",
      policy_days: 30,
      endpoint_url: "https://rotate.example.com/stripe",
    });
    expect(first.status).toBe(200);
    expect(first.headers.get("cache-control")).toBe("no-store");
    const secret = first.body.signing_secret as string;
    expect(secret).toMatch(/^whsec_/);
    const second = await configureRotation(tenant, id, {
      method: "external",
      policy_days: 60,
      endpoint_url: "https://rotate.example.com/stripe",
    });
    expect(second.body.signing_secret).toBeUndefined();
    expect(second.body).toMatchObject({ policy_days: 60, endpoint_url: "https://rotate.example.com/stripe" });
    const stored = await env.DB.prepare(
      "SELECT sealed_endpoint_secret AS sealed FROM credential_rotations WHERE credential_id = ?",
    )
      .bind(id)
      .first<{ sealed: string }>();
    expect(stored?.sealed).toBeTruthy();
    expect(stored?.sealed).not.toContain(secret.slice(6));
  });

  it("turns rotation off with DELETE; another tenant's credential is 404 on every rotation route (threat model case 1)", async () => {
    const { id } = await sendgridCredential();
    for (const [method, path, body] of [
      ["PUT", "/rotation", { method: "assisted", policy_days: 30 }],
      ["DELETE", "/rotation", undefined],
      ["POST", "/rotate", {}],
    ] as const) {
      const response = await callJson(method, `/api/v1/credentials/${id}${path}`, {
        key: other.adminKey,
        body,
      });
      expect(response.status, `${method} ${path}`).toBe(404);
    }
    const off = await callJson("DELETE", `/api/v1/credentials/${id}/rotation`, { key: tenant.adminKey });
    expect(off.status).toBe(204);
    expect((await detail(id)).body.rotation).toMatchObject({
      method: null,
      policy_days: null,
      next_rotation_at: null,
    });
    expect(
      (await callJson("DELETE", `/api/v1/credentials/${id}/rotation`, { key: tenant.adminKey })).status,
    ).toBe(404);
  });
});

describe("the overlap of a provider rotation", () => {
  it("keeps the old key working in step overlap until the overlap-ended event, then revokes it", async () => {
    const { id, original } = await sendgridCredential();
    const params = await claimRun(tenant, id);
    const instance = await introspectWorkflowInstance(env.CREDENTIAL_ROTATION, params.runId);
    try {
      await instance.modify(async (m) => {
        await m.disableSleeps();
        await m.disableRetryDelays();
      });
      await env.CREDENTIAL_ROTATION.create({ id: params.runId, params });
      await instance.waitForStepResult({ name: "promote" });
      const during = await storedState(id);
      expect(during.runs).toMatchObject([{ state: "in_progress", step: "overlap" }]);
      const run = await env.DB.prepare("SELECT overlap_ends_at FROM rotation_runs WHERE id = ?")
        .bind(params.runId)
        .first<{ overlap_ends_at: number }>();
      expect(run?.overlap_ends_at).toBe(T0 + 86_400_000);
      expect(during.credential?.current_version).toBe(2);
      expect(sendgrid.isLive(original)).toBe(true);
      expect((await detail(id)).body.rotation).toMatchObject({
        state: "in_progress",
        in_progress: { step: "overlap" },
      });

      // What the cron sends when its clock passes overlap_ends_at.
      await (await env.CREDENTIAL_ROTATION.get(params.runId)).sendEvent({
        type: OVERLAP_ENDED,
        payload: { now: T0 + DAY },
      });
      await instance.waitForStatus("complete");
      expect(sendgrid.isLive(original)).toBe(false);
      expect((await storedState(id)).runs).toMatchObject([{ state: "completed" }]);
    } finally {
      await instance.dispose();
    }
  });
});

describe("a provider refusing mid-rotation (threat model case 32)", () => {
  it("mint refused (403): current stays current and working, the run fails with last_error and rotation.failed, and the re-run an hour later mints exactly one key", async () => {
    const { id, original } = await sendgridCredential();
    const params = await claimRun(tenant, id);
    sendgrid.api.faults.next("create", () => sendgridError("access forbidden", 403));
    expect(await runWorkflow(params)).toBe("failed");

    const state = await storedState(id);
    expect(state.versions).toMatchObject([{ version: 1, stage: "current" }]);
    expect(state.credential?.current_version).toBe(1);
    expect(state.runs).toMatchObject([{ state: "failed", step: "create" }]);
    expect(state.runs[0]?.error).toContain("HTTP 403");
    expect(state.events).toEqual(["rotation.failed"]);
    expect(state.config?.next_rotation_at).toBe(T0 + ROTATION_RETRY_MS);
    expect(sendgrid.isLive(original)).toBe(true);
    expect(sendgrid.mintedBy(params.runId)).toHaveLength(0);
    const { body } = await detail(id);
    expect(body.rotation.state).toBe("failed");
    expect(body.rotation.last_error).toContain("HTTP 403");
    expect(await reveal(id)).toEqual({ api_key: original });

    const retry = await claimRun(tenant, id, T0 + ROTATION_RETRY_MS);
    expect(await runWorkflow(retry)).toBe("completed");
    expect(sendgrid.mintedBy(params.runId)).toHaveLength(0);
    expect(sendgrid.mintedBy(retry.runId)).toHaveLength(1);
    expect(sendgrid.isLive(original)).toBe(false);
    expect(await reveal(id)).toEqual({ api_key: sendgrid.mintedBy(retry.runId)[0]?.key });
    await expectStageInvariant(id);
  });

  it("a minted key that never passes its live test is revoked at SendGrid and its pending version removed; current never moves", async () => {
    const { id, original } = await sendgridCredential();
    const params = await claimRun(tenant, id);
    sendgrid.probeRefuses = (key) => key.name === `keywarden:${params.runId}`;
    expect(await runWorkflow(params)).toBe("failed");
    const state = await storedState(id);
    expect(state.versions).toMatchObject([{ version: 1, stage: "current" }]);
    expect(state.runs).toMatchObject([{ state: "failed", step: "test" }]);
    expect(state.runs[0]?.error).toContain("live test");
    expect(state.events).toEqual(["rotation.failed"]);
    expect(sendgrid.mintedBy(params.runId)).toHaveLength(0);
    expect(sendgrid.isLive(original)).toBe(true);
    await expectStageInvariant(id);
  });

  it("revoking the old key failing after the overlap (HTTP 500) leaves the new version current and working, and fails the run at retire", async () => {
    const { id, original } = await sendgridCredential();
    const params = await claimRun(tenant, id);
    // The retire step's first attempt and its five retries all meet a SendGrid outage.
    for (let i = 0; i < 6; i++)
      sendgrid.api.faults.next("delete", () => sendgridError("internal error", 500));
    expect(await runWorkflow(params)).toBe("failed");
    const state = await storedState(id);
    expect(state.versions).toMatchObject([
      { version: 1, stage: "previous" },
      { version: 2, stage: "current" },
    ]);
    expect(state.runs).toMatchObject([{ state: "failed", step: "retire" }]);
    expect(state.runs[0]?.error).toContain("HTTP 500");
    expect(state.events).toEqual(["rotation.failed"]);
    // The fresh period promote started stands: the failure is the old key's, not the rotation's.
    expect(state.config?.next_rotation_at).toBe(T0 + 30 * DAY);
    const minted = sendgrid.mintedBy(params.runId);
    expect(minted).toHaveLength(1);
    expect(sendgrid.isLive(minted[0]?.key as string)).toBe(true);
    expect(sendgrid.isLive(original)).toBe(true);
    expect(await reveal(id)).toEqual({ api_key: minted[0]?.key });
    expect(sendgrid.api.faults.take("delete")).toBeUndefined();
  });

  it("an admin's update between create and promote stops the rotation: the admin's value stays current and the minted key is revoked", async () => {
    const { id } = await sendgridCredential();
    const params = await claimRun(tenant, id);
    const plan = (await beginCredentialRotation(env, params)) as RotationPlan;
    await createPendingVersion(env, params, plan);
    const etag = (await callJson("GET", `/api/v1/credentials/${id}`, { key: tenant.adminKey })).headers.get(
      "etag",
    );
    // The pending version has not passed its test: no rollback may make it current.
    const toPending = await callJson("POST", `/api/v1/credentials/${id}/rollback`, {
      key: tenant.adminKey,
      body: { version: 2 },
      headers: { "if-match": etag as string },
    });
    expect(toPending.status).toBe(409);
    const entered = sendgrid.api.addKey("entered by hand", ["mail.send"]).key;
    const patched = await callJson<Detail>("PATCH", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      body: { fields: { api_key: entered } },
      headers: { "if-match": etag as string },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.version).toBe(3);
    // The engine recorded begin's plan (made from version 1) before create ran; the crash lost only create.
    expect(await runWorkflow(params, (m) => m.mockStepResult({ name: "begin" }, plan))).toBe("failed");
    const state = await storedState(id);
    expect(state.versions).toMatchObject([
      { version: 1, stage: "previous" },
      { version: 3, stage: "current" },
    ]);
    expect(state.runs[0]?.error).toContain("changed meanwhile");
    expect(sendgrid.mintedBy(params.runId)).toHaveLength(0);
    expect(await reveal(id)).toEqual({ api_key: entered });
    await expectStageInvariant(id);
  });
});

describe("assisted rotation", () => {
  it("tests an admin's new value live, promotes it, keeps the previous one, and rollback brings it back", async () => {
    const { id, value: old } = await stripeCredential();
    expect((await configureRotation(tenant, id, { method: "assisted", policy_days: 90 })).status).toBe(200);
    const fresh = stripeTestKey();
    liveStripeKeys.add(fresh);
    const before = Date.now();
    const { started, outputs } = await rotateByHand(id, { secret_key: fresh });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({
      method: "assisted",
      state: "in_progress",
      in_progress: { step: "test" },
    });
    expect(outputs).toEqual(["completed"]);

    const { body, headers } = await detail(id);
    expect(body.version).toBe(2);
    expect(body.versions.map((v) => [v.version, v.stage])).toEqual([
      [2, "current"],
      [1, "previous"],
    ]);
    expect(body.rotation).toMatchObject({ state: "idle", last_error: null });
    expect(Date.parse(body.rotation.last_rotated_at as string)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(body.rotation.next_rotation_at as string)).toBeGreaterThanOrEqual(before + 90 * DAY);
    expect(await reveal(id)).toEqual({ secret_key: fresh });
    expect((await storedState(id)).events).toEqual(["rotation.completed"]);
    // The plaintext never entered the Workflow: its params hold ids and a time only.
    expect(JSON.stringify(started.body)).not.toContain(fresh);

    const rolledBack = await callJson<Detail>("POST", `/api/v1/credentials/${id}/rollback`, {
      key: tenant.adminKey,
      body: { version: 1 },
      headers: { "if-match": headers.get("etag") as string },
    });
    expect(rolledBack.status).toBe(200);
    expect(rolledBack.body.versions.map((v) => [v.version, v.stage])).toEqual([
      [3, "current"],
      [2, "previous"],
      [1, null],
    ]);
    expect(await reveal(id)).toEqual({ secret_key: old });
    await expectStageInvariant(id);
  });

  it("a new value that fails its live test is not promoted: current untouched, the pending version removed, the run failed", async () => {
    const { id, value } = await stripeCredential();
    const refused = stripeTestKey();
    const { started, outputs } = await rotateByHand(id, { secret_key: refused });
    expect(started.status).toBe(202);
    expect(outputs).toEqual(["failed"]);
    const state = await storedState(id);
    expect(state.versions).toMatchObject([{ version: 1, stage: "current" }]);
    expect(state.runs).toMatchObject([{ state: "failed", step: "test" }]);
    expect(state.runs[0]?.error).toContain("invalid");
    expect(state.events).toEqual(["rotation.failed"]);
    expect(await reveal(id)).toEqual({ secret_key: value });
    expect((await decryptedVersions(tenant.id, id)).size).toBe(1);
  });

  it("refuses a rotation without a value for a credential with no automatic method, an invalid value, and a second rotation while one runs", async () => {
    const { id } = await stripeCredential();
    const bare = await callJson("POST", `/api/v1/credentials/${id}/rotate`, {
      key: tenant.adminKey,
      body: {},
    });
    expect(bare.status).toBe(422);
    const invalid = await callJson("POST", `/api/v1/credentials/${id}/rotate`, {
      key: tenant.adminKey,
      body: { fields: { secret_key: "sk_test_short" } },
    });
    expect(invalid.status).toBe(422);
    expect(JSON.stringify(invalid.body)).not.toContain("sk_test_short");
    expect((await storedState(id)).runs).toEqual([]);

    await claimRun(tenant, id);
    const busy = await callJson("POST", `/api/v1/credentials/${id}/rotate`, {
      key: tenant.adminKey,
      body: { fields: { secret_key: stripeTestKey() } },
    });
    expect(busy.status).toBe(409);
    expect((await storedState(id)).versions).toMatchObject([{ version: 1, stage: "current" }]);
  });
});

describe("stage labels", () => {
  it("exactly one version is current and current_version names it after every update, rollback and rotation", async () => {
    const { id } = await sendgridCredential();
    let etag = (await detail(id)).headers.get("etag") as string;
    await expectStageInvariant(id);
    for (let i = 0; i < 2; i++) {
      const updated = await callJson("PATCH", `/api/v1/credentials/${id}`, {
        key: tenant.adminKey,
        body: { fields: { api_key: sendgrid.api.addKey(`update ${i}`, ["mail.send"]).key } },
        headers: { "if-match": etag },
      });
      expect(updated.status).toBe(200);
      etag = updated.headers.get("etag") as string;
      await expectStageInvariant(id);
    }
    const renamed = await callJson("PATCH", `/api/v1/credentials/${id}`, {
      key: tenant.adminKey,
      body: { name: "renamed" },
      headers: { "if-match": etag },
    });
    etag = renamed.headers.get("etag") as string;
    await expectStageInvariant(id);
    const rolledBack = await callJson("POST", `/api/v1/credentials/${id}/rollback`, {
      key: tenant.adminKey,
      body: { version: 1 },
      headers: { "if-match": etag },
    });
    expect(rolledBack.status).toBe(200);
    await expectStageInvariant(id);
    expect(await runWorkflow(await claimRun(tenant, id))).toBe("completed");
    await expectStageInvariant(id);
    const { versions } = await storedState(id);
    expect(versions.map((v) => [v.version, v.stage])).toEqual([
      [1, null],
      [2, null],
      [3, null],
      [4, "previous"],
      [5, "current"],
    ]);
  });
});
