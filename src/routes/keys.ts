import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq, gte, or } from "drizzle-orm";
import { auditActor } from "../audit/actor";
import { commitWithAudit } from "../audit/audit-log";
import { requireScope } from "../auth/authenticate";
import { assertMayManageKey, isAdminCapable } from "../auth/scopes";
import { assertStepUp } from "../auth/step-up";
import { type Database, database } from "../db/client";
import { apiKeys, usageCounts } from "../db/schema";
import { ApiError } from "../errors";
import {
  mintKeyWithBackup,
  nextRotationAt,
  parseFutureTime,
  resolveScopes,
  settingsFromRequest,
  settingsOf,
} from "../keys/issue-key";
import { assertRotatable, commitKeyChange, revocationOf } from "../keys/key-lifecycle";
import { forgetCachedKey, toKeyRecord } from "../keys/key-record";
import {
  CreatedKeySchema,
  CreateKeySchema,
  EnvironmentSchema,
  KeyListSchema,
  type KeyRotationSettingsSchema,
  KeySchema,
  KeyStateSchema,
  KeyUsageSchema,
  RotatedKeySchema,
  RotateKeySchema,
  UpdateKeySchema,
} from "../keys/key-schemas";
import { keyStateWhere } from "../keys/key-state";
import { keyView, keyViews, ratelimitColumns, usageLimitColumns } from "../keys/key-view";
import { rotateKeyNow } from "../lifecycle/key-rotation";
import { subjectRunsQuery } from "../lifecycle/rotation-runs";
import { keysetPage, olderThanCursor } from "../openapi/cursor";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  IdParam,
  isoTime,
  jsonBody,
  jsonContent,
  NO_STORE,
  PageQuery,
  problems,
} from "../openapi/shared";
import { containsText, SearchTextSchema, startsWithText } from "../openapi/text-search";
import { keySettingsUnderPolicy, tenantKeyDefaults, tenantSecurityPolicy } from "../policy/security-policy";

type KeyRow = typeof apiKeys.$inferSelect;
const tags = ["Keys"];

/**
 * A new rotation schedule for a key: the next rotation counts from now. Under a tenant policy the period is
 * at most the policy's (`keySettingsUnderPolicy`), so an update cannot opt a key out of the tenant's rule.
 */
async function rotationChanges(
  db: Database,
  row: KeyRow,
  rotation: z.infer<typeof KeyRotationSettingsSchema>,
  now: number,
): Promise<Partial<KeyRow>> {
  const policy = await tenantSecurityPolicy(db, row.tenantId);
  const { rotationDays } = keySettingsUnderPolicy(
    {
      ...settingsOf(row, now),
      rotationDays: rotation.policy_days === undefined ? row.rotationDays : rotation.policy_days,
    },
    policy,
  );
  return {
    rotationDays,
    nextRotationAt: row.rotatedToId === null ? nextRotationAt(rotationDays, now) : null,
    ...(rotation.overlap_seconds !== undefined ? { rotationOverlapSeconds: rotation.overlap_seconds } : {}),
  };
}

/** Tenant-scoped lookup: another tenant's key is indistinguishable from one that never existed. */
function ownKeyQuery(db: Database, tenantId: string, id: string) {
  return db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.tenantId, tenantId), eq(apiKeys.id, id)));
}

function found(row: KeyRow | undefined): KeyRow {
  if (!row) throw new ApiError("NOT_FOUND", "No such key.");
  return row;
}

async function findOwnKey(db: Database, tenantId: string, id: string): Promise<KeyRow> {
  return found(await ownKeyQuery(db, tenantId, id).get());
}

const createKey = createRoute({
  method: "post",
  path: "/",
  operationId: "createKey",
  tags,
  summary: "Create a key",
  description:
    "The caller must hold every Keywarden scope it grants (403). An admin-capable key needs step-up: a fresh " +
    "two-factor code in `x-keywarden-totp` when the caller enrolled TOTP or the tenant requires 2FA (401/403). " +
    "The tenant's security policy is a floor: the level is raised to it and its allowlists are inherited.",
  security: bearerSecurity,
  middleware: [requireScope("keys:write")] as const,
  request: { body: jsonBody(CreateKeySchema) },
  responses: {
    201: jsonContent(CreatedKeySchema, "The key, with its plaintext (shown once)."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "SEALED"),
  },
});

