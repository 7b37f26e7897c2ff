/**
 * Shared pieces of the credential rotation tests: SendGrid (stand-in from ./stand-ins, plus its documented
 * probe `GET /v3/scopes`), credentials stored through the API, runs claimed and Workflows driven directly
 * (never through the cron, so these files only touch their own tenants), and the observable end state.
 */
import { introspectWorkflowInstance } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { HttpResponse, http } from "msw";
import { expect } from "vitest";
import { openVersion } from "../../src/credentials/credential-versions";
import { database } from "../../src/db/client";
import { OVERLAP_ENDED, type RotationParams } from "../../src/lifecycle/rotation-params";
import { claimRunStatement, rotationRunId } from "../../src/lifecycle/rotation-runs";
import { unseal } from "../../src/vault/keyring";
import { callJson, type TestTenant } from "../helpers/api";
import { BASE62, randomFrom } from "./stand-ins/common";
import { ROTATOR_SCOPES, SendgridStandIn, sendgridError } from "./stand-ins/sendgrid";

export const DAY = 86_400_000;
/** The logical clock of the runs these tests start (far from any real time: nothing depends on the wall clock). */
export const T0 = Date.UTC(2031, 0, 1);

type Modifier = Parameters<
  Parameters<Awaited<ReturnType<typeof introspectWorkflowInstance>>["modify"]>[0]
>[0];

/** SendGrid's API Keys stand-in plus its probe: a key is valid while it exists and is not marked refused. */
export class SendgridAccount {
  readonly api = new SendgridStandIn();
  /** Keys the probe answers 401 for although they exist (a key that does not work, e.g. never propagated). */
  probeRefuses: (key: { id: string; name: string }) => boolean = () => false;

  handlers() {
    return [
      ...this.api.handlers(),
      http.get("https://api.sendgrid.com/v3/scopes", ({ request }) => {
        const token = /^Bearer (.+)$/.exec(request.headers.get("authorization") ?? "")?.[1];
        const key = this.api.keys.find((entry) => entry.key === token);
        if (!key || this.probeRefuses(key)) return sendgridError("authorization required", 401);
        return HttpResponse.json({ scopes: key.scopes });
      }),
    ];
  }

  /** The least-privileged key a provider rotation uses. */
  rotatorKey() {
    return this.api.addKey("keywarden-rotator", ROTATOR_SCOPES);
  }

  isLive(keyValue: string): boolean {
    return this.api.keys.some((entry) => entry.key === keyValue);
  }

  /** Keys minted by the run `runId` (the rotator names them after the run). */
  mintedBy(runId: string) {
    return this.api.keysNamed(`keywarden:${runId}`);
  }
}

export async function storeCredential(
  tenant: TestTenant,
  service: string,
  fields: Record<string, string>,
): Promise<string> {
  const response = await callJson<{ id: string }>("POST", "/api/v1/credentials", {
    key: tenant.adminKey,
    body: { service, environment: "development", fields },
  });
  if (response.status !== 201) throw new Error(JSON.stringify(response.body));
  return response.body.id;
}

export async function configureRotation(tenant: TestTenant, id: string, body: Record<string, unknown>) {
  return callJson<Record<string, unknown> & { signing_secret?: string }>(
    "PUT",
    `/api/v1/credentials/${id}/rotation`,
    { key: tenant.adminKey, body },
  );
}

/** Claims a scheduled run as the cron does (the run row, `next_rotation_at` cleared) and returns its params. */
export async function claimRun(tenant: TestTenant, credentialId: string, now = T0): Promise<RotationParams> {
  const params: RotationParams = {
    runId: rotationRunId(credentialId, now),
    tenantId: tenant.id,
    subjectType: "credential",
    subjectId: credentialId,
    now,
  };
  const db = database(env.DB);
  const claim = claimRunStatement(db, { ...params, id: params.runId, trigger: "schedule" }).toSQL();
  await env.DB.batch([
    env.DB.prepare(claim.sql).bind(...claim.params),
    env.DB.prepare("UPDATE credential_rotations SET next_rotation_at = NULL WHERE credential_id = ?").bind(
      credentialId,
    ),
  ]);
  return params;
}

