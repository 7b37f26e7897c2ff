import type { z } from "@hono/zod-openapi";
import { and, eq } from "drizzle-orm";
import type { AuditActor } from "../audit/audit-log";
import { commitWithAudit } from "../audit/audit-log";
import { type Database, database } from "../db/client";
import { inJsonList } from "../db/in-list";
import { credentialRotations, credentials } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import {
  assertNoRunInProgress,
  latestRuns,
  type RotationRun,
  rotationView,
} from "../lifecycle/rotation-runs";
import { providerRotatorFor } from "../lifecycle/rotators";
import { assertDeliverableUrl } from "../monitoring/outbound-url";
import { newSigningSecret } from "../monitoring/standard-webhooks";
import { unseal } from "../vault/keyring";
import type { CredentialRotationConfigSchema, CredentialRotationSchema } from "./credential-schemas";
import type { CredentialRow } from "./credential-versions";
import { openValues, sealValues } from "./sealed-fields";

export type RotationConfig = typeof credentialRotations.$inferSelect;
type RotationConfigInput = z.infer<typeof CredentialRotationConfigSchema>;

const DAY_MS = 86_400_000;

/** The signing secret of an external rotation endpoint is sealed AAD-bound to its credential's config. */
export const endpointSecretRecord = (config: Pick<RotationConfig, "tenantId" | "credentialId">) => ({
  tenantId: config.tenantId,
  recordId: `credential-rotation:${config.credentialId}`,
});
export const ENDPOINT_SECRET_FIELD = "signing_secret";

/** The credential's rotation config (no row or one), as a query a caller can batch with its other reads. */
export function rotationConfigQuery(db: Database, row: Pick<CredentialRow, "tenantId" | "id">) {
  return db
    .select()
    .from(credentialRotations)
    .where(and(eq(credentialRotations.tenantId, row.tenantId), eq(credentialRotations.credentialId, row.id)));
}

export async function findRotationConfig(
  db: Database,
  row: Pick<CredentialRow, "tenantId" | "id">,
): Promise<RotationConfig | undefined> {
  return rotationConfigQuery(db, row).get();
}

/** The `rotation` object of one credential (DESIGN.md fixed points), with how it rotates. */
export function credentialRotationView(
  config: RotationConfig | undefined,
  run: RotationRun | undefined,
): z.infer<typeof CredentialRotationSchema> {
  return {
    ...rotationView(
      {
        policyDays: config?.rotationDays ?? null,
        nextRotationAt: config?.nextRotationAt ?? null,
        lastRotatedAt: config?.lastRotatedAt ?? null,
      },
      run,
    ),
    method: config?.method ?? null,
    overlap_seconds: config?.overlapSeconds ?? null,
    rotator_credential_id: config?.rotatorCredentialId ?? null,
    endpoint_url: config?.endpointUrl ?? null,
    settings: config ? config.settings : null,
  };
}

/** The `rotation` objects of a page of credentials: two queries whatever the page size. */
export async function credentialRotationViews(
  db: Database,
  tenantId: string,
  ids: readonly string[],
): Promise<Map<string, z.infer<typeof CredentialRotationSchema>>> {
  const configs = ids.length
    ? await db
        .select()
        .from(credentialRotations)
        .where(
          and(eq(credentialRotations.tenantId, tenantId), inJsonList(credentialRotations.credentialId, ids)),
        )
        .all()
    : [];
  const runs = await latestRuns(db, tenantId, ids);
  const byId = new Map(configs.map((config) => [config.credentialId, config]));
  return new Map(ids.map((id) => [id, credentialRotationView(byId.get(id), runs.get(id))]));
}

export function assertNoRotationRunning(db: Database, row: Pick<CredentialRow, "tenantId" | "id">) {
  return assertNoRunInProgress(db, row, "A rotation of this credential is in progress; wait for it to end.");
}

/** The `rotation` object of one credential. */
export async function credentialRotationOf(db: Database, row: Pick<CredentialRow, "tenantId" | "id">) {
  const views = await credentialRotationViews(db, row.tenantId, [row.id]);
  return views.get(row.id) as z.infer<typeof CredentialRotationSchema>;
}

function invalid(path: string, message: string): ApiError {
  return new ApiError("VALIDATION_FAILED", "The rotation settings were refused.", {
    errors: [{ path, message }],
  });
}

/**
 * The rotation credential of a provider rotation: another active credential of the same tenant, of the
 * service the rotator needs. A credential never rotates itself, so the key that mints and revokes is never
 * the one being revoked. Another tenant's id reads exactly like a missing one.
 */
async function assertRotatorCredential(db: Database, row: CredentialRow, id: string, serviceId: string) {
  if (id === row.id) throw invalid("rotator_credential_id", "must be a separate credential");
  const found = await db
    .select({ serviceId: credentials.serviceId, status: credentials.status })
    .from(credentials)
    .where(and(eq(credentials.tenantId, row.tenantId), eq(credentials.id, id)))
    .get();
  if (found?.status !== "active") throw invalid("rotator_credential_id", "no such credential");
  if (found.serviceId !== serviceId) {
    throw invalid("rotator_credential_id", `must be a credential of the service ${serviceId}`);
  }
}

/**
 * `PUT /credentials/{id}/rotation`: stores how the credential rotates and schedules the next rotation a full
 * period from now. An external endpoint gets a signing secret when it has none yet (returned once).
 */
