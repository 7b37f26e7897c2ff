import { and, eq, sql } from "drizzle-orm";
import { type AuditActor, commitWithAudit } from "../audit/audit-log";
import { openValues, sealValues } from "../credentials/sealed-fields";
import { type Database, database } from "../db/client";
import { keyHandoffs } from "../db/schema";
import type { Bindings } from "../env";
import { ApiError } from "../errors";
import { assertDeliverableUrl, deliver } from "../monitoring/outbound-url";
import { signWebhook } from "../monitoring/standard-webhooks";
import type { KeyringEnv } from "../vault/kek-config";
import { unseal } from "../vault/keyring";
import { encryptToEndpoint, findDeliveryEndpoint, openSigningSecret } from "./delivery-endpoint";
import type { HandoffMethod } from "./rotation-kinds";

type Statement = Parameters<typeof commitWithAudit>[2][number];
type Handoff = typeof keyHandoffs.$inferSelect;
type SealEnv = KeyringEnv;
type DeliveryEnv = SealEnv & Pick<Bindings, "DB" | "AUDIT_CHAIN" | "ALLOW_LOOPBACK_WEBHOOKS">;

/** The `type` of the webhook that carries a rotated key. */
export const KEY_ROTATED_WEBHOOK = "key.rotated";

/** The sealed plaintext's record id: the AAD binds the blob to this key, so it cannot open as another key's. */
export function handoffRecordId(keyId: string): string {
  return `key-handoff:${keyId}`;
}

/**
 * The Standard Webhooks message id of a key's delivery. It is the same on every attempt, so a receiver that
 * got a message whose acknowledgement was lost recognises the retry (standardwebhooks.com, "webhook-id").
 */
export function handoffMessageId(keyId: string): string {
  return `msg_${keyId}`;
}

export interface HandoffInput {
  tenantId: string;
  /** The new key (the successor). */
  keyId: string;
  runId: string;
  plaintext: string;
  /** When the handoff is destroyed unseen: the end of the overlap. */
  expiresAt: number;
  now: number;
  /** The key it replaces, told to the tenant inside the JWE. */
  rotatedFromId?: string;
}

/**
 * The statements that hand a rotated key's plaintext over, for the batch that inserts the key. It is never
 * stored as itself (threat model case 30): with a delivery endpoint it is stored only as a JWE to the tenant's
 * public key, which Keywarden cannot open; without one it is sealed under the tenant DEK for one pickup.
 */
export async function handoffStatements(
  env: SealEnv,
  db: Database,
  input: HandoffInput,
): Promise<{ statements: Statement[]; method: HandoffMethod }> {
  const row = {
    keyId: input.keyId,
    tenantId: input.tenantId,
    runId: input.runId,
    attempts: 0,
    createdAt: input.now,
    expiresAt: input.expiresAt,
  };
  const endpoint = await findDeliveryEndpoint(db, input.tenantId);
  if (endpoint) {
    const jwe = await encryptToEndpoint(
      endpoint,
      JSON.stringify({
        key_id: input.keyId,
        key: input.plaintext,
        ...(input.rotatedFromId ? { rotated_from_id: input.rotatedFromId } : {}),
        rotated_at: new Date(input.now).toISOString(),
      }),
    );
    return {
      statements: [
        db.insert(keyHandoffs).values({ ...row, method: "webhook", payload: jwe, dekVersion: null }),
      ],
      method: "webhook",
    };
  }
  const { sealed, dekVersion, countEncryptions } = await sealValues(
    await unseal(env, db),
    db,
    { tenantId: input.tenantId, recordId: handoffRecordId(input.keyId) },
    { key: input.plaintext },
  );
  return {
    statements: [
      db.insert(keyHandoffs).values({ ...row, method: "pickup", payload: sealed.key as string, dekVersion }),
      countEncryptions,
    ],
    method: "pickup",
  };
}

/** Why a delivery failed. `permanent`: retrying cannot help until the tenant changes its endpoint. */
export class HandoffDeliveryError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
    readonly status?: number,
  ) {
    super(message);
    this.name = "HandoffDeliveryError";
  }
}

