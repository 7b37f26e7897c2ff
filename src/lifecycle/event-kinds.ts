/**
 * Every kind of event Keywarden records (the one source: the events table, the API and the alerting engine
 * read this list). Each carries a fixed severity so rules can filter on it.
 */
export const EVENT_SEVERITY_OF = {
  /** A scheduled rotation is coming up (sent once, `ROTATION_REMINDER_DAYS` ahead). */
  "rotation.upcoming": "info",
  "rotation.started": "info",
  "rotation.completed": "info",
  /** A rotation stopped; the current key or version stayed current. */
  "rotation.failed": "critical",
  /** An assisted rotation is due: an admin has to enter the new value. */
  "rotation.action_required": "warning",
  /** The delivery endpoint refused or never answered: the successor's JWE waits for pickup instead. */
  "rotation.delivery_failed": "warning",
  /** The successor of a rotated key has not been picked up and the overlap ends soon. */
  "rotation.pickup_reminder": "warning",
  /** The overlap ended before anyone picked the successor up: it was destroyed unseen. */
  "rotation.pickup_missed": "critical",
  /** A credential that passed its last live test now fails it. */
  "credential.test_failed": "critical",
  /** A credential that failed its last live test passes again. */
  "credential.test_recovered": "info",
  /** The provider says the credential expires soon. */
  "credential.expiring": "warning",
} as const;

export type EventKind = keyof typeof EVENT_SEVERITY_OF;
export const EVENT_KINDS = Object.keys(EVENT_SEVERITY_OF) as [EventKind, ...EventKind[]];
export const EVENT_SEVERITIES = ["info", "warning", "critical"] as const;
export type EventSeverity = (typeof EVENT_SEVERITIES)[number];

/** What an event is about: a key, a credential, or the tenant as a whole (e.g. its DEK rotation). */
export const EVENT_SUBJECT_TYPES = ["key", "credential", "tenant"] as const;
export type EventSubjectType = (typeof EVENT_SUBJECT_TYPES)[number];
