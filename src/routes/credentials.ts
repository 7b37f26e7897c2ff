import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq, or, sql } from "drizzle-orm";
import type { Context } from "hono";
import { auditActor } from "../audit/actor";
import { commitWithAudit } from "../audit/audit-log";
import { requireScope } from "../auth/authenticate";
import { secondFactorStateOf, secondFactorStateQueries } from "../auth/second-factor";
import { assertStepUp } from "../auth/step-up";
import {
  CreateCredentialSchema,
  CredentialDetailSchema,
  CredentialEnvironmentSchema,
  CredentialListSchema,
  CredentialRotationConfigSchema,
  CredentialRotationConfiguredSchema,
  CredentialRotationSchema,
  IfMatchHeader,
  ProbeResultSchema,
  RevealCredentialSchema,
  RevealedCredentialSchema,
  RollbackCredentialSchema,
  RotateCredentialSchema,
  UpdateCredentialSchema,
} from "../credentials/credential-schemas";
import {
  assertValidFields,
  type CredentialRow,
  findVersionRow,
  KEPT_VERSIONS,
  openVersion,
  type VersionRow,
  visibleChange,
} from "../credentials/credential-versions";
import {
  credentialView,
  credentialViews,
  etagOf,
  probeView,
  RESTORE_WINDOW_MS,
} from "../credentials/credential-view";
import { credentialsWithCurrentVersion } from "../credentials/current-versions";
import { liveTestCredential } from "../credentials/live-test";
import { assertIfMatch, concurrentChangeFailed } from "../credentials/preconditions";
import { requireService } from "../credentials/require-service";
import {
  configureRotation,
  credentialRotationOf,
  credentialRotationView,
  disableRotation,
  rotationConfigQuery,
} from "../credentials/rotation-config";
import { createCredentialStatements, newCurrentVersionStatements } from "../credentials/store-credential";
import { type Database, database } from "../db/client";
import { credentials, credentialVersions } from "../db/schema";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { startCredentialRotation } from "../lifecycle/credential-rotation";
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
import { containsText, SearchTextSchema } from "../openapi/text-search";
import { levelAtLeastPolicy, tenantSecurityPolicyQuery } from "../policy/security-policy";
import { activeDekQuery } from "../vault/data-keys";
import { unseal } from "../vault/keyring";

const tags = ["Credentials"];

export { KEPT_VERSIONS };

function ownCredential(row: CredentialRow | undefined, allowDeleted = false): CredentialRow {
  if (!row || (row.status === "deleted" && !allowDeleted))
    throw new ApiError("NOT_FOUND", "No such credential.");
  return row;
}

async function findOwnCredential(db: Database, tenantId: string, id: string, allowDeleted = false) {
  const row = await db
    .select()
    .from(credentials)
    .where(and(eq(credentials.tenantId, tenantId), eq(credentials.id, id)))
    .get();
  return ownCredential(row, allowDeleted);
}

function versionFound(found: VersionRow | null | undefined): VersionRow {
  if (!found) throw new ApiError("NOT_FOUND", "No such version of this credential.");
  return found;
}

async function findVersion(db: Database, row: CredentialRow, version = row.currentVersion) {
  return versionFound(await findVersionRow(db, row, version));
}

/**
 * A credential and one of its versions (`version`, or the one current when the batch runs), as two queries for
 * one D1 batch: see `ownCredentialVersion`. Single-table queries: drizzle maps a batched join's columns by name.
 */
function credentialVersionQueries(db: Database, tenantId: string, id: string, version?: number) {
  const current = sql`(SELECT ${credentials.currentVersion} FROM ${credentials}
    WHERE ${credentials.tenantId} = ${tenantId} AND ${credentials.id} = ${id})`;
  return [
    db
      .select()
      .from(credentials)
      .where(and(eq(credentials.tenantId, tenantId), eq(credentials.id, id))),
    db
      .select()
      .from(credentialVersions)
      .where(
        and(
          eq(credentialVersions.tenantId, tenantId),
          eq(credentialVersions.credentialId, id),
          eq(credentialVersions.version, version ?? current),
        ),
      ),
  ] as const;
}

