import { newId } from "../crypto/random";
import type { Database } from "../db/client";
import { alertDeliveries } from "../db/schema";
import type { DeliveryTransition } from "./alert-kinds";

export interface OutboxEntry {
  tenantId: string;
  alertId: string;
  channelIds: readonly string[];
  transition: DeliveryTransition;
  now: number;
}

/**
 * The outbox rows of one alert transition, for the caller's batch (the transactional outbox: the alert's
 * change and its notifications commit together or not at all). A second insert of the same alert, channel and
 * transition does nothing, so a re-run evaluation never notifies twice. The Queue carries them afterwards
 * (`relayOutbox`).
 */
export function outboxStatements(db: Database, entry: OutboxEntry) {
  return entry.channelIds.map((channelId) =>
    db
      .insert(alertDeliveries)
      .values({
        id: newId("dlv"),
        tenantId: entry.tenantId,
        alertId: entry.alertId,
        channelId,
        transition: entry.transition,
        state: "pending",
        createdAt: entry.now,
        updatedAt: entry.now,
      })
      .onConflictDoNothing(),
  );
}
