import { newId } from "../crypto/random";
import type { Database } from "../db/client";
import { events } from "../db/schema";
import { EVENT_SEVERITY_OF, type EventKind, type EventSubjectType } from "./event-kinds";

export interface LifecycleEvent {
  tenantId: string;
  kind: EventKind;
  subjectType: EventSubjectType;
  subjectId: string;
  /** Names the occurrence: the same job re-run records its event once (e.g. `<run id>:failed`). */
  dedupeKey: string;
  detail?: Record<string, string | number | null>;
  at: number;
}

/** The INSERT that records `event`, for a caller's batch; a second insert with the same dedupe key does nothing. */
export function eventStatement(db: Database, event: LifecycleEvent) {
  return db
    .insert(events)
    .values({
      id: newId("evt"),
      tenantId: event.tenantId,
      kind: event.kind,
      severity: EVENT_SEVERITY_OF[event.kind],
      subjectType: event.subjectType,
      subjectId: event.subjectId,
      dedupeKey: `${event.kind}:${event.dedupeKey}`,
      detail: event.detail ?? {},
      at: event.at,
    })
    .onConflictDoNothing({ target: events.dedupeKey });
}

/** A random event id computed by SQLite, for INSERT ... SELECT statements that record many events at once. */
export const SQL_EVENT_ID_TEXT = "'evt_' || lower(hex(randomblob(16)))";