/** What `credentialVersionQueries` found, with the same answers as `findOwnCredential` then `findVersion`. */
function ownCredentialVersion(found: CredentialRow[], versions: VersionRow[]) {
  return { row: ownCredential(found[0]), version: versionFound(versions[0]) };
}

/** The detail view: the versions, the rotation config and the latest run are read in one batch. */
async function detailOf(db: Database, row: CredentialRow, warnings?: string[]) {
  const [versions, configs, runs] = await db.batch([
    db
      .select()
      .from(credentialVersions)
      .where(and(eq(credentialVersions.tenantId, row.tenantId), eq(credentialVersions.credentialId, row.id)))
      .orderBy(desc(credentialVersions.version)),
    rotationConfigQuery(db, row),
    subjectRunsQuery(db, row.tenantId, row.id),
  ]);
  return detailView(row, versions, credentialRotationView(configs[0], runs[0]), warnings);
}

/** The detail view of a credential from its versions (newest first) and its `rotation` object. */
function detailView(
  row: CredentialRow,
  versions: readonly Pick<VersionRow, "version" | "stage" | "displayFields" | "createdBy" | "createdAt">[],
  rotation: ReturnType<typeof credentialRotationView>,
  warnings?: string[],
) {
  const current = versions.find((v) => v.version === row.currentVersion);
  if (!current) throw new ApiError("NOT_FOUND", "No such credential.");
  return {
    ...credentialView(row, current, rotation),
    versions: versions.map((v) => ({
      version: v.version,
      stage: v.stage,
      created_at: isoTime(v.createdAt) as string,
      created_by: v.createdBy,
    })),
    ...(warnings?.length ? { warnings } : {}),
  };
}

/**
 * An admin's change (PATCH, rollback). New values are sealed as the next version and made current in the
 * same batch, the old current kept as previous (credential-versions.ts `makeCurrentStatements`).
 */
async function changeCredential(
  c: Context<AppEnv>,
  db: Database,
  row: CredentialRow,
  fields: Record<string, string> | undefined,
  changes: { name?: string } = {},
) {
  const now = Date.now();
  if (!fields) {
    const { next, statement } = visibleChange(db, row, changes, now);
    return { next, statements: [statement] };
  }
  const by = { createdBy: c.get("principal").keyId, now };
  return newCurrentVersionStatements(await unseal(c.env, db), db, row, fields, by, changes);
}

function assertFresh(c: Context<AppEnv>, row: CredentialRow): void {
  assertIfMatch(c.req.header("if-match"), etagOf(row));
}

const route = <T extends Parameters<typeof createRoute>[0]>(config: T) =>
  createRoute({ tags, security: bearerSecurity, ...config });

