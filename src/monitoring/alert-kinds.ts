/**
 * The one source of the monitoring engine's enums: the rule kinds a tenant can configure (and the kind of
 * each alert they raise), an alert's states, the severities, and what an alert can be about.
 */
export const RULE_KINDS = [
  /** Requests of a key or service over a window, absolute or in percent of each key's usage limit. */
  "usage_threshold",
  /** Failed verifications in percent of all, over a window. */
  "failure_rate",
  /** Keys and credentials (including the provider expiry a live test harvested) reaching N days before expiry. */
  "expiry_warning",
  /** Rotation due, overdue or failed (from the lifecycle engine's events and schedule). */
  "rotation",
  /** A scheduled live re-test turned failing. */
  "retest_failing",
  /** A key's volume far above its own baseline for this hour of the week (src/monitoring/anomaly.ts). */
  "anomaly_volume",
  /** A key's verify failures far above its own baseline for this hour of the week. */
  "anomaly_failures",
  /** A key used from a country or network it has never been used from. */
  "new_origin",
  /** A burst of failed authentication against Keywarden itself with the tenant's keys. */
  "auth_failure_burst",
  /** An alert channel whose deliveries keep failing: raised on the tenant's other channels. */
  "channel_failing",
] as const;
export type RuleKind = (typeof RULE_KINDS)[number];

export const ALERT_STATES = ["firing", "acknowledged", "resolved"] as const;
export type AlertState = (typeof ALERT_STATES)[number];

export const ALERT_SEVERITIES = ["info", "warning", "critical"] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

export const ALERT_SUBJECT_TYPES = ["key", "credential", "service", "tenant", "channel"] as const;
export type AlertSubjectType = (typeof ALERT_SUBJECT_TYPES)[number];

export const CHANNEL_KINDS = ["email", "slack", "webhook", "sms"] as const;
export type ChannelKind = (typeof CHANNEL_KINDS)[number];

export const CHANNEL_HEALTH = ["healthy", "failing"] as const;
export type ChannelHealth = (typeof CHANNEL_HEALTH)[number];

/** A notification is sent when an alert fires and when it resolves. */
export const DELIVERY_TRANSITIONS = ["fired", "resolved"] as const;
export type DeliveryTransition = (typeof DELIVERY_TRANSITIONS)[number];

/** pending: in the outbox; retrying: a failed attempt, the Queue will try again; dead: gave up (DLQ). */
export const DELIVERY_STATES = ["pending", "retrying", "delivered", "dead"] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** Usage counters are kept per hour and per day (src/monitoring/usage-counts.ts). */
export const USAGE_BUCKETS = ["hour", "day"] as const;
export type UsageBucket = (typeof USAGE_BUCKETS)[number];

/** A key's origins the new-origin rule compares against. */
export const ORIGIN_KINDS = ["country", "network"] as const;
export type OriginKind = (typeof ORIGIN_KINDS)[number];
