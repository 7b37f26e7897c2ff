import { and, eq, isNull } from "drizzle-orm";
import { type AuditActor, type AuditEvent, commitWithAudit } from "../audit/audit-log";
import type { Database } from "../db/client";
import { apiKeys } from "../db/schema";
import { ApiError } from "../errors";
import { isoTime } from "../openapi/shared";
import { mintKey, settingsOf } from "./issue-key";

type KeyRow = typeof apiKeys.$inferSelect;
type CommitEnv = Parameters<typeof commitWithAudit>[0];
type Statement = Parameters<typeof commitWithAudit>[2][number];

export const LAST_ADMIN_KEY_DETAIL =
  "This is the tenant's last working admin key: create or enable another admin key before you revoke, disable, " +
  "down-scope or delete it.";

/** A key that authenticates right now: enabled, not revoked, not expired (as `verifyKey` judges it). */
export function isWorkingKey(row: Pick<KeyRow, "enabled" | "revokedAt" | "expiresAt">, now = Date.now()) {
  return row.enabled && row.revokedAt === null && (row.expiresAt === null || row.expiresAt > now);
}

/** Constraint failures of a key batch that mean "the state moved under you", each with what it means. */
const CONFLICTS: readonly (readonly [marker: string, detail: string])[] = [
  // migrations/0006 trigger api_keys_successor_of_live_key: the source was revoked or disabled meanwhile.
  [
    "api_keys.rotated_from_id source is not live",
    "The key was revoked or disabled while it was being rotated: nothing was changed.",
  ],
  // Unique index on rotated_from_id: another rotation of the same key won.
  ["UNIQUE constraint failed: api_keys.rotated_from_id", "This key is already being rotated."],
  // migrations/0006 triggers api_keys_keep_working_admin_on_*: the change would leave no working admin key.
  ["api_keys: the last working admin key must remain", LAST_ADMIN_KEY_DETAIL],
];

/** The 409 a failed key batch stands for, or null when the failure is not one of the known conflicts. */
export function keyConflictOf(error: unknown): ApiError | null {
  const text = String((error as { cause?: unknown })?.cause ?? error);
  const hit = CONFLICTS.find(([marker]) => text.includes(marker));
  return hit ? new ApiError("CONFLICT", hit[1]) : null;
}

/** `commitWithAudit` for key mutations: a batch that lost a race answers 409 and leaves nothing behind. */
export async function commitKeyChange(
  env: CommitEnv,
  actor: AuditActor,
  statements: Statement[],
  events: AuditEvent[],
): Promise<void> {
  await commitWithAudit(env, actor, statements, events).catch((error: unknown) => {
    throw keyConflictOf(error) ?? error;
  });
}

/**
 * Only a working key that has not been rotated yet can be rotated. Rotating a disabled or expired key would
 * hand out a successor that works although its source does not (or one that is expired at birth).
 */
export function assertRotatable(row: KeyRow, now = Date.now()): void {
  if (row.revokedAt !== null) throw new ApiError("CONFLICT", "A revoked key cannot be rotated.");
  if (row.rotatedToId !== null) {
    throw new ApiError(
      "CONFLICT",
      `This key was already rotated to ${row.rotatedToId}: rotate that key instead.`,
    );
  }
  if (!row.enabled) throw new ApiError("CONFLICT", "A disabled key cannot be rotated: enable it first.");
  if (!isWorkingKey(row, now))
    throw new ApiError("CONFLICT", "An expired key cannot be rotated: create a new key.");
}

/** The successor of `row`: same settings (so never more scopes than its source), a fresh period from `now`. */
export function mintSuccessor(row: KeyRow, createdBy: string | null, now: number) {
  return mintKey(row.tenantId, { ...settingsOf(row, now), createdBy }, { rotatedFromId: row.id }, now);
}

/**
 * Promotion of a successor: the source points to it, stops being scheduled, and keeps verifying only until
 * the overlap ends. Guarded on `rotated_to_id IS NULL` so a second promotion changes nothing. The
 * successor's INSERT (when in the same batch) must come first, so the 0006 trigger judges the source as
 * it is at commit time, not as it was when the caller read it.
 */
export function promotionOf(
  db: Database,
  row: KeyRow,
  successorId: string,
  overlapSeconds: number,
  now: number,
) {
  const overlapEndsAt = now + overlapSeconds * 1000;
  const expiresAt = row.expiresAt === null ? overlapEndsAt : Math.min(row.expiresAt, overlapEndsAt);
  const statements: Statement[] = [
    db
      .update(apiKeys)
      .set({ rotatedToId: successorId, expiresAt, nextRotationAt: null, updatedAt: now })
      .where(and(eq(apiKeys.tenantId, row.tenantId), eq(apiKeys.id, row.id), isNull(apiKeys.rotatedToId))),
  ];
  const events: AuditEvent[] = [
    {
      action: "key.rotate",
      targetType: "key",
      targetId: row.id,
      detail: { successor_id: successorId, grace_ends_at: isoTime(expiresAt) },
    },
  ];
  return { expiresAt, statements, events };
}

/**
 * Revocation of a live key. The 0006 triggers refuse it inside the batch when it would remove the tenant's
 * last working admin key.
 */
export function revocationOf(db: Database, row: KeyRow, now: number) {
  const statements: Statement[] = [
    db
      .update(apiKeys)
      .set({ revokedAt: now, nextRotationAt: null, updatedAt: now })
      .where(and(eq(apiKeys.tenantId, row.tenantId), eq(apiKeys.id, row.id))),
  ];
  const events: AuditEvent[] = [{ action: "key.revoke", targetType: "key", targetId: row.id }];
  return { statements, events };
}
