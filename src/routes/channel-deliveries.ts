import { createRoute, z } from "@hono/zod-openapi";
import { and, desc, eq } from "drizzle-orm";
import { requireScope } from "../auth/authenticate";
import { database } from "../db/client";
import { alertChannels, alertDeliveries } from "../db/schema";
import { ApiError } from "../errors";
import { CHANNEL_HEALTH, CHANNEL_KINDS, DELIVERY_STATES } from "../monitoring/alert-kinds";
import { DeliverySchema, deliveryView } from "../monitoring/delivery-view";
import { keysetPage, olderThanCursor } from "../openapi/cursor";
import {
  AUTH_PROBLEMS,
  bearerSecurity,
  createRouter,
  IdParam,
  isoTime,
  jsonContent,
  PageQuery,
  problems,
} from "../openapi/shared";

const ChannelHealthSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    kind: z.enum(CHANNEL_KINDS),
    health: z.enum(CHANNEL_HEALTH),
    consecutive_failures: z.number().int(),
    last_delivery_at: z.string().nullable(),
    last_error: z.string().nullable(),
  })
  .openapi("AlertChannelHealth");

const listDeliveries = createRoute({
  method: "get",
  path: "/monitoring/channels/{id}/deliveries",
  operationId: "listChannelDeliveries",
  tags: ["Monitoring"],
  summary: "A channel's delivery log and health, newest first",
  description:
    "One row per notification (an alert firing or resolving) sent to this channel: attempts, the last " +
    "status and reason, latency. The channel is `failing` after 3 deliveries in a row gave up.",
  security: bearerSecurity,
  middleware: [requireScope("monitoring:read")] as const,
  request: {
    params: IdParam,
    query: PageQuery.extend({ state: z.enum(DELIVERY_STATES).optional() }),
  },
  responses: {
    200: jsonContent(
      z
        .object({
          channel: ChannelHealthSchema,
          items: z.array(DeliverySchema),
          next_cursor: z.string().nullable(),
        })
        .openapi("AlertDeliveryList"),
      "The channel's health and a page of its deliveries.",
    ),
    ...problems(...AUTH_PROBLEMS, "BAD_REQUEST", "NOT_FOUND", "VALIDATION_FAILED"),
  },
});

export const channelDeliveryRoutes = createRouter().openapi(listDeliveries, async (c) => {
  const { tenantId } = c.get("principal");
  const { id } = c.req.valid("param");
  const { state, limit, cursor } = c.req.valid("query");
  const older = olderThanCursor(cursor, alertDeliveries.createdAt, alertDeliveries.id);
  const db = database(c.env.DB);
  const channel = await db
    .select()
    .from(alertChannels)
    .where(and(eq(alertChannels.tenantId, tenantId), eq(alertChannels.id, id)))
    .get();
  // Another tenant's channel is indistinguishable from a missing one.
  if (!channel) throw new ApiError("NOT_FOUND", "No such channel.");
  const rows = await db
    .select()
    .from(alertDeliveries)
    .where(
      and(
        eq(alertDeliveries.tenantId, tenantId),
        eq(alertDeliveries.channelId, id),
        state ? eq(alertDeliveries.state, state) : undefined,
        older,
      ),
    )
    .orderBy(desc(alertDeliveries.createdAt), desc(alertDeliveries.id))
    .limit(limit + 1)
    .all();
  const { page, nextCursor } = keysetPage(rows, limit, (row) => row);
  return c.json(
    {
      channel: {
        id: channel.id,
        name: channel.name,
        kind: channel.kind,
        health: channel.health,
        consecutive_failures: channel.consecutiveFailures,
        last_delivery_at: isoTime(channel.lastDeliveryAt),
        last_error: channel.lastError,
      },
      items: page.map(deliveryView),
      next_cursor: nextCursor,
    },
    200,
  );
});