const listKeys = createRoute({
  method: "get",
  path: "/",
  operationId: "listKeys",
  tags,
  summary: "List keys (masked), newest first",
  description:
    "The filters combine (all must hold) and page with the cursor: a page holds only matching keys, and " +
    "`next_cursor` continues the same filtered list (send the same filters with it).",
  security: bearerSecurity,
  middleware: [requireScope("keys:read")] as const,
  request: {
    query: PageQuery.extend({
      environment: EnvironmentSchema.optional().describe("Only keys of this environment."),
      service_id: z.string().min(1).max(64).optional().describe("Only keys bound to this service id."),
      state: KeyStateSchema.optional().describe(
        "Only keys in this state when the request is served (the key's `state`, see the Key schema).",
      ),
      q: SearchTextSchema.describe(
        "Search: keys whose name contains the text (ASCII case-insensitive), whose `start` begins with it, " +
          "or whose id is exactly it. `%`, `_` and `\\` are ordinary characters. Trimmed; empty means no search.",
      ),
    }),
  },
  responses: {
    200: jsonContent(KeyListSchema, "A page of keys."),
    ...problems(...AUTH_PROBLEMS, "BAD_REQUEST", "VALIDATION_FAILED"),
  },
});

const getKey = createRoute({
  method: "get",
  path: "/{id}",
  operationId: "getKey",
  tags,
  summary: "Get a key (masked)",
  security: bearerSecurity,
  middleware: [requireScope("keys:read")] as const,
  request: { params: IdParam },
  responses: { 200: jsonContent(KeySchema, "The key."), ...problems(...AUTH_PROBLEMS, "NOT_FOUND") },
});

const updateKey = createRoute({
  method: "patch",
  path: "/{id}",
  operationId: "updateKey",
  tags,
  summary: "Update a key's name, state, scopes, expiry or limits",
  description:
    "Only a caller holding every Keywarden scope of the key may change it (403). Disabling or down-scoping " +
    "the tenant's last working admin key is refused (409).",
  security: bearerSecurity,
  middleware: [requireScope("keys:write")] as const,
  request: { params: IdParam, body: jsonBody(UpdateKeySchema) },
  responses: {
    200: jsonContent(KeySchema, "The updated key."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "VALIDATION_FAILED", "CONFLICT", "SEALED"),
  },
});

const revokeKey = createRoute({
  method: "post",
  path: "/{id}/revoke",
  operationId: "revokeKey",
  tags,
  summary: "Revoke a key (permanent; rejected on the next verify)",
  description:
    "Only a caller holding every Keywarden scope of the key may revoke it (403). Revoking the tenant's last " +
    "working admin key is refused (409).",
  security: bearerSecurity,
  middleware: [requireScope("keys:write")] as const,
  request: { params: IdParam },
  responses: {
    200: jsonContent(KeySchema, "The revoked key."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "CONFLICT", "SEALED"),
  },
});

const rotateKey = createRoute({
  method: "post",
  path: "/{id}/rotate",
  operationId: "rotateKey",
  tags,
  summary: "Rotate a key now: a new key at once, the old one valid until the overlap ends",
  description:
    "Starts a rotation through the same Workflow as a scheduled one: the new key (with a fresh rotation " +
    "period) is returned here once, and the Workflow retires the old key when the overlap " +
    "(`grace_seconds`, default the key's `rotation.overlap_seconds`) ends; until then verifying the old key " +
    "reports `replaced_by`. Only a caller holding every Keywarden scope of the key may rotate it (403); an " +
    "admin-capable key also needs step-up (401/403, see Create a key). A disabled, revoked, expired or already " +
    "rotated key cannot be rotated (409), nor one that is being rotated or is revoked or disabled while the " +
    "rotation commits (409).",
  security: bearerSecurity,
  middleware: [requireScope("keys:write")] as const,
  request: { params: IdParam, body: jsonBody(RotateKeySchema) },
  responses: {
    201: jsonContent(RotatedKeySchema, "The new key with its plaintext (shown once), and the old key's end."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "CONFLICT", "VALIDATION_FAILED", "SEALED"),
  },
});

const deleteKey = createRoute({
  method: "delete",
  path: "/{id}",
  operationId: "deleteKey",
  tags,
  summary: "Delete a key",
  description:
    "Only a caller holding every Keywarden scope of the key may delete it (403). Deleting the tenant's last " +
    "working admin key is refused (409).",
  security: bearerSecurity,
  middleware: [requireScope("keys:write")] as const,
  request: { params: IdParam },
  responses: {
    204: { description: "Deleted." },
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "CONFLICT", "SEALED"),
  },
});

