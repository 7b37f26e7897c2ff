import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq, gte, lt, sql } from "drizzle-orm";
import { CHAIN_BREAKS, verifyAuditChain } from "../audit/audit-log";
import { requireScope } from "../auth/authenticate";
import { database } from "../db/client";
import { auditLog } from "../db/schema";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  isoTime,
  jsonContent,
  problems,
} from "../openapi/shared";
import { TimeParam } from "./usage";

const AuditEntrySchema = z
  .object({
    seq: z.number().int(),
    at: z.string(),
    actor_type: z.string(),
    actor_id: z.string(),
    action: z.string(),
    target_type: z.string(),
    target_id: z.string(),
    request_id: z.string(),
    detail: z.record(z.string(), z.unknown()),
    chain_hash: z
      .string()
      .describe(
        "HMAC-SHA-256, under a key derived from the server's master key, over this entry and the previous entry's chain_hash.",
      ),
  })
  .openapi("AuditEntry");

const listAudit = createRoute({
  method: "get",
  path: "/",
  operationId: "listAuditEntries",
  tags: ["Audit"],
  summary: "The tenant's audit log, newest first",
  security: bearerSecurity,
  middleware: [requireScope("audit:read")] as const,
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(100).default(50),
      before_seq: z.coerce.number().int().min(1).optional(),
      action: z
        .string()
        .regex(/^[a-z_]{1,40}(\.[a-z_]{1,40})?$/, "an action (key.revoke) or a family (key)")
        .optional()
        .describe("One action (`key.revoke`), or a family: `key` is every `key.*` action."),
      actor_id: z.string().min(1).max(64).optional().describe("Only entries by this key (or `system`)."),
      since: TimeParam.describe("RFC 3339 time or Unix seconds: entries at or after it."),
      until: TimeParam.describe("RFC 3339 time or Unix seconds: entries before it (exclusive)."),
    }),
  },
  responses: {
    200: jsonContent(
      z.object({ items: z.array(AuditEntrySchema), next_before_seq: z.number().nullable() }),
      "Entries.",
    ),
    ...problems(...AUTH_PROBLEMS, "VALIDATION_FAILED"),
  },
});

const verifyAudit = createRoute({
  method: "get",
  path: "/verify",
  operationId: "verifyAuditChain",
  tags: ["Audit"],
  summary: "Re-check the tenant's keyed hash chain and name the first broken row",
  description:
    "Recomputes every entry's HMAC and link, and compares the end of the chain with the head recorded outside the database, so an edited, reordered, rewritten or truncated log is reported at its first bad seq. After retention pruned the oldest rows, the walk starts at the retention horizon, which the chain's newest `audit.retention` row must attest.",
  security: bearerSecurity,
  middleware: [requireScope("audit:read")] as const,
  responses: {
    200: jsonContent(
      z.object({
        ok: z.boolean(),
        rows: z.number().int(),
        broken_at_seq: z
          .number()
          .int()
          .optional()
          .describe("The first bad seq; for a truncated tail, the first missing one."),
        reason: z.enum(CHAIN_BREAKS).optional(),
        horizon: z
          .object({ first_seq: z.number().int(), moved_at: z.string() })
          .optional()
          .describe(
            "Once retention pruned the oldest rows: the walk started at `first_seq`, which must chain from the horizon.",
          ),
      }),
      "The verdict.",
    ),
    ...problems(...AUTH_PROBLEMS, "SEALED"),
  },
});

export const auditRoutes = createRouter()
  .openapi(listAudit, async (c) => {
    const { tenantId } = c.get("principal");
    const { limit, before_seq, action, actor_id, since, until } = c.req.valid("query");
    // The filters narrow a walk of the tenant's log along its primary key, newest first; a family matches by
    // its prefix with substr, so no LIKE wildcard (`_` is one) can widen it.
    const family = action && !action.includes(".") ? `${action}.` : undefined;
    const rows = await database(c.env.DB)
      .select()
      .from(auditLog)
      .where(
        and(
          eq(auditLog.tenantId, tenantId),
          before_seq ? lt(auditLog.seq, before_seq) : undefined,
          family
            ? sql`substr(${auditLog.action}, 1, ${family.length}) = ${family}`
            : action
              ? eq(auditLog.action, action)
              : undefined,
          actor_id ? eq(auditLog.actorId, actor_id) : undefined,
          since !== undefined ? gte(auditLog.at, since) : undefined,
          until !== undefined ? lt(auditLog.at, until) : undefined,
        ),
      )
      .orderBy(desc(auditLog.seq))
      .limit(limit + 1)
      .all();
    // One row past the page says whether another page exists: no cursor to an empty page.
    const page = rows.slice(0, limit);
    return c.json(
      {
        items: page.map((row) => ({
          seq: row.seq,
          at: isoTime(row.at) as string,
          actor_type: row.actorType,
          actor_id: row.actorId,
          action: row.action,
          target_type: row.targetType,
          target_id: row.targetId,
          request_id: row.requestId,
          detail: row.detail,
          chain_hash: row.hash,
        })),
        next_before_seq: rows.length > limit ? (page.at(-1)?.seq ?? null) : null,
      },
      200,
    );
  })
  .openapi(verifyAudit, async (c) => {
    return c.json(await verifyAuditChain(c.env, c.get("principal").tenantId), 200);
  });