const createCredential = route({
  method: "post",
  path: "/",
  operationId: "createCredential",
  summary: "Store a credential set: validated, then encrypted field by field",
  middleware: [requireScope("credentials:write")] as const,
  request: { body: jsonBody(CreateCredentialSchema) },
  responses: {
    201: jsonContent(CredentialDetailSchema, "Stored; values masked."),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED", "SEALED"),
  },
});
const listCredentials = route({
  method: "get",
  path: "/",
  operationId: "listCredentials",
  summary: "List credentials (masked), newest first",
  description:
    "The filters combine (all must hold) and page with the cursor: a page holds only matching credentials, " +
    "and `next_cursor` continues the same filtered list (send the same filters with it).",
  middleware: [requireScope("credentials:read")] as const,
  request: {
    query: PageQuery.extend({
      service: z.string().max(64).optional().describe("Only credentials of this catalogue service."),
      status: z
        .enum(["active", "deleted"])
        .default("active")
        .describe("Active credentials (the default) or soft-deleted ones."),
      environment: CredentialEnvironmentSchema.optional().describe("Only credentials of this environment."),
      q: SearchTextSchema.describe(
        "Search: credentials whose name contains the text (ASCII case-insensitive) or whose id is exactly it. " +
          "`%`, `_` and `\\` are ordinary characters. Trimmed; empty means no search.",
      ),
    }),
  },
  responses: {
    200: jsonContent(CredentialListSchema, "A page."),
    ...problems(...AUTH_PROBLEMS, "BAD_REQUEST", "VALIDATION_FAILED"),
  },
});
const getCredential = route({
  method: "get",
  path: "/{id}",
  operationId: "getCredential",
  summary: "Get a credential (masked) with its versions and ETag",
  middleware: [requireScope("credentials:read")] as const,
  request: { params: IdParam },
  responses: {
    200: jsonContent(CredentialDetailSchema, "The credential."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND"),
  },
});
const updateCredential = route({
  method: "patch",
  path: "/{id}",
  operationId: "updateCredential",
  summary: "Update: new field values make a new version. Requires If-Match.",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam, headers: IfMatchHeader, body: jsonBody(UpdateCredentialSchema) },
  responses: {
    200: jsonContent(CredentialDetailSchema, "The new state."),
    ...problems(
      ...AUTH_PROBLEMS,
      "NOT_FOUND",
      "VALIDATION_FAILED",
      "PRECONDITION_FAILED",
      "PRECONDITION_REQUIRED",
      "SEALED",
    ),
  },
});
const rollbackCredential = route({
  method: "post",
  path: "/{id}/rollback",
  operationId: "rollbackCredential",
  summary:
    "Make an older version current again (as a new version; the old current becomes previous). Requires If-Match.",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam, headers: IfMatchHeader, body: jsonBody(RollbackCredentialSchema) },
  responses: {
    200: jsonContent(CredentialDetailSchema, "The new state."),
    ...problems(
      ...AUTH_PROBLEMS,
      "NOT_FOUND",
      "CONFLICT",
      "PRECONDITION_FAILED",
      "PRECONDITION_REQUIRED",
      "INTEGRITY_ERROR",
      "SEALED",
    ),
  },
});
const revealCredential = route({
  method: "post",
  path: "/{id}/reveal",
  operationId: "revealCredential",
  summary: "Reveal plaintext values (credentials:reveal; audited; no-store)",
  middleware: [requireScope("credentials:reveal")] as const,
  request: { params: IdParam, body: jsonBody(RevealCredentialSchema) },
  responses: {
    200: jsonContent(RevealedCredentialSchema, "Plaintext values."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "INTEGRITY_ERROR", "SEALED"),
  },
});
const testCredential = route({
  method: "post",
  path: "/{id}/test",
  operationId: "testCredential",
  summary: "Run the provider's live check and store the result",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam },
  responses: {
    200: jsonContent(ProbeResultSchema, "The probe's verdict."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "INTEGRITY_ERROR", "SEALED"),
  },
});
const deleteCredential = route({
  method: "delete",
  path: "/{id}",
  operationId: "deleteCredential",
  summary: "Soft-delete (restorable for 30 days). Requires If-Match.",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam, headers: IfMatchHeader },
  responses: {
    204: { description: "Deleted." },
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "PRECONDITION_FAILED", "PRECONDITION_REQUIRED", "SEALED"),
  },
});
const restoreCredential = route({
  method: "post",
  path: "/{id}/restore",
  operationId: "restoreCredential",
  summary: "Restore a soft-deleted credential within 30 days",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam },
  responses: {
    200: jsonContent(CredentialDetailSchema, "Restored."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "CONFLICT", "PRECONDITION_FAILED", "SEALED"),
  },
});

const configureCredentialRotation = route({
  method: "put",
  path: "/{id}/rotation",
  operationId: "setCredentialRotation",
  summary: "Set how the credential rotates (assisted, provider or external) and its schedule",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam, body: jsonBody(CredentialRotationConfigSchema) },
  responses: {
    200: jsonContent(
      CredentialRotationConfiguredSchema,
      "The rotation; an external endpoint's signing secret the first time (no-store).",
    ),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "VALIDATION_FAILED", "CONFLICT", "SEALED"),
  },
});
const disableCredentialRotation = route({
  method: "delete",
  path: "/{id}/rotation",
  operationId: "deleteCredentialRotation",
  summary: "Stop rotating the credential on a schedule",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam },
  responses: {
    204: { description: "No rotation configured any more." },
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "CONFLICT", "SEALED"),
  },
});
const rotateCredential = route({
  method: "post",
  path: "/{id}/rotate",
  operationId: "rotateCredential",
  summary: "Rotate now: mint through the automatic method, or test and promote an entered new value",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam, body: jsonBody(RotateCredentialSchema) },
  responses: {
    202: jsonContent(CredentialRotationSchema, "The rotation started; follow it on GET .../{id}."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "VALIDATION_FAILED", "CONFLICT", "SEALED"),
  },
});

