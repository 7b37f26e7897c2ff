import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq, lt, lte, or } from "drizzle-orm";
import type { Context } from "hono";
import { auditActor } from "../audit/actor";
import { commitWithAudit } from "../audit/audit-log";
import { requireScope } from "../auth/authenticate";
import { assertStepUp } from "../auth/step-up";
import { runProbe } from "../catalog/run-probe";
import type { ServiceDefinition } from "../catalog/types";
import { validateCredential } from "../catalog/validate";
import {
  CreateCredentialSchema,
  CredentialDetailSchema,
  CredentialListSchema,
  IfMatchHeader,
  ProbeResultSchema,
  RevealCredentialSchema,
  RevealedCredentialSchema,
  RollbackCredentialSchema,
  UpdateCredentialSchema,
} from "../credentials/credential-schemas";
import { credentialView, etagOf, probeView, RESTORE_WINDOW_MS } from "../credentials/credential-view";
import { credentialsWithCurrentVersion } from "../credentials/current-versions";
import { assertIfMatch, concurrentChangeFailed } from "../credentials/preconditions";
import { providerFetch } from "../credentials/provider-fetch";
import { requireService } from "../credentials/require-service";
import { credentialRecordId, displayValues, openValues, sealValues } from "../credentials/sealed-fields";
import { newId } from "../crypto/random";
import { type Database, database } from "../db/client";
import { credentials, credentialVersions } from "../db/schema";
import type { AppEnv } from "../env";
import { ApiError } from "../errors";
import { decodeCursor, encodeCursor } from "../openapi/cursor";
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
import { levelAtLeastPolicy, tenantSecurityPolicy } from "../policy/security-policy";
import { unseal } from "../vault/keyring";

type CredentialRow = typeof credentials.$inferSelect;
const tags = ["Credentials"];
/** Versions kept per credential; older ones are deleted in the batch that creates a new one. */
export const KEPT_VERSIONS = 10;

async function findOwnCredential(db: Database, tenantId: string, id: string, allowDeleted = false) {
  const row = await db
    .select()
    .from(credentials)
    .where(and(eq(credentials.tenantId, tenantId), eq(credentials.id, id)))
    .get();
  if (!row || (row.status === "deleted" && !allowDeleted))
    throw new ApiError("NOT_FOUND", "No such credential.");
  return row;
}

async function findVersion(db: Database, row: CredentialRow, version = row.currentVersion) {
  const found = await db
    .select()
    .from(credentialVersions)
    .where(
      and(
        eq(credentialVersions.tenantId, row.tenantId),
        eq(credentialVersions.credentialId, row.id),
        eq(credentialVersions.version, version),
      ),
    )
    .get();
  if (!found) throw new ApiError("NOT_FOUND", "No such version of this credential.");
  return found;
}

async function detailOf(db: Database, row: CredentialRow, warnings?: string[]) {
  const versions = await db
    .select()
    .from(credentialVersions)
    .where(and(eq(credentialVersions.tenantId, row.tenantId), eq(credentialVersions.credentialId, row.id)))
    .orderBy(desc(credentialVersions.version))
    .all();
  const current = versions.find((v) => v.version === row.currentVersion);
  if (!current) throw new ApiError("NOT_FOUND", "No such credential.");
  return {
    ...credentialView(row, current),
    versions: versions.map((v) => ({
      version: v.version,
      created_at: isoTime(v.createdAt) as string,
      created_by: v.createdBy,
    })),
    ...(warnings?.length ? { warnings } : {}),
  };
}

/** Format, strength and environment checks from the catalogue; messages name fields, never values. */
function assertValid(
  service: ServiceDefinition,
  row: Pick<CredentialRow, "environment" | "securityLevel">,
  fields: Record<string, string>,
) {
  const result = validateCredential(service, fields, {
    environment: row.environment,
    securityLevel: row.securityLevel,
  });
  if (!result.ok) {
    throw new ApiError("VALIDATION_FAILED", "The credential did not pass validation.", {
      errors: [
        ...result.errors.map((message) => ({ path: "fields", message })),
        ...result.fields.flatMap((f) => f.errors.map((message) => ({ path: `fields.${f.field}`, message }))),
      ],
    });
  }
  return result.warnings;
}

/** Seals `fields` as `version` and returns the batch statements that store it and prune old versions. */
async function newVersionStatements(
  c: Context<AppEnv>,
  db: Database,
  row: CredentialRow,
  version: number,
  fields: Record<string, string>,
) {
  const service = requireService(row.serviceId);
  const keys = await unseal(c.env, db);
  const { sealed, countEncryptions } = await sealValues(
    keys,
    db,
    { tenantId: row.tenantId, recordId: credentialRecordId(row.id, version) },
    fields,
  );
  const display = displayValues(service.fields, fields);
  return [
    // The (credential, version) primary key makes a concurrent writer of the same version fail as a whole.
    db.insert(credentialVersions).values({
      credentialId: row.id,
      tenantId: row.tenantId,
      version,
      sealedFields: sealed,
      displayFields: display,
      createdBy: c.get("principal").keyId,
      createdAt: Date.now(),
    }),
    countEncryptions,
    db
      .delete(credentialVersions)
      .where(
        and(
          eq(credentialVersions.tenantId, row.tenantId),
          eq(credentialVersions.credentialId, row.id),
          lte(credentialVersions.version, version - KEPT_VERSIONS),
        ),
      ),
  ] as const;
}

