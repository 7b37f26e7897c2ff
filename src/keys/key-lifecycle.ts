import { and, eq, type SQL, sql } from "drizzle-orm";
import { type AuditActor, type AuditEvent, commitWithAudit } from "../audit/audit-log";
import { ADMIN_SCOPE, isAdminCapable } from "../auth/scopes";
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

export function isWorkingAdminKey(row: KeyRow, now = Date.now()): boolean {
  return isWorkingKey(row, now) && isAdminCapable(row.scopes);
}

/** `isWorkingAdminKey` in SQL, over the `api_keys` row named `alias`. */
function workingAdminSql(alias: string, now: number): SQL {
  const key = sql.raw(`"${alias}"`);
  return sql`${key}."enabled" = 1 AND ${key}."revoked_at" IS NULL
    AND (${key}."expires_at" IS NULL OR ${key}."expires_at" > ${now})
    AND EXISTS (SELECT 1 FROM json_each(${key}."scopes") WHERE json_each.value = ${ADMIN_SCOPE})`;
}

/**
 * Put first in the batch of any change that leaves key `keyId` unable to act as an admin (revoke, disable,
 * down-scope, delete). When that key is the tenant's last working admin key, the statement sets its NOT NULL
 * `name` to NULL, which aborts the whole batch, audit row included; otherwise it matches no row and changes
 * nothing. The check runs inside the batch because a check read before it would race: two admins each
 * revoking a different one of the last two admin keys would both pass it. The tenant's AuditChain DO runs its
 * batches one after another, so inside the batch the answer is exact. SQLite allows RAISE() only inside
 * triggers, and this round adds no migration; a trigger would be the tidier home for the same rule.
 */
export function keepLastWorkingAdminKey(db: Database, tenantId: string, keyId: string, now: number) {
  return db
    .update(apiKeys)
    .set({ name: sql`NULL` })
    .where(
      and(
        eq(apiKeys.tenantId, tenantId),
        eq(apiKeys.id, keyId),
        workingAdminSql("api_keys", now),
        sql`NOT EXISTS (SELECT 1 FROM "api_keys" AS "other" WHERE "other"."tenant_id" = ${tenantId}
          AND "other"."id" <> ${keyId} AND ${workingAdminSql("other", now)})`,
      ),
    );
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
  // keepLastWorkingAdminKey fired.
  ["NOT NULL constraint failed: api_keys.name", LAST_ADMIN_KEY_DETAIL],
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

/**
 * One rotation as a single batch: the successor (same settings, so never more scopes than its source, which
 * the caller must hold) and the source's shortened expiry. The successor's INSERT goes first so the 0006
 * trigger judges the source as it is at commit time, not as it was when the caller read it.
 */
export async function planRotation(
  db: Database,
  row: KeyRow,
  options: { graceSeconds: number; createdBy: string; now: number },
) {
  const { now } = options;
  const graceEnd = now + options.graceSeconds * 1000;
  const oldExpiresAt = row.expiresAt === null ? graceEnd : Math.min(row.expiresAt, graceEnd);
  const successor = await mintKey(
    row.tenantId,
    { ...settingsOf(row), createdBy: options.createdBy },
    { rotatedFromId: row.id },
    now,
  );
  const statements: Statement[] = [
    db.insert(apiKeys).values(successor.row),
    db
      .update(apiKeys)
      .set({ rotatedToId: successor.row.id, expiresAt: oldExpiresAt, updatedAt: now })
      .where(and(eq(apiKeys.tenantId, row.tenantId), eq(apiKeys.id, row.id))),
  ];
  const events: AuditEvent[] = [
    {
      action: "key.rotate",
      targetType: "key",
      targetId: row.id,
      detail: { successor_id: successor.row.id, grace_ends_at: isoTime(oldExpiresAt) },
    },
  ];
  return { successor, oldExpiresAt, statements, events };
}

/** Revocation of a live key, guarded so it cannot remove the tenant's last working admin key. */
export function revocationOf(db: Database, row: KeyRow, now: number) {
  const statements: Statement[] = [
    keepLastWorkingAdminKey(db, row.tenantId, row.id, now),
    db
      .update(apiKeys)
      .set({ revokedAt: now, updatedAt: now })
      .where(and(eq(apiKeys.tenantId, row.tenantId), eq(apiKeys.id, row.id))),
  ];
  const events: AuditEvent[] = [{ action: "key.revoke", targetType: "key", targetId: row.id }];
  return { statements, events };
}