export const credentialRoutes = createRouter()
  .openapi(createCredential, async (c) => {
    const principal = c.get("principal");
    const body = c.req.valid("json");
    const service = requireService(body.service);
    const db = database(c.env.DB);
    const keys = await unseal(c.env, db);
    // The tenant's policy and its sealing DEK in one round trip.
    const [policies, activeDeks] = await db.batch([
      tenantSecurityPolicyQuery(db, principal.tenantId),
      activeDekQuery(db, principal.tenantId),
    ]);
    const { row, version, statements, warnings, event } = await createCredentialStatements(keys, db, {
      tenantId: principal.tenantId,
      service,
      environment: body.environment,
      // The level the tenant's security policy chose is a floor: at enhanced or above, a key of the wrong
      // mode for the environment is refused even when the body asks for basic.
      securityLevel: levelAtLeastPolicy(body.security_level, policies[0] ?? null),
      ...(body.name === undefined ? {} : { name: body.name }),
      fields: body.fields,
      createdBy: principal.keyId,
      now: Date.now(),
      activeDek: activeDeks,
    });
    await commitWithAudit(c.env, auditActor(c), statements, [event]);
    // The answer is what the batch wrote, not read back: a new credential has its one version, current,
    // no rotation config and no run.
    const detail = detailView(row, [version], credentialRotationView(undefined, undefined), warnings);
    return c.json(detail, 201, { etag: etagOf(row) });
  })
  .openapi(listCredentials, async (c) => {
    const { tenantId } = c.get("principal");
    const { limit, cursor, service, status, environment, q } = c.req.valid("query");
    const older = olderThanCursor(cursor, credentials.createdAt, credentials.id);
    const db = database(c.env.DB);
    const rows = await credentialsWithCurrentVersion(db)
      .where(
        and(
          eq(credentials.tenantId, tenantId),
          eq(credentials.status, status),
          service ? eq(credentials.serviceId, service) : undefined,
          environment ? eq(credentials.environment, environment) : undefined,
          q ? or(containsText(credentials.name, q), eq(credentials.id, q)) : undefined,
          older,
        ),
      )
      .orderBy(desc(credentials.createdAt), desc(credentials.id))
      .limit(limit + 1)
      .all();
    const { page, nextCursor } = keysetPage(rows, limit, (row) => row.credential);
    return c.json(
      {
        items: await credentialViews(db, tenantId, page),
        next_cursor: nextCursor,
      },
      200,
    );
  })
  .openapi(getCredential, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    return c.json(await detailOf(db, row), 200, { etag: etagOf(row) });
  })
  .openapi(updateCredential, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    assertFresh(c, row);
    const body = c.req.valid("json");
    const name = body.name ?? row.name;
    const warnings = body.fields ? assertValidFields(requireService(row.serviceId), row, body.fields) : [];
    const { next, statements } = await changeCredential(c, db, row, body.fields, { name });
    await commitWithAudit(c.env, auditActor(c), statements, [
      {
        action: "credential.update",
        targetType: "credential",
        targetId: row.id,
        detail: { version: next.currentVersion, fields: Object.keys(body.fields ?? {}).sort() },
      },
    ]).catch(concurrentChangeFailed);
    return c.json(await detailOf(db, next, warnings), 200, { etag: etagOf(next) });
  })
  .openapi(rollbackCredential, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    assertFresh(c, row);
    const target = await findVersion(db, row, c.req.valid("json").version);
    // A pending version has not passed its live test: only its rotation may promote it.
    if (target.stage === "pending")
      throw new ApiError("CONFLICT", "That version is a rotation's pending value.");
    const fields = await openVersion(await unseal(c.env, db), db, target);
    const { next, statements } = await changeCredential(c, db, row, fields);
    await commitWithAudit(c.env, auditActor(c), statements, [
      {
        action: "credential.rollback",
        targetType: "credential",
        targetId: row.id,
        detail: { from_version: target.version, version: next.currentVersion },
      },
    ]).catch(concurrentChangeFailed);
    return c.json(await detailOf(db, next), 200, { etag: etagOf(next) });
  })
  .openapi(revealCredential, async (c) => {
    const db = database(c.env.DB);
    const principal = c.get("principal");
    const { totp, version: wanted } = c.req.valid("json");
    // The step-up state and the credential with its version in one round trip; step-up is judged first, as before.
    const [totpRows, policyRows, found, versions] = await db.batch([
      ...secondFactorStateQueries(db, principal),
      ...credentialVersionQueries(db, principal.tenantId, c.req.valid("param").id, wanted),
    ]);
    await assertStepUp(c, db, totp, secondFactorStateOf(totpRows, policyRows));
    const { row, version } = ownCredentialVersion(found, versions);
    const fields = await openVersion(await unseal(c.env, db), db, version);
    // Audited before anything is returned: if the audit write fails, nothing is revealed (Vault's rule).
    await commitWithAudit(
      c.env,
      auditActor(c),
      [],
      [
        {
          action: "credential.reveal",
          targetType: "credential",
          targetId: row.id,
          detail: { version: version.version },
        },
      ],
    );
    return c.json({ id: row.id, service: row.serviceId, version: version.version, fields }, 200, NO_STORE);
  })
  .openapi(testCredential, async (c) => {
    const db = database(c.env.DB);
    const { row, version } = ownCredentialVersion(
      ...(await db.batch(credentialVersionQueries(db, c.get("principal").tenantId, c.req.valid("param").id))),
    );
    const result = await liveTestCredential(c.env, db, auditActor(c), row, version);
    return c.json(probeView(result), 200);
  })
  .openapi(deleteCredential, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    assertFresh(c, row);
    const now = Date.now();
    const { statement } = visibleChange(db, row, { status: "deleted", deletedAt: now }, now);
    await commitWithAudit(
      c.env,
      auditActor(c),
      [statement],
      [{ action: "credential.delete", targetType: "credential", targetId: row.id }],
    ).catch(concurrentChangeFailed);
    return c.body(null, 204);
  })
  .openapi(restoreCredential, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id, true);
    if (row.status !== "deleted") throw new ApiError("CONFLICT", "The credential is not deleted.");
    if (row.deletedAt !== null && Date.now() - row.deletedAt > RESTORE_WINDOW_MS) {
      throw new ApiError("NOT_FOUND", "No such credential.");
    }
    const { next: restored, statement } = visibleChange(
      db,
      row,
      { status: "active", deletedAt: null },
      Date.now(),
    );
    await commitWithAudit(
      c.env,
      auditActor(c),
      [statement],
      [{ action: "credential.restore", targetType: "credential", targetId: row.id }],
    ).catch(concurrentChangeFailed);
    return c.json(await detailOf(db, restored), 200, { etag: etagOf(restored) });
  })
  .openapi(configureCredentialRotation, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    const { signingSecret } = await configureRotation(
      c.env,
      auditActor(c),
      row,
      c.req.valid("json"),
      Date.now(),
    );
    const rotation = await credentialRotationOf(db, row);
    return signingSecret
      ? c.json({ ...rotation, signing_secret: signingSecret }, 200, NO_STORE)
      : c.json(rotation, 200);
  })
  .openapi(disableCredentialRotation, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    await disableRotation(c.env, auditActor(c), row);
    return c.body(null, 204);
  })
  .openapi(rotateCredential, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    const { fields } = c.req.valid("json");
    await startCredentialRotation(c.env, row, auditActor(c), {
      ...(fields ? { fields } : {}),
      now: Date.now(),
    });
    return c.json(await credentialRotationOf(db, row), 202);
  });