const keyUsage = createRoute({
  method: "get",
  path: "/{id}/usage",
  operationId: "getKeyUsage",
  tags,
  summary: "Per-day verification counts and the remaining uses",
  security: bearerSecurity,
  middleware: [requireScope("keys:read")] as const,
  request: { params: IdParam, query: z.object({ days: z.coerce.number().int().min(1).max(90).default(30) }) },
  responses: { 200: jsonContent(KeyUsageSchema, "Usage."), ...problems(...AUTH_PROBLEMS, "NOT_FOUND") },
});

export const keyRoutes = createRouter()
  .openapi(createKey, async (c) => {
    const principal = c.get("principal");
    const db = database(c.env.DB);

    const { prefix, policy } = await tenantKeyDefaults(db, principal.tenantId);
    const requested = settingsFromRequest(c.req.valid("json"), principal.scopes, {
      prefix,
      createdBy: principal.keyId,
      rotationDays: policy?.rotationDays ?? null,
    });
    if (isAdminCapable(requested.scopes)) await assertStepUp(c, db);
    const settings = keySettingsUnderPolicy(requested, policy);
    const { primary, backup, rows } = await mintKeyWithBackup(principal.tenantId, settings);
    await commitWithAudit(
      c.env,
      auditActor(c),
      rows.map((row) => db.insert(apiKeys).values(row)),
      rows.map((row) => ({
        action: "key.create",
        targetType: "key",
        targetId: row.id,
        detail: { scopes: row.scopes, environment: row.environment, security_level: row.securityLevel },
      })),
    );
    return c.json(
      {
        ...keyView(primary.row),
        key: primary.key,
        ...(backup ? { backup_key: { id: backup.row.id, key: backup.key } } : {}),
      },
      201,
      NO_STORE,
    );
  })
  .openapi(listKeys, async (c) => {
    const { tenantId } = c.get("principal");
    const { limit, cursor, environment, service_id, state, q } = c.req.valid("query");
    const older = olderThanCursor(cursor, apiKeys.createdAt, apiKeys.id);
    // One clock for the filter and the views: a key is listed under the state it shows.
    const now = Date.now();
    const db = database(c.env.DB);
    const rows = await db
      .select()
      .from(apiKeys)
      .where(
        and(
          eq(apiKeys.tenantId, tenantId),
          environment ? eq(apiKeys.environment, environment) : undefined,
          service_id ? eq(apiKeys.serviceId, service_id) : undefined,
          state ? keyStateWhere(state, now) : undefined,
          q
            ? or(containsText(apiKeys.name, q), startsWithText(apiKeys.start, q), eq(apiKeys.id, q))
            : undefined,
          older,
        ),
      )
      .orderBy(desc(apiKeys.createdAt), desc(apiKeys.id))
      .limit(limit + 1)
      .all();
    const { page, nextCursor } = keysetPage(rows, limit, (row) => row);
    return c.json(
      {
        items: await keyViews(db, tenantId, page, now),
        next_cursor: nextCursor,
      },
      200,
    );
  })
  .openapi(getKey, async (c) => {
    const { tenantId } = c.get("principal");
    const db = database(c.env.DB);
    const row = await findOwnKey(db, tenantId, c.req.valid("param").id);
    const [view] = await keyViews(db, tenantId, [row]);
    return c.json(view, 200);
  })
  .openapi(updateKey, async (c) => {
    const principal = c.get("principal");
    const db = database(c.env.DB);
    const row = await findOwnKey(db, principal.tenantId, c.req.valid("param").id);
    assertMayManageKey(principal, row.scopes);
    if (row.revokedAt !== null) throw new ApiError("CONFLICT", "A revoked key cannot be changed.");
    const body = c.req.valid("json");
    const now = Date.now();
    const limitsChanged = body.ratelimit !== undefined || body.usage_limit !== undefined;
    const changes: Partial<KeyRow> = {
      ...(body.name !== undefined ? { name: body.name } : {}),
      ...(body.enabled !== undefined ? { enabled: body.enabled } : {}),
      ...(body.role !== undefined || body.scopes !== undefined
        ? { scopes: resolveScopes(body.role, body.scopes, principal.scopes) }
        : {}),
      ...(body.expires_at !== undefined
        ? { expiresAt: body.expires_at === null ? null : parseFutureTime(body.expires_at) }
        : {}),
      ...(body.rotation !== undefined ? await rotationChanges(db, row, body.rotation, now) : {}),
      ...(body.ip_allowlist !== undefined ? { ipAllowlist: body.ip_allowlist } : {}),
      ...(body.country_allowlist !== undefined ? { countryAllowlist: body.country_allowlist } : {}),
      ...(body.ratelimit !== undefined ? ratelimitColumns(body.ratelimit) : {}),
      ...(body.usage_limit !== undefined ? usageLimitColumns(body.usage_limit) : {}),
      ...(body.metadata !== undefined ? { metadata: body.metadata } : {}),
      ...(limitsChanged ? { limitsVersion: row.limitsVersion + 1 } : {}),
      updatedAt: now,
    };
    const updated: KeyRow = { ...row, ...changes };
    await commitKeyChange(
      c.env,
      auditActor(c),
      [
        db
          .update(apiKeys)
          .set(changes)
          .where(and(eq(apiKeys.tenantId, principal.tenantId), eq(apiKeys.id, row.id))),
      ],
      [
        {
          action: "key.update",
          targetType: "key",
          targetId: row.id,
          detail: { fields: Object.keys(body).sort() },
        },
      ],
    );
    forgetCachedKey(row.hash);
    return c.json(keyView(updated), 200);
  })
  .openapi(revokeKey, async (c) => {
    const principal = c.get("principal");
    const db = database(c.env.DB);
    const row = await findOwnKey(db, principal.tenantId, c.req.valid("param").id);
    assertMayManageKey(principal, row.scopes);
    if (row.revokedAt !== null) return c.json(keyView(row), 200);
    const now = Date.now();
    const { statements, events } = revocationOf(db, row, now);
    await commitKeyChange(c.env, auditActor(c), statements, events);
    forgetCachedKey(row.hash);
    return c.json(keyView({ ...row, revokedAt: now, updatedAt: now }), 200);
  })
  .openapi(rotateKey, async (c) => {
    const principal = c.get("principal");
    const db = database(c.env.DB);
    const { id } = c.req.valid("param");
    // The key and its latest rotation run in one round trip (the run decides "already being rotated").
    const [rows, runs] = await db.batch([
      ownKeyQuery(db, principal.tenantId, id),
      subjectRunsQuery(db, principal.tenantId, id),
    ]);
    const row = found(rows[0]);
    assertMayManageKey(principal, row.scopes);
    const now = Date.now();
    assertRotatable(row, now);
    if (isAdminCapable(row.scopes)) await assertStepUp(c, db);
    const { successor, previousExpiresAt } = await rotateKeyNow(c.env, auditActor(c), row, {
      overlapSeconds: c.req.valid("json").grace_seconds,
      createdBy: principal.keyId,
      now,
      latestRun: runs[0],
    });
    return c.json(
      {
        ...keyView(successor.row),
        key: successor.key,
        previous: { id: row.id, expires_at: isoTime(previousExpiresAt) },
      },
      201,
      NO_STORE,
    );
  })
  .openapi(deleteKey, async (c) => {
    const principal = c.get("principal");
    const db = database(c.env.DB);
    const row = await findOwnKey(db, principal.tenantId, c.req.valid("param").id);
    assertMayManageKey(principal, row.scopes);
    await commitKeyChange(
      c.env,
      auditActor(c),
      [db.delete(apiKeys).where(and(eq(apiKeys.tenantId, principal.tenantId), eq(apiKeys.id, row.id)))],
      [{ action: "key.delete", targetType: "key", targetId: row.id }],
    );
    forgetCachedKey(row.hash);
    return c.body(null, 204);
  })
  .openapi(keyUsage, async (c) => {
    const { tenantId } = c.get("principal");
    const db = database(c.env.DB);
    const row = await findOwnKey(db, tenantId, c.req.valid("param").id);
    const since = Math.floor(Date.now() / 86_400_000 - c.req.valid("query").days) * 86_400_000;
    const rows = await db
      .select({ start: usageCounts.start, valid: usageCounts.valid, invalid: usageCounts.invalid })
      .from(usageCounts)
      .where(
        and(
          eq(usageCounts.tenantId, tenantId),
          eq(usageCounts.keyId, row.id),
          eq(usageCounts.bucket, "day"),
          gte(usageCounts.start, since),
        ),
      )
      .orderBy(desc(usageCounts.start))
      .all();
    const days = rows.map(({ start, valid, invalid }) => ({
      day: new Date(start).toISOString().slice(0, 10),
      valid,
      invalid,
    }));
    const limits = toKeyRecord(row).limits;
    const remaining = limits?.usage
      ? (await c.env.KEY_LIMITER.get(c.env.KEY_LIMITER.idFromName(row.id)).peek(limits)).remaining
      : null;
    return c.json({ key_id: row.id, remaining, days }, 200);
  });