function systemActor(handoff: Pick<Handoff, "tenantId" | "runId">): AuditActor {
  return { tenantId: handoff.tenantId, actorType: "system", actorId: "rotation", requestId: handoff.runId };
}

async function findHandoff(db: Database, keyId: string, tenantId?: string): Promise<Handoff | undefined> {
  return db
    .select()
    .from(keyHandoffs)
    .where(and(eq(keyHandoffs.keyId, keyId), tenantId ? eq(keyHandoffs.tenantId, tenantId) : undefined))
    .get();
}

/**
 * Pushes a stored JWE to the tenant's endpoint, signed per Standard Webhooks, through the SSRF guard (threat
 * model case 31; the URL is checked again, as the loopback switch may have been turned off since). A 2xx
 * deletes the handoff: from then on Keywarden holds nothing that yields the key. Anything else counts an
 * attempt and throws a `HandoffDeliveryError` naming the HTTP status or the network failure, never the
 * payload, so the Workflow step retries. Idempotent: a handoff already delivered or picked up is "gone".
 *
 * `now` is the time of this attempt (the `webhook-timestamp`): receivers refuse a timestamp outside their
 * tolerance (5 minutes in the reference libraries), so pass the send time, not the rotation's scheduled time.
 */
export async function deliverHandoff(
  env: DeliveryEnv,
  keyId: string,
  now: number,
): Promise<"delivered" | "not_webhook" | "gone"> {
  const db = database(env.DB);
  const handoff = await findHandoff(db, keyId);
  if (!handoff) return "gone";
  if (handoff.method !== "webhook") return "not_webhook";
  const endpoint = await findDeliveryEndpoint(db, handoff.tenantId);
  if (!endpoint) {
    await recordFailedAttempt(env, db, handoff, "no_endpoint");
    throw new HandoffDeliveryError("The tenant has no delivery endpoint any more.", true);
  }
  let url: URL;
  try {
    url = assertDeliverableUrl(endpoint.url, env.ALLOW_LOOPBACK_WEBHOOKS === "true");
  } catch {
    await recordFailedAttempt(env, db, handoff, "url_refused");
    throw new HandoffDeliveryError("The delivery endpoint's URL is no longer allowed.", true);
  }
  const body = JSON.stringify({ type: KEY_ROTATED_WEBHOOK, key_id: handoff.keyId, jwe: handoff.payload });
  const headers = await signWebhook(
    await openSigningSecret(env, db, endpoint),
    handoffMessageId(handoff.keyId),
    Math.floor(now / 1000),
    body,
  );
  const result = await deliver(url, { headers: { ...headers, "content-type": "application/json" }, body });
  if (!result.delivered) {
    await recordFailedAttempt(env, db, handoff, result.reason ?? "rejected", result.status);
    throw new HandoffDeliveryError(
      `The delivery endpoint did not accept the key: ${result.status ? `HTTP ${result.status}` : result.reason}.`,
      false,
      result.status,
    );
  }
  await commitWithAudit(
    env,
    systemActor(handoff),
    [db.delete(keyHandoffs).where(and(eq(keyHandoffs.keyId, keyId), eq(keyHandoffs.method, "webhook")))],
    [
      {
        action: "key.delivered",
        targetType: "key",
        targetId: keyId,
        detail: { status: result.status ?? null, attempts: handoff.attempts + 1, host: url.host },
      },
    ],
  );
  return "delivered";
}

async function recordFailedAttempt(
  env: DeliveryEnv,
  db: Database,
  handoff: Handoff,
  reason: string,
  status?: number,
): Promise<void> {
  await commitWithAudit(
    env,
    systemActor(handoff),
    [
      db
        .update(keyHandoffs)
        .set({ attempts: sql`${keyHandoffs.attempts} + 1` })
        .where(eq(keyHandoffs.keyId, handoff.keyId)),
    ],
    [
      {
        action: "key.delivery_failed",
        targetType: "key",
        targetId: handoff.keyId,
        detail: { reason, status: status ?? null, attempt: handoff.attempts + 1 },
      },
    ],
  );
}

