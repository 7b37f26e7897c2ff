import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq } from "drizzle-orm";
import { requireScope } from "../auth/authenticate";
import { database } from "../db/client";
import { events } from "../db/schema";
import { EVENT_KINDS, EVENT_SEVERITIES } from "../lifecycle/event-kinds";
import { keysetPage, olderThanCursor } from "../openapi/cursor";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  isoTime,
  jsonContent,
  problems,
} from "../openapi/shared";

const EventSchema = z
  .object({
    id: z.string(),
    kind: z.enum(EVENT_KINDS),
    severity: z.enum(EVENT_SEVERITIES),
    subject: z.object({ type: z.string(), id: z.string() }),
    at: z.string(),
    detail: z.record(z.string(), z.union([z.string(), z.number(), z.null()])),
  })
  .openapi("Event");

const listEvents = createRoute({
  method: "get",
  path: "/",
  operationId: "listEvents",
  tags: ["Events"],
  summary: "What happened: rotations, reminders, live-test changes, newest first",
  description:
    "The stream the alerting engine acts on. Rotation failures, missed pickups and credentials that start " +
    "failing their live test appear here whether or not an alert channel is configured.",
  security: bearerSecurity,
  middleware: [requireScope("monitoring:read")] as const,
  request: {
    query: z.object({
      kind: z.enum(EVENT_KINDS).optional(),
      subject_id: z.string().max(64).optional(),
      limit: z.coerce.number().int().min(1).max(100).default(50),
      cursor: z.string().max(200).optional(),
    }),
  },
  responses: {
    200: jsonContent(
      z.object({ items: z.array(EventSchema), next_cursor: z.string().nullable() }).openapi("EventList"),
      "A page of events.",
    ),
    ...problems(...AUTH_PROBLEMS, "BAD_REQUEST"),
  },
});

export const eventRoutes = createRouter().openapi(listEvents, async (c) => {
  const { tenantId } = c.get("principal");
  const { kind, subject_id, limit, cursor } = c.req.valid("query");
  const older = olderThanCursor(cursor, events.at, events.id);
  const rows = await database(c.env.DB)
    .select()
    .from(events)
    .where(
      and(
        eq(events.tenantId, tenantId),
        kind ? eq(events.kind, kind) : undefined,
        subject_id ? eq(events.subjectId, subject_id) : undefined,
        older,
      ),
    )
    .orderBy(desc(events.at), desc(events.id))
    .limit(limit + 1)
    .all();
  const { page, nextCursor } = keysetPage(rows, limit, (row) => ({ createdAt: row.at, id: row.id }));
  return c.json(
    {
      items: page.map((row) => ({
        id: row.id,
        kind: row.kind,
        severity: row.severity,
        subject: { type: row.subjectType, id: row.subjectId },
        at: isoTime(row.at) as string,
        detail: row.detail,
      })),
      next_cursor: nextCursor,
    },
    200,
  );
});
