import { createRoute, z } from "@hono/zod-openapi";
import { and, asc, desc, eq } from "drizzle-orm";
import { auditActor } from "../audit/actor";
import { commitWithAudit } from "../audit/audit-log";
import { requireScope } from "../auth/authenticate";
import { database } from "../db/client";
import { alertDeliveries, alerts } from "../db/schema";
import { ApiError } from "../errors";
import { ALERT_SEVERITIES, ALERT_STATES, ALERT_SUBJECT_TYPES, RULE_KINDS } from "../monitoring/alert-kinds";
import {
  type AlertRow,
  acknowledgeStatements,
  findAlert,
  resolveByPersonStatements,
} from "../monitoring/alert-lifecycle";
import { consoleLink } from "../monitoring/console-links";
import { DeliverySchema, deliveryView } from "../monitoring/delivery-view";
import { keysetPage, olderThanCursor } from "../openapi/cursor";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  IdParam,
  isoTime,
  jsonContent,
  problems,
} from "../openapi/shared";

const AlertSchema = z
  .object({
    id: z.string(),
    kind: z.enum(RULE_KINDS),
    severity: z.enum(ALERT_SEVERITIES),
    state: z.enum(ALERT_STATES),
    subject: z.object({ type: z.enum(ALERT_SUBJECT_TYPES), id: z.string() }),
    fired_at: z.string(),
    last_seen_at: z.string().describe("The last evaluation that found the condition still true."),
    acknowledged_at: z.string().nullable(),
    acknowledged_by: z.string().nullable().describe("The key or session that acknowledged it."),
    resolved_at: z.string().nullable(),
    rule_id: z.string().describe("The rule's id, or `default:<kind>` for the rules every tenant has."),
    summary: z.string(),
    detail: z.record(z.string(), z.union([z.string(), z.number(), z.null()])),
    console_url: z.string().nullable().describe("The console page of the alert."),
  })
  .openapi("Alert");

const listAlerts = createRoute({
  method: "get",
  path: "/",
  operationId: "listAlerts",
  tags: ["Alerts"],
  summary: "Alerts, newest first",
  description:
    "Every alert the tenant's rules raised, open and resolved (the history). Expiry reminders, rotation and " +
    "re-test alerts come from default rules every tenant has, and are listed even with no channel configured.",
  security: bearerSecurity,
  middleware: [requireScope("monitoring:read")] as const,
  request: {
    query: z.object({
      state: z.enum(ALERT_STATES).optional(),
      severity: z.enum(ALERT_SEVERITIES).optional(),
      kind: z.enum(RULE_KINDS).optional(),
      limit: z.coerce.number().int().min(1).max(100).default(50),
      cursor: z.string().max(200).optional(),
    }),
  },
  responses: {
    200: jsonContent(
      z.object({ items: z.array(AlertSchema), next_cursor: z.string().nullable() }).openapi("AlertList"),
      "A page of alerts.",
    ),
    ...problems(...AUTH_PROBLEMS, "BAD_REQUEST", "VALIDATION_FAILED"),
  },
});

const getAlert = createRoute({
  method: "get",
  path: "/{id}",
  operationId: "getAlert",
  tags: ["Alerts"],
  summary: "One alert with its notifications",
  description:
    "The alert and each notification of it (per channel, fired and resolved) with its delivery state.",
  security: bearerSecurity,
  middleware: [requireScope("monitoring:read")] as const,
  request: { params: IdParam },
  responses: {
    200: jsonContent(
      AlertSchema.extend({ deliveries: z.array(DeliverySchema) }).openapi("AlertWithDeliveries"),
      "The alert.",
    ),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND"),
  },
});

const acknowledgeAlert = createRoute({
  method: "post",
  path: "/{id}/acknowledge",
  operationId: "acknowledgeAlert",
  tags: ["Alerts"],
  summary: "Acknowledge a firing alert",
  description:
    "Someone is on it: the alert stays open (the condition does not fire again while it holds) and resolves " +
    "by itself when the condition clears. Acknowledging an acknowledged alert changes nothing; a resolved one " +
    "is 409.",
  security: bearerSecurity,
  middleware: [requireScope("monitoring:write")] as const,
  request: { params: IdParam },
  responses: {
    200: jsonContent(AlertSchema, "The alert."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "CONFLICT", "SEALED"),
  },
});