/**
 * Starts the run's Workflow and waits for it to end: sleeps and retry delays off, and the overlap ended by
 * the event the cron would send one day later.
 */
export async function runWorkflow(
  params: RotationParams,
  modify: (m: Modifier) => Promise<void> = async () => {},
): Promise<unknown> {
  const instance = await introspectWorkflowInstance(env.CREDENTIAL_ROTATION, params.runId);
  try {
    await instance.modify(async (m) => {
      await m.disableSleeps();
      await m.disableRetryDelays();
      await m.mockEvent({ type: OVERLAP_ENDED, payload: { now: params.now + DAY } });
      await modify(m);
    });
    await env.CREDENTIAL_ROTATION.create({ id: params.runId, params });
    await instance.waitForStatus("complete");
    return await instance.getOutput();
  } finally {
    await instance.dispose();
  }
}

export interface VersionState {
  version: number;
  stage: string | null;
  provider_key_id: string | null;
  created_by: string;
}

/** Everything a rotation may change about one credential, as stored. */
export async function storedState(credentialId: string) {
  const versions = await env.DB.prepare(
    "SELECT version, stage, provider_key_id, created_by FROM credential_versions WHERE credential_id = ? ORDER BY version",
  )
    .bind(credentialId)
    .all<VersionState>();
  const credential = await env.DB.prepare("SELECT current_version, revision FROM credentials WHERE id = ?")
    .bind(credentialId)
    .first<{ current_version: number; revision: number }>();
  const config = await env.DB.prepare(
    "SELECT next_rotation_at, last_rotated_at FROM credential_rotations WHERE credential_id = ?",
  )
    .bind(credentialId)
    .first<{ next_rotation_at: number | null; last_rotated_at: number | null }>();
  const runs = await env.DB.prepare(
    "SELECT id, state, step, error, successor_id FROM rotation_runs WHERE subject_id = ? ORDER BY started_at, id",
  )
    .bind(credentialId)
    .all<{ id: string; state: string; step: string; error: string | null; successor_id: string | null }>();
  const events = await env.DB.prepare("SELECT kind FROM events WHERE subject_id = ? ORDER BY at, kind")
    .bind(credentialId)
    .all<{ kind: string }>();
  return {
    versions: versions.results,
    credential,
    config,
    runs: runs.results,
    events: events.results.map((event) => event.kind),
  };
}

/** The stage invariant: exactly one current, `current_version` names it, at most one pending and one previous. */
export async function expectStageInvariant(credentialId: string): Promise<void> {
  const { versions, credential } = await storedState(credentialId);
  const current = versions.filter((v) => v.stage === "current");
  expect(current).toHaveLength(1);
  expect(current[0]?.version).toBe(credential?.current_version);
  expect(versions.filter((v) => v.stage === "pending").length).toBeLessThanOrEqual(1);
  expect(versions.filter((v) => v.stage === "previous").length).toBeLessThanOrEqual(1);
}

/** Each stored version of the credential, decrypted. */
export async function decryptedVersions(tenantId: string, credentialId: string) {
  const db = database(env.DB);
  const keys = await unseal(env, db);
  const rows = await db.query.credentialVersions.findMany({
    where: (v, { and, eq }) => and(eq(v.tenantId, tenantId), eq(v.credentialId, credentialId)),
    orderBy: (v, { asc }) => [asc(v.version)],
  });
  const plain = new Map<number, Record<string, string>>();
  for (const row of rows) plain.set(row.version, await openVersion(keys, db, row));
  return plain;
}

/** A Stripe-shaped test key (never a real one). */
export function stripeTestKey(): string {
  return `sk_test_${randomFrom(BASE62, 32)}`;
}
