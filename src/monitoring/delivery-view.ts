import { z } from "@hono/zod-openapi";
import type { alertDeliveries } from "../db/schema";
import { isoTime } from "../openapi/shared";
import { DELIVERY_STATES, DELIVERY_TRANSITIONS } from "./alert-kinds";

/** One notification as the API shows it: in an alert's detail and in a channel's delivery log alike. */
export const DeliverySchema = z
  .object({
    id: z.string().describe("Also the `webhook-id` a webhook receiver de-duplicates on."),
    alert_id: z.string(),
    channel_id: z.string(),
    transition: z.enum(DELIVERY_TRANSITIONS),
    state: z.enum(DELIVERY_STATES),
    attempts: z.number().int(),
    last_status: z.number().int().nullable().describe("The receiver's HTTP status on the last attempt."),
    last_error: z
      .string()
      .nullable()
      .describe("A fixed reason word (timeout, unreachable, http_503, ...), never an answer body."),
    latency_ms: z.number().int().nullable(),
    created_at: z.string(),
    enqueued_at: z.string().nullable(),
    delivered_at: z.string().nullable(),
    updated_at: z.string(),
  })
  .openapi("AlertDelivery");

export function deliveryView(row: typeof alertDeliveries.$inferSelect): z.infer<typeof DeliverySchema> {
  return {
    id: row.id,
    alert_id: row.alertId,
    channel_id: row.channelId,
    transition: row.transition,
    state: row.state,
    attempts: row.attempts,
    last_status: row.lastStatus,
    last_error: row.lastError,
    latency_ms: row.latencyMs,
    created_at: isoTime(row.createdAt) as string,
    enqueued_at: isoTime(row.enqueuedAt),
    delivered_at: isoTime(row.deliveredAt),
    updated_at: isoTime(row.updatedAt) as string,
  };
}