const resolveAlert = createRoute({
  method: "post",
  path: "/{id}/resolve",
  operationId: "resolveAlert",
  tags: ["Alerts"],
  summary: "Resolve an open alert by hand",
  description:
    "Closes the alert and notifies its rule's channels. If the condition still holds, the rule fires it again " +
    "after the rule's cool-down. Resolving a resolved alert changes nothing.",
  security: bearerSecurity,
  middleware: [requireScope("monitoring:write")] as const,
  request: { params: IdParam },
  responses: {
    200: jsonContent(AlertSchema, "The alert."),
    ...problems(...AUTH_PROBLEMS, "NOT_FOUND", "SEALED"),
  },
});

function alertView(row: AlertRow, publicOrigin: string) {
  return {
    id: row.id,
    kind: row.kind,
    severity: row.severity,
    state: row.state,
    subject: { type: row.subjectType, id: row.subjectId },
    fired_at: isoTime(row.firedAt) as string,
    last_seen_at: isoTime(row.lastSeenAt) as string,
    acknowledged_at: isoTime(row.acknowledgedAt),
    acknowledged_by: row.acknowledgedBy,
    resolved_at: isoTime(row.resolvedAt),
    rule_id: row.ruleId,
    summary: row.summary,
    detail: row.detail,
    console_url: consoleLink(publicOrigin, "alert", row.id),
  };
}

async function requireAlert(db: ReturnType<typeof database>, tenantId: string, id: string) {
  const row = await findAlert(db, tenantId, id);
  if (!row) throw new ApiError("NOT_FOUND", "No such alert.");
  return row;
}

export const alertRoutes = createRouter()
  .openapi(listAlerts, async (c) => {
    const { tenantId } = c.get("principal");
    const { state, severity, kind, limit, cursor } = c.req.valid("query");
    const older = olderThanCursor(cursor, alerts.firedAt, alerts.id);
    const rows = await database(c.env.DB)
      .select()
      .from(alerts)
      .where(
        and(
          eq(alerts.tenantId, tenantId),
          state ? eq(alerts.state, state) : undefined,
          severity ? eq(alerts.severity, severity) : undefined,
          kind ? eq(alerts.kind, kind) : undefined,
          older,
        ),
      )
      .orderBy(desc(alerts.firedAt), desc(alerts.id))
      .limit(limit + 1)
      .all();
    const { page, nextCursor } = keysetPage(rows, limit, (row) => ({ createdAt: row.firedAt, id: row.id }));
    return c.json(
      {
        items: page.map((row) => alertView(row, c.env.PUBLIC_ORIGIN)),
        next_cursor: nextCursor,
      },
      200,
    );
  })
  .openapi(getAlert, async (c) => {
    const { tenantId } = c.get("principal");
    const db = database(c.env.DB);
    const row = await requireAlert(db, tenantId, c.req.valid("param").id);
    const deliveries = await db
      .select()
      .from(alertDeliveries)
      .where(and(eq(alertDeliveries.tenantId, tenantId), eq(alertDeliveries.alertId, row.id)))
      .orderBy(
        asc(alertDeliveries.createdAt),
        asc(alertDeliveries.channelId),
        asc(alertDeliveries.transition),
      )
      .all();
    return c.json(
      {
        ...alertView(row, c.env.PUBLIC_ORIGIN),
        deliveries: deliveries.map(deliveryView),
      },
      200,
    );
  })
  .openapi(acknowledgeAlert, async (c) => {
    const principal = c.get("principal");
    const db = database(c.env.DB);
    const row = await requireAlert(db, principal.tenantId, c.req.valid("param").id);
    if (row.state === "resolved") throw new ApiError("CONFLICT", "The alert is already resolved.");
    if (row.state === "firing") {
      await commitWithAudit(
        c.env,
        auditActor(c),
        acknowledgeStatements(db, row, principal.keyId, Date.now()),
        [{ action: "alert.acknowledge", targetType: "alert", targetId: row.id, detail: { kind: row.kind } }],
      );
    }
    return c.json(alertView(await requireAlert(db, principal.tenantId, row.id), c.env.PUBLIC_ORIGIN), 200);
  })
  .openapi(resolveAlert, async (c) => {
    const { tenantId } = c.get("principal");
    const db = database(c.env.DB);
    const row = await requireAlert(db, tenantId, c.req.valid("param").id);
    if (row.state !== "resolved") {
      await commitWithAudit(c.env, auditActor(c), await resolveByPersonStatements(db, row, Date.now()), [
        { action: "alert.resolve", targetType: "alert", targetId: row.id, detail: { kind: row.kind } },
      ]);
    }
    return c.json(alertView(await requireAlert(db, tenantId, row.id), c.env.PUBLIC_ORIGIN), 200);
  });