/** The DELETE for the retire batch: whatever was not delivered or picked up by the end of the overlap. */
export function endHandoffStatements(db: Database, keyId: string): Statement[] {
  return [db.delete(keyHandoffs).where(eq(keyHandoffs.keyId, keyId))];
}

/**
 * Whether the successor still waits to reach its tenant (sealed for pickup, or a JWE that no attempt
 * delivered): the retire step records `rotation.pickup_missed` when it does.
 */
export async function pendingPickup(db: Database, keyId: string): Promise<boolean> {
  return (await findHandoff(db, keyId)) !== undefined;
}

/** What a pickup hands out: the plaintext of a sealed handoff, or the undelivered JWE of a webhook one. */
export type PickedUp = { key_id: string; key: string } | { key_id: string; jwe: string };

/** A handoff read for pickup, its content opened, not yet claimed. */
export interface PickupCandidate {
  handoff: Handoff;
  content: PickedUp;
}

const NOTHING_TO_PICK_UP = "No key is waiting for pickup under this id.";

/**
 * Reads the tenant's handoff for `keyId` and opens it. Another tenant's, an expired or an already picked up
 * one is 404 alike.
 */
export async function readPickup(
  env: SealEnv,
  db: Database,
  tenantId: string,
  keyId: string,
  now: number,
): Promise<PickupCandidate> {
  const handoff = await findHandoff(db, keyId, tenantId);
  if (!handoff || handoff.expiresAt <= now) throw new ApiError("NOT_FOUND", NOTHING_TO_PICK_UP);
  if (handoff.method === "webhook") return { handoff, content: { key_id: keyId, jwe: handoff.payload } };
  const { key } = await openValues(
    await unseal(env, db),
    db,
    { tenantId, recordId: handoffRecordId(keyId) },
    { key: handoff.payload },
  );
  return { handoff, content: { key_id: keyId, key: key as string } };
}

/**
 * The statement that makes a claim fail when the handoff is already gone: an INSERT whose only row, present
 * exactly when no handoff is left, violates NOT NULL. The audit chain's writer runs batches one at a time, so
 * of two pickups that both read the handoff, the second one's batch finds it deleted and aborts whole, its
 * audit row included (the batch returns no rows to the caller, so DELETE ... RETURNING cannot tell it).
 */
function handoffStillThere(handoff: Handoff): Statement {
  return {
    toSQL: () => ({
      sql: `INSERT INTO key_handoffs (key_id, tenant_id, run_id, method, payload, attempts, created_at, expires_at)
        SELECT ?, NULL, '', '', '', 0, 0, 0
        WHERE NOT EXISTS (SELECT 1 FROM key_handoffs WHERE key_id = ? AND tenant_id = ?)`,
      params: [handoff.keyId, handoff.keyId, handoff.tenantId],
    }),
  };
}
const CLAIM_LOST = "NOT NULL constraint failed: key_handoffs.tenant_id";

/**
 * Claims a read handoff: deletes it in the audited batch, and throws 404 when another pickup claimed it
 * first. Only after this returns may its content be handed out (audited before revealed, as Vault does).
 */
export async function claimPickup(
  env: DeliveryEnv,
  actor: AuditActor,
  candidate: PickupCandidate,
): Promise<PickedUp> {
  const { handoff } = candidate;
  const db = database(env.DB);
  await commitWithAudit(
    env,
    actor,
    [
      handoffStillThere(handoff),
      db
        .delete(keyHandoffs)
        .where(and(eq(keyHandoffs.keyId, handoff.keyId), eq(keyHandoffs.tenantId, handoff.tenantId))),
    ],
    [
      {
        action: "key.pickup",
        targetType: "key",
        targetId: handoff.keyId,
        detail: { method: handoff.method, run_id: handoff.runId },
      },
    ],
  ).catch((error: unknown) => {
    if (String((error as { cause?: unknown })?.cause ?? error).includes(CLAIM_LOST))
      throw new ApiError("NOT_FOUND", NOTHING_TO_PICK_UP);
    throw error;
  });
  return candidate.content;
}