type VisibleChange = Partial<Pick<CredentialRow, "name" | "currentVersion" | "status" | "deletedAt">>;

/**
 * A change a client can see: the next row, and the statement that writes it with `revision` set to the
 * revision read plus one. Migration 0006's trigger aborts that statement's batch unless the stored
 * revision is still the one read, so of two writers that read the same revision (and passed the same
 * If-Match) exactly one commits. Writes a client does not see (live test results, the cron purge) leave
 * `revision` out of their SET, and the trigger does not fire for them.
 */
function visibleChange(db: Database, row: CredentialRow, changes: VisibleChange) {
  const next: CredentialRow = { ...row, ...changes, revision: row.revision + 1, updatedAt: Date.now() };
  const statement = db
    .update(credentials)
    .set({ ...changes, revision: next.revision, updatedAt: next.updatedAt })
    .where(and(eq(credentials.tenantId, row.tenantId), eq(credentials.id, row.id)));
  return { next, statement };
}

function assertFresh(c: Context<AppEnv>, row: CredentialRow): void {
  assertIfMatch(c.req.header("if-match"), etagOf(row));
}

const route = <T extends Parameters<typeof createRoute>[0]>(config: T) =>
  createRoute({ tags, security: bearerSecurity, ...config });

const createCredential = route({
  method: "post",
  path: "/",
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
  summary: "List credentials (masked), newest first",
  middleware: [requireScope("credentials:read")] as const,
  request: {
    query: PageQuery.extend({
      service: z.string().max(64).optional(),
      status: z.enum(["active", "deleted"]).default("active"),
    }),
  },
  responses: {
    200: jsonContent(CredentialListSchema, "A page."),
    ...problems(...AUTH_PROBLEMS, "BAD_REQUEST"),
  },
});
const getCredential = route({
  method: "get",
  path: "/{id}",
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
  summary: "Make an older version current again (as a new version). Requires If-Match.",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam, headers: IfMatchHeader, body: jsonBody(RollbackCredentialSchema) },
  responses: {
    200: jsonContent(CredentialDetailSchema, "The new state."),
    ...problems(
      ...AUTH_PROBLEMS,
      "NOT_FOUND",
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
  summary: "Restore a soft-deleted credential within 30 days",
  middleware: [requireScope("credentials:write")] as const,
  request: { params: IdParam },
  responses: {
    200: jsonContent(CredentialDetailSchema, "Restored."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "CONFLICT", "PRECONDITION_FAILED", "SEALED"),
  },
});

export const credentialRoutes = createRouter()
  .openapi(createCredential, async (c) => {
    const principal = c.get("principal");
    const body = c.req.valid("json");
    const service = requireService(body.service);
    const db = database(c.env.DB);
    // The level the tenant's security policy chose is a floor: at enhanced or above, a key of the wrong
    // mode for the environment is refused even when the body asks for basic.
    const securityLevel = levelAtLeastPolicy(
      body.security_level,
      await tenantSecurityPolicy(db, principal.tenantId),
    );
    const now = Date.now();
    const row: CredentialRow = {
      id: newId("cred"),
      tenantId: principal.tenantId,
      serviceId: service.id,
      environment: body.environment,
      securityLevel,
      name: body.name ?? `${service.name} (${body.environment})`,
      revision: 1,
      currentVersion: 1,
      status: "active",
      deletedAt: null,
      lastTestStatus: null,
      lastTestReason: null,
      lastTestLatencyMs: null,
      lastTestedAt: null,
      providerExpiresAt: null,
      providerAccount: null,
      createdBy: principal.keyId,
      createdAt: now,
      updatedAt: now,
    };
    const warnings = assertValid(service, row, body.fields);
    const [insertVersion, countEncryptions] = await newVersionStatements(c, db, row, 1, body.fields);
    await commitWithAudit(
      c.env,
      auditActor(c),
      [db.insert(credentials).values(row), insertVersion, countEncryptions],
      [
        {
          action: "credential.create",
          targetType: "credential",
          targetId: row.id,
          detail: {
            service: service.id,
            environment: row.environment,
            fields: Object.keys(body.fields).sort(),
          },
        },
      ],
    );
    return c.json(await detailOf(db, row, warnings), 201, { etag: etagOf(row) });
  })
  .openapi(listCredentials, async (c) => {
    const { tenantId } = c.get("principal");
    const { limit, cursor, service, status } = c.req.valid("query");
    const after = cursor ? decodeCursor(cursor) : null;
    const db = database(c.env.DB);
    const rows = await credentialsWithCurrentVersion(db)
      .where(
        and(
          eq(credentials.tenantId, tenantId),
          eq(credentials.status, status),
          service ? eq(credentials.serviceId, service) : undefined,
          after
            ? or(
                lt(credentials.createdAt, after.createdAt),
                and(eq(credentials.createdAt, after.createdAt), lt(credentials.id, after.id)),
              )
            : undefined,
        ),
      )
      .orderBy(desc(credentials.createdAt), desc(credentials.id))
      .limit(limit + 1)
      .all();
    const page = rows.slice(0, limit);
    const last = page.at(-1)?.credential;
    return c.json(
      {
        items: page.map((r) => credentialView(r.credential, r.version)),
        next_cursor:
          rows.length > limit && last ? encodeCursor({ createdAt: last.createdAt, id: last.id }) : null,
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
    const { next, statement } = visibleChange(db, row, {
      name: body.name ?? row.name,
      currentVersion: body.fields ? row.currentVersion + 1 : row.currentVersion,
    });
    const warnings = body.fields ? assertValid(requireService(row.serviceId), row, body.fields) : [];
    const versionStatements = body.fields
      ? await newVersionStatements(c, db, row, next.currentVersion, body.fields)
      : [];
    await commitWithAudit(
      c.env,
      auditActor(c),
      [statement, ...versionStatements],
      [
        {
          action: "credential.update",
          targetType: "credential",
          targetId: row.id,
          detail: { version: next.currentVersion, fields: Object.keys(body.fields ?? {}).sort() },
        },
      ],
    ).catch(concurrentChangeFailed);
    return c.json(await detailOf(db, next, warnings), 200, { etag: etagOf(next) });
  })
  .openapi(rollbackCredential, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    assertFresh(c, row);
    const target = await findVersion(db, row, c.req.valid("json").version);
    const keys = await unseal(c.env, db);
    const fields = await openValues(
      keys,
      db,
      { tenantId: row.tenantId, recordId: credentialRecordId(row.id, target.version) },
      target.sealedFields,
    );
    const { next, statement } = visibleChange(db, row, { currentVersion: row.currentVersion + 1 });
    await commitWithAudit(
      c.env,
      auditActor(c),
      [statement, ...(await newVersionStatements(c, db, row, next.currentVersion, fields))],
      [
        {
          action: "credential.rollback",
          targetType: "credential",
          targetId: row.id,
          detail: { from_version: target.version, version: next.currentVersion },
        },
      ],
    ).catch(concurrentChangeFailed);
    return c.json(await detailOf(db, next), 200, { etag: etagOf(next) });
  })
  .openapi(revealCredential, async (c) => {
    const db = database(c.env.DB);
    await assertStepUp(c, db, c.req.valid("json").totp);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    const version = await findVersion(db, row, c.req.valid("json").version);
    const keys = await unseal(c.env, db);
    const fields = await openValues(
      keys,
      db,
      { tenantId: row.tenantId, recordId: credentialRecordId(row.id, version.version) },
      version.sealedFields,
    );
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
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    const version = await findVersion(db, row);
    const keys = await unseal(c.env, db);
    const fields = await openValues(
      keys,
      db,
      { tenantId: row.tenantId, recordId: credentialRecordId(row.id, version.version) },
      version.sealedFields,
    );
    const result = await runProbe(requireService(row.serviceId), fields, {
      fetch: providerFetch(c.env),
      environment: row.environment,
    });
    const now = Date.now();
    await commitWithAudit(
      c.env,
      auditActor(c),
      [
        db
          .update(credentials)
          .set({
            lastTestStatus: result.status,
            lastTestReason: result.reason,
            lastTestLatencyMs: result.latency_ms,
            lastTestedAt: now,
            ...(result.expires_at !== undefined ? { providerExpiresAt: result.expires_at } : {}),
            ...(result.account !== undefined ? { providerAccount: result.account } : {}),
          })
          .where(and(eq(credentials.tenantId, row.tenantId), eq(credentials.id, row.id))),
      ],
      [
        {
          action: "credential.test",
          targetType: "credential",
          targetId: row.id,
          detail: { status: result.status, reason: result.reason },
        },
      ],
    );
    return c.json(probeView(result), 200);
  })
  .openapi(deleteCredential, async (c) => {
    const db = database(c.env.DB);
    const row = await findOwnCredential(db, c.get("principal").tenantId, c.req.valid("param").id);
    assertFresh(c, row);
    const { statement } = visibleChange(db, row, { status: "deleted", deletedAt: Date.now() });
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
    const { next: restored, statement } = visibleChange(db, row, { status: "active", deletedAt: null });
    await commitWithAudit(
      c.env,
      auditActor(c),
      [statement],
      [{ action: "credential.restore", targetType: "credential", targetId: row.id }],
    ).catch(concurrentChangeFailed);
    return c.json(await detailOf(db, restored), 200, { etag: etagOf(restored) });
  });