export async function configureRotation(
  env: Bindings,
  actor: AuditActor,
  row: CredentialRow,
  input: RotationConfigInput,
  now: number,
): Promise<{ config: RotationConfig; signingSecret?: string }> {
  const db = database(env.DB);
  await assertNoRotationRunning(db, row);
  const existing = await findRotationConfig(db, row);
  let settings: Record<string, string> = {};
  let rotatorCredentialId: string | null = null;
  let endpointUrl: string | null = null;
  let sealedEndpointSecret: string | null = null;
  let dekVersion: number | null = null;
  let signingSecret: string | undefined;
  const extra = [];
  if (input.method === "provider") {
    const rotator = providerRotatorFor(row.serviceId);
    if (!rotator) throw invalid("method", "this service has no provider rotator; use assisted or external");
    await assertRotatorCredential(db, row, input.rotator_credential_id, rotator.rotatorServiceId);
    const parsed = rotator.settingsSchema.safeParse(input.settings);
    if (!parsed.success) {
      throw new ApiError("VALIDATION_FAILED", "The rotation settings were refused.", {
        errors: parsed.error.issues.map((issue) => ({
          path: ["settings", ...issue.path.map(String)].join("."),
          message: issue.message,
        })),
      });
    }
    settings = parsed.data;
    rotatorCredentialId = input.rotator_credential_id;
  } else if (input.method === "external") {
    endpointUrl = assertDeliverableUrl(
      input.endpoint_url,
      env.ALLOW_LOOPBACK_WEBHOOKS === "true",
      "endpoint_url",
    ).toString();
    if (existing?.sealedEndpointSecret) {
      sealedEndpointSecret = existing.sealedEndpointSecret;
      dekVersion = existing.dekVersion;
    } else {
      signingSecret = newSigningSecret();
      const sealing = await sealValues(
        await unseal(env, db),
        db,
        endpointSecretRecord({ tenantId: row.tenantId, credentialId: row.id }),
        { [ENDPOINT_SECRET_FIELD]: signingSecret },
      );
      sealedEndpointSecret = sealing.sealed[ENDPOINT_SECRET_FIELD] ?? null;
      dekVersion = sealing.dekVersion;
      extra.push(sealing.countEncryptions);
    }
  }
  const config: RotationConfig = {
    credentialId: row.id,
    tenantId: row.tenantId,
    method: input.method,
    rotationDays: input.policy_days,
    overlapSeconds: input.overlap_seconds,
    nextRotationAt: now + input.policy_days * DAY_MS,
    lastRotatedAt: existing?.lastRotatedAt ?? null,
    rotatorCredentialId,
    settings,
    endpointUrl,
    sealedEndpointSecret,
    dekVersion,
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
  };
  const { credentialId: _id, createdAt: _created, ...changes } = config;
  await commitWithAudit(
    env,
    actor,
    [
      db
        .insert(credentialRotations)
        .values(config)
        .onConflictDoUpdate({ target: credentialRotations.credentialId, set: changes }),
      ...extra,
    ],
    [
      {
        action: "credential.rotation_configure",
        targetType: "credential",
        targetId: row.id,
        detail: {
          method: input.method,
          policy_days: input.policy_days,
          overlap_seconds: input.overlap_seconds,
          rotator_credential_id: rotatorCredentialId,
          endpoint_host: endpointUrl ? new URL(endpointUrl).host : null,
          signing_secret_created: signingSecret !== undefined,
        },
      },
    ],
  );
  return { config, ...(signingSecret ? { signingSecret } : {}) };
}

/** `DELETE /credentials/{id}/rotation`: no more scheduled rotations (a running one must end first). */
export async function disableRotation(env: Bindings, actor: AuditActor, row: CredentialRow): Promise<void> {
  const db = database(env.DB);
  await assertNoRotationRunning(db, row);
  if (!(await findRotationConfig(db, row))) throw new ApiError("NOT_FOUND", "No rotation is configured.");
  await commitWithAudit(
    env,
    actor,
    [
      db
        .delete(credentialRotations)
        .where(
          and(eq(credentialRotations.tenantId, row.tenantId), eq(credentialRotations.credentialId, row.id)),
        ),
    ],
    [{ action: "credential.rotation_disable", targetType: "credential", targetId: row.id }],
  );
}

/** The external endpoint's signing secret, opened inside the step that calls the endpoint. */
export async function openEndpointSecret(
  env: Bindings,
  db: Database,
  config: RotationConfig,
): Promise<string> {
  if (!config.sealedEndpointSecret) throw new Error("The external rotation has no signing secret.");
  const opened = await openValues(await unseal(env, db), db, endpointSecretRecord(config), {
    [ENDPOINT_SECRET_FIELD]: config.sealedEndpointSecret,
  });
  return opened[ENDPOINT_SECRET_FIELD] as string;
}

/** The next scheduled rotation a full period after `now`, for a promote's batch. */
export function nextPeriodStatement(db: Database, config: RotationConfig, now: number) {
  return db
    .update(credentialRotations)
    .set({ nextRotationAt: now + config.rotationDays * DAY_MS, lastRotatedAt: now, updatedAt: now })
    .where(
      and(
        eq(credentialRotations.tenantId, config.tenantId),
        eq(credentialRotations.credentialId, config.credentialId),
      ),
    );
}
