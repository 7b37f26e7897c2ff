import { sql } from "drizzle-orm";
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import { ERASURE_STATES, ERASURE_STEPS } from "../erasure/erasure-kinds";
import { EVENT_KINDS, EVENT_SEVERITIES, EVENT_SUBJECT_TYPES } from "../lifecycle/event-kinds";
import {
  HANDOFF_METHODS,
  ROTATION_METHODS,
  ROTATION_RUN_STATES,
  ROTATION_SUBJECTS,
  VERSION_STAGES,
} from "../lifecycle/rotation-kinds";
import {
  ALERT_SEVERITIES,
  ALERT_STATES,
  ALERT_SUBJECT_TYPES,
  CHANNEL_HEALTH,
  CHANNEL_KINDS,
  DELIVERY_STATES,
  DELIVERY_TRANSITIONS,
  ORIGIN_KINDS,
  RULE_KINDS,
  USAGE_BUCKETS,
} from "../monitoring/alert-kinds";
import { DATA_KEY_STATES } from "../vault/data-key-states";
import { KEK_PROVIDERS } from "../vault/kek-ref";

/** Times are Unix epoch milliseconds. See docs/storage.md for which columns are hash, ciphertext or plaintext. */

export const tenants = sqliteTable("tenants", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  keyPrefix: text("key_prefix").notNull(),
  createdAt: integer("created_at").notNull(),
});

/** One row per KEK version: the key-check value that tells a wrong MASTER_KEY from the right one. */
export const keyring = sqliteTable("keyring", {
  kekVersion: integer("kek_version").primaryKey(),
  checkValue: text("check_value").notNull(),
  createdAt: integer("created_at").notNull(),
});

/**
 * A tenant's data encryption keys (DEKs), each wrapped under one KEK: `kek_provider` + `kek_version` name it
 * (src/vault/kek-ref.ts). One is `active` (new writes); `retiring` ones still decrypt until the re-encryption
 * has moved every field off them, then they are deleted (src/vault/dek-rotation.ts).
 */
export const dataKeys = sqliteTable(
  "data_keys",
  {
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    version: integer("version").notNull(),
    kekProvider: text("kek_provider", { enum: KEK_PROVIDERS }).notNull(),
    kekVersion: integer("kek_version").notNull(),
    wrappedKey: text("wrapped_key").notNull(),
    /** Encryptions under this DEK; rotated long before the GCM random-IV bound of 2^32 (SP 800-38D §8.3). */
    encryptionCount: integer("encryption_count").notNull().default(0),
    status: text("status", { enum: DATA_KEY_STATES }).notNull(),
    /** When the active DEK is rotated next: its schedule, or at once when the encryption count crosses the bound. */
    nextRotationAt: integer("next_rotation_at"),
    /** A retiring DEK is deleted after this time (once no wizard can still hold a blob sealed under it). */
    retireAfter: integer("retire_after"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.version] }),
    index("data_keys_next_rotation_idx").on(t.nextRotationAt),
    index("data_keys_kek_idx").on(t.kekProvider, t.kekVersion),
  ],
);

/**
 * Deployment-wide HMAC keys (session JWTs, audit chain, ...), one per purpose, wrapped under a KEK like a DEK,
 * so they outlive the master secret they were first derived from (src/vault/system-keys.ts).
 */
export const systemKeys = sqliteTable("system_keys", {
  purpose: text("purpose").primaryKey(),
  kekProvider: text("kek_provider", { enum: KEK_PROVIDERS }).notNull(),
  kekVersion: integer("kek_version").notNull(),
  wrappedKey: text("wrapped_key").notNull(),
  createdAt: integer("created_at").notNull(),
});

export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    name: text("name").notNull(),
    hash: text("hash").notNull(),
    start: text("start").notNull(),
    last4: text("last4").notNull(),
    environment: text("environment", { enum: ["live", "test"] }).notNull(),
    securityLevel: text("security_level", { enum: ["basic", "enhanced", "enterprise"] }).notNull(),
    scopes: text("scopes", { mode: "json" }).$type<string[]>().notNull(),
    enabled: integer("enabled", { mode: "boolean" }).notNull().default(true),
    revokedAt: integer("revoked_at"),
    expiresAt: integer("expires_at"),
    ipAllowlist: text("ip_allowlist", { mode: "json" }).$type<string[]>(),
    countryAllowlist: text("country_allowlist", { mode: "json" }).$type<string[]>(),
    ratelimitLimit: integer("ratelimit_limit"),
    ratelimitWindowMs: integer("ratelimit_window_ms"),
    /** Usage limit as set by the owner; the live counter is in the key's KeyLimiter Durable Object. */
    usageLimit: integer("usage_limit"),
    refillAmount: integer("refill_amount"),
    refillIntervalMs: integer("refill_interval_ms"),
    /** Bumped whenever limits change, so the limiter resets its counters exactly once. */
    limitsVersion: integer("limits_version").notNull().default(1),
    metadata: text("metadata", { mode: "json" }).$type<Record<string, unknown>>(),
    backupOfId: text("backup_of_id"),
    rotatedToId: text("rotated_to_id"),
    /** Unique: of two concurrent rotations of one key, the second batch fails as a whole. */
    rotatedFromId: text("rotated_from_id"),
    serviceId: text("service_id"),
    /** Rotation schedule: a successor is minted every `rotation_days`; null means rotated by hand only. */
    rotationDays: integer("rotation_days"),
    /** How long the old key keeps verifying after its successor is promoted. */
    rotationOverlapSeconds: integer("rotation_overlap_seconds").notNull().default(86_400),
    /** When the cron starts the next rotation; cleared while one runs (src/lifecycle/scheduler.ts). */
    nextRotationAt: integer("next_rotation_at"),
    lastRotatedAt: integer("last_rotated_at"),
    createdBy: text("created_by"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    lastUsedAt: integer("last_used_at"),
  },
  (t) => [
    uniqueIndex("api_keys_hash_idx").on(t.hash),
    index("api_keys_next_rotation_idx").on(t.nextRotationAt),
    /** Expiry reminders (src/monitoring/rules/expiry.ts) seek the keys expiring soon. */
    index("api_keys_expiry_idx").on(t.expiresAt).where(sql`expires_at IS NOT NULL`),
    uniqueIndex("api_keys_rotated_from_idx").on(t.rotatedFromId),
    index("api_keys_tenant_idx").on(t.tenantId, t.createdAt, t.id),
  ],
);

/**
 * Verification counts per key and hour, and per key and day (`start` is the bucket's first millisecond, UTC).
 * `key_id` is '' for answers that name no key of the tenant (INVALID_FORMAT, NOT_FOUND). `invalid` is every
 * failed verification; the per-code columns break it down (rows from before migration 0009 carry only
 * `invalid`). `auth_failed` counts refused authentications against Keywarden itself with the key.
 */
export const usageCounts = sqliteTable(
  "usage_counts",
  {
    tenantId: text("tenant_id").notNull(),
    keyId: text("key_id").notNull(),
    serviceId: text("service_id"),
    bucket: text("bucket", { enum: USAGE_BUCKETS }).notNull(),
    start: integer("start").notNull(),
    valid: integer("valid").notNull().default(0),
    invalid: integer("invalid").notNull().default(0),
    invalidFormat: integer("invalid_format").notNull().default(0),
    notFound: integer("not_found").notNull().default(0),
    disabled: integer("disabled").notNull().default(0),
    expired: integer("expired").notNull().default(0),
    forbidden: integer("forbidden").notNull().default(0),
    insufficientScopes: integer("insufficient_scopes").notNull().default(0),
    rateLimited: integer("rate_limited").notNull().default(0),
    usageExceeded: integer("usage_exceeded").notNull().default(0),
    authFailed: integer("auth_failed").notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.keyId, t.bucket, t.start] }),
    index("usage_counts_period_idx").on(t.bucket, t.start),
    index("usage_counts_tenant_idx").on(t.tenantId, t.bucket, t.start),
  ],
);

/** Every country and network (AS number) a key has been verified from, for the new-origin rule. */
export const keyOrigins = sqliteTable(
  "key_origins",
  {
    tenantId: text("tenant_id").notNull(),
    keyId: text("key_id").notNull(),
    kind: text("kind", { enum: ORIGIN_KINDS }).notNull(),
    value: text("value").notNull(),
    firstSeenAt: integer("first_seen_at").notNull(),
    lastSeenAt: integer("last_seen_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.keyId, t.kind, t.value] }),
    index("key_origins_first_seen_idx").on(t.firstSeenAt),
    /** Tenant erasure deletes a tenant's rows in bounded chunks (src/erasure/tenant-tables.ts). */
    index("key_origins_tenant_idx").on(t.tenantId),
  ],
);

/**
 * A key's usage baseline for one hour of the week (0 = Monday 00:00 UTC): exponentially weighted mean and
 * variance of its hourly volume and failures (src/monitoring/anomaly.ts).
 */
export const keyBaselines = sqliteTable(
  "key_baselines",
  {
    tenantId: text("tenant_id").notNull(),
    keyId: text("key_id").notNull(),
    hourOfWeek: integer("hour_of_week").notNull(),
    samples: integer("samples").notNull(),
    volumeMean: real("volume_mean").notNull(),
    volumeVar: real("volume_var").notNull(),
    failureMean: real("failure_mean").notNull(),
    failureVar: real("failure_var").notNull(),
    /** The hour (its first millisecond) last folded in: folding the same hour twice does nothing. */
    lastHour: integer("last_hour").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.keyId, t.hourOfWeek] }),
    /** Tenant erasure deletes a tenant's rows in bounded chunks (src/erasure/tenant-tables.ts). */
    index("key_baselines_tenant_idx").on(t.tenantId),
  ],
);

/** Append-only, hash-chained per tenant: each row's hash covers its content and the previous row's hash. */
export const auditLog = sqliteTable(
  "audit_log",
  {
    tenantId: text("tenant_id").notNull(),
    seq: integer("seq").notNull(),
    at: integer("at").notNull(),
    actorType: text("actor_type").notNull(),
    actorId: text("actor_id").notNull(),
    action: text("action").notNull(),
    targetType: text("target_type").notNull(),
    targetId: text("target_id").notNull(),
    requestId: text("request_id").notNull(),
    detail: text("detail", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    prevHash: text("prev_hash").notNull(),
    hash: text("hash").notNull(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.seq] })],
);

/**
 * Where a tenant's audit log starts after retention pruned older rows (the level's audit_retention_days):
 * rows below `first_seq` may be deleted (migration 0009's trigger refuses any other delete), and verification
 * starts at `first_seq`, whose row must chain from `prev_hash`. The horizon only moves forward.
 */
export const auditHorizons = sqliteTable("audit_horizons", {
  tenantId: text("tenant_id").primaryKey(),
  firstSeq: integer("first_seq").notNull(),
  prevHash: text("prev_hash").notNull(),
  movedAt: integer("moved_at").notNull(),
});

/** A third-party credential set (one service, one environment). Field values live in its versions, encrypted. */
export const credentials = sqliteTable(
  "credentials",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    serviceId: text("service_id").notNull(),
    environment: text("environment", { enum: ["development", "staging", "production"] }).notNull(),
    securityLevel: text("security_level", { enum: ["basic", "enhanced", "enterprise"] }).notNull(),
    name: text("name").notNull(),
    currentVersion: integer("current_version").notNull(),
    /** Bumped by every change a client can see (fields, name, delete, restore); the ETag is built from it. */
    revision: integer("revision").notNull().default(1),
    status: text("status", { enum: ["active", "deleted"] }).notNull(),
    deletedAt: integer("deleted_at"),
    lastTestStatus: text("last_test_status", { enum: ["valid", "invalid", "unknown"] }),
    lastTestReason: text("last_test_reason"),
    lastTestLatencyMs: integer("last_test_latency_ms"),
    lastTestedAt: integer("last_tested_at"),
    providerExpiresAt: integer("provider_expires_at"),
    providerAccount: text("provider_account"),
    /** When the scheduled live re-test next probes this credential (src/lifecycle/retests.ts). */
    nextTestAt: integer("next_test_at"),
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    index("credentials_tenant_idx").on(t.tenantId, t.createdAt, t.id),
    index("credentials_next_test_idx").on(t.nextTestAt),
    index("credentials_provider_expiry_idx")
      .on(t.providerExpiresAt)
      .where(sql`provider_expires_at IS NOT NULL`),
    index("credentials_failing_idx").on(t.tenantId, t.id).where(sql`last_test_status = 'invalid'`),
  ],
);

export const credentialVersions = sqliteTable(
  "credential_versions",
  {
    credentialId: text("credential_id").notNull(),
    tenantId: text("tenant_id").notNull(),
    version: integer("version").notNull(),
    /** `{ field: blob }`: each value AES-256-GCM under the tenant DEK, AAD-bound to (tenant, credential#version, field). */
    sealedFields: text("sealed_fields", { mode: "json" }).$type<Record<string, string>>().notNull(),
    /** The tenant DEK version its ciphertext is sealed under (src/vault/sealed-records.ts). */
    dekVersion: integer("dek_version").notNull(),
    /** `{ field: display }`: secret fields masked (at most a third shown), identifier fields as entered. */
    displayFields: text("display_fields", { mode: "json" }).$type<Record<string, string>>().notNull(),
    /** AWS Secrets Manager-style stage label; at most one version of a credential holds each (unique index). */
    stage: text("stage", { enum: VERSION_STAGES }),
    /** The provider's own id of this version's key (AWS AccessKeyId, Twilio key SID, SendGrid key id), to revoke it. */
    providerKeyId: text("provider_key_id"),
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.credentialId, t.version] }),
    uniqueIndex("credential_versions_stage_idx").on(t.credentialId, t.stage).where(sql`stage IS NOT NULL`),
    index("credential_versions_dek_idx").on(t.tenantId, t.dekVersion),
  ],
);

/**
 * How a credential rotates. `assisted`: reminders, then an admin enters the new value. `provider`: Keywarden
 * mints and revokes at the provider with the separate rotation credential. `external`: Keywarden calls the
 * tenant's own endpoint for each step.
 */
export const credentialRotations = sqliteTable(
  "credential_rotations",
  {
    credentialId: text("credential_id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    method: text("method", { enum: ROTATION_METHODS }).notNull(),
    rotationDays: integer("rotation_days").notNull(),
    overlapSeconds: integer("overlap_seconds").notNull(),
    nextRotationAt: integer("next_rotation_at"),
    lastRotatedAt: integer("last_rotated_at"),
    /** `provider` only: the least-privileged credential that may mint and revoke this one's keys. */
    rotatorCredentialId: text("rotator_credential_id"),
    /** `provider` only, non-secret settings the provider's API needs (e.g. the AWS IAM user name). */
    settings: text("settings", { mode: "json" }).$type<Record<string, string>>().notNull(),
    /** `external` only: the tenant's rotation endpoint and its Standard Webhooks secret (ciphertext). */
    endpointUrl: text("endpoint_url"),
    sealedEndpointSecret: text("sealed_endpoint_secret"),
    /** The tenant DEK version its ciphertext is sealed under, when it holds any (src/vault/sealed-records.ts). */
    dekVersion: integer("dek_version"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    index("credential_rotations_next_idx").on(t.nextRotationAt),
    index("credential_rotations_dek_idx").on(t.tenantId, t.dekVersion),
  ],
);

/**
 * One row per rotation run, keyed by its Workflow instance id (deterministic: subject and generation), so
 * the API can show the run's step and outcome. At most one run per subject is in progress (unique index).
 */
export const rotationRuns = sqliteTable(
  "rotation_runs",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    subjectType: text("subject_type", { enum: ROTATION_SUBJECTS }).notNull(),
    subjectId: text("subject_id").notNull(),
    trigger: text("trigger", { enum: ["schedule", "manual"] }).notNull(),
    state: text("state", { enum: ROTATION_RUN_STATES }).notNull(),
    step: text("step").notNull(),
    /** The new key's id, or the new credential version's number. */
    successorId: text("successor_id"),
    /** When the old key or version stops working; the cron ends the overlap early when fast-forwarded. */
    overlapEndsAt: integer("overlap_ends_at"),
    error: text("error"),
    startedAt: integer("started_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    finishedAt: integer("finished_at"),
  },
  (t) => [
    uniqueIndex("rotation_runs_one_in_progress_idx").on(t.subjectId).where(sql`state = 'in_progress'`),
    index("rotation_runs_subject_idx").on(t.subjectId, t.startedAt),
    index("rotation_runs_overlap_idx").on(t.state, t.overlapEndsAt),
    index("rotation_runs_step_idx").on(t.state, t.step, t.updatedAt),
    /** Tenant erasure deletes a tenant's rows in bounded chunks (src/erasure/tenant-tables.ts). */
    index("rotation_runs_tenant_idx").on(t.tenantId),
  ],
);

/**
 * A rotated key's way to its tenant: a JWE to the tenant's public key waiting for delivery, or the plaintext
 * sealed under the tenant DEK for one-time pickup. Deleted on delivery, pickup or the overlap's end.
 */
export const keyHandoffs = sqliteTable(
  "key_handoffs",
  {
    keyId: text("key_id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    runId: text("run_id").notNull(),
    method: text("method", { enum: HANDOFF_METHODS }).notNull(),
    payload: text("payload").notNull(),
    /** The tenant DEK version its ciphertext is sealed under, when it holds any (src/vault/sealed-records.ts). */
    dekVersion: integer("dek_version"),
    attempts: integer("attempts").notNull().default(0),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
  },
  (t) => [
    index("key_handoffs_expiry_idx").on(t.method, t.expiresAt),
    index("key_handoffs_dek_idx").on(t.tenantId, t.dekVersion),
  ],
);

/** Where a tenant's rotated keys are delivered: an https endpoint and the public JWK they are encrypted to. */
export const keyDeliveryEndpoints = sqliteTable("key_delivery_endpoints", {
  tenantId: text("tenant_id")
    .primaryKey()
    .references(() => tenants.id),
  url: text("url").notNull(),
  publicJwk: text("public_jwk", { mode: "json" }).$type<Record<string, string>>().notNull(),
  /** Standard Webhooks signing secret, AES-256-GCM under the tenant DEK. */
  sealedSigningSecret: text("sealed_signing_secret").notNull(),
  /** The tenant DEK version its ciphertext is sealed under (src/vault/sealed-records.ts). */
  dekVersion: integer("dek_version").notNull(),
  createdAt: integer("created_at").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

/**
 * What happened, for the alerting engine to act on (rotations, reminders, test results). `dedupe_key` makes
 * a re-run of the same job record an event once.
 */
export const events = sqliteTable(
  "events",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    kind: text("kind", { enum: EVENT_KINDS }).notNull(),
    severity: text("severity", { enum: EVENT_SEVERITIES }).notNull(),
    subjectType: text("subject_type", { enum: EVENT_SUBJECT_TYPES }).notNull(),
    subjectId: text("subject_id").notNull(),
    dedupeKey: text("dedupe_key").notNull(),
    detail: text("detail", { mode: "json" }).$type<Record<string, string | number | null>>().notNull(),
    at: integer("at").notNull(),
    /** When the alerting engine evaluated this event; null while it waits (src/monitoring/). */
    alertedAt: integer("alerted_at"),
  },
  (t) => [
    uniqueIndex("events_dedupe_idx").on(t.dedupeKey),
    index("events_tenant_idx").on(t.tenantId, t.at, t.id),
    index("events_unalerted_idx").on(t.at).where(sql`alerted_at IS NULL`),
  ],
);

/** The tenant's security policy, as last committed by a wizard. */
export const securityPolicies = sqliteTable("security_policies", {
  tenantId: text("tenant_id")
    .primaryKey()
    .references(() => tenants.id),
  securityLevel: text("security_level", { enum: ["basic", "enhanced", "enterprise"] }).notNull(),
  environment: text("environment", { enum: ["development", "staging", "production"] }).notNull(),
  rotationPolicy: text("rotation_policy").notNull(),
  rotationDays: integer("rotation_days"),
  ipAllowlist: text("ip_allowlist", { mode: "json" }).$type<string[]>().notNull(),
  countryAllowlist: text("country_allowlist", { mode: "json" }).$type<string[]>().notNull(),
  require2fa: integer("require_2fa", { mode: "boolean" }).notNull(),
  compliance: text("compliance", { mode: "json" }).$type<string[]>().notNull(),
  wizardId: text("wizard_id").notNull(),
  updatedAt: integer("updated_at").notNull(),
});

export const alertChannels = sqliteTable(
  "alert_channels",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    kind: text("kind", { enum: CHANNEL_KINDS }).notNull(),
    name: text("name").notNull(),
    /** Non-secret settings (address, URL host, phone number) as entered. */
    config: text("config", { mode: "json" }).$type<Record<string, string>>().notNull(),
    /** `{ field: blob }`: secret settings (Slack URL, webhook signing secret, Twilio token) encrypted. */
    sealedSecrets: text("sealed_secrets", { mode: "json" }).$type<Record<string, string>>().notNull(),
    /** The tenant DEK version its ciphertext is sealed under (src/vault/sealed-records.ts). */
    dekVersion: integer("dek_version").notNull(),
    health: text("health", { enum: CHANNEL_HEALTH }).notNull().default("healthy"),
    /** Deliveries that gave up in a row; reset by a delivered one. */
    consecutiveFailures: integer("consecutive_failures").notNull().default(0),
    lastDeliveryAt: integer("last_delivery_at"),
    /** A stable reason code (`timeout`, `rejected`, `http_500`...): never an answer body or a secret. */
    lastError: text("last_error"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull().default(0),
  },
  (t) => [
    uniqueIndex("alert_channels_name_idx").on(t.tenantId, t.name),
    index("alert_channels_dek_idx").on(t.tenantId, t.dekVersion),
  ],
);

export const alertRules = sqliteTable(
  "alert_rules",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    name: text("name").notNull().default(""),
    kind: text("kind", { enum: RULE_KINDS }).notNull(),
    serviceId: text("service_id"),
    /** Kind-specific settings, validated by the rule schemas (src/monitoring/rule-schemas.ts). */
    settings: text("settings", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    channelIds: text("channel_ids", { mode: "json" }).$type<string[]>().notNull(),
    severity: text("severity", { enum: ALERT_SEVERITIES }).notNull().default("warning"),
    /** After an alert of this rule resolves, the same subject does not fire again before this many seconds. */
    cooldownSeconds: integer("cooldown_seconds").notNull().default(3600),
    enabled: integer("enabled", { mode: "boolean" }).notNull().default(true),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull().default(0),
  },
  (t) => [
    index("alert_rules_tenant_idx").on(t.tenantId, t.kind),
    uniqueIndex("alert_rules_name_idx").on(t.tenantId, t.name),
  ],
);

/**
 * One alert: a rule's condition about one subject, from firing to resolved. At most one open (firing or
 * acknowledged) alert per fingerprint: a condition that stays true updates it instead of firing again.
 */
export const alerts = sqliteTable(
  "alerts",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    /** The rule's id, or `default:<kind>` for the rules every tenant has (src/monitoring/default-rules.ts). */
    ruleId: text("rule_id").notNull(),
    kind: text("kind", { enum: RULE_KINDS }).notNull(),
    severity: text("severity", { enum: ALERT_SEVERITIES }).notNull(),
    state: text("state", { enum: ALERT_STATES }).notNull(),
    subjectType: text("subject_type", { enum: ALERT_SUBJECT_TYPES }).notNull(),
    subjectId: text("subject_id").notNull(),
    /** rule + subject + occurrence (e.g. the 7-day reminder of one expiry): what de-duplication keys on. */
    fingerprint: text("fingerprint").notNull(),
    /** One line, no secret. */
    summary: text("summary").notNull(),
    detail: text("detail", { mode: "json" }).$type<Record<string, string | number | null>>().notNull(),
    firedAt: integer("fired_at").notNull(),
    /** The last evaluation that found the condition still true. */
    lastSeenAt: integer("last_seen_at").notNull(),
    acknowledgedAt: integer("acknowledged_at"),
    acknowledgedBy: text("acknowledged_by"),
    resolvedAt: integer("resolved_at"),
  },
  (t) => [
    uniqueIndex("alerts_open_idx").on(t.tenantId, t.fingerprint).where(sql`state != 'resolved'`),
    index("alerts_tenant_idx").on(t.tenantId, t.state, t.firedAt, t.id),
    index("alerts_fingerprint_idx").on(t.tenantId, t.fingerprint, t.resolvedAt),
  ],
);

/**
 * The outbox: one row per notification (an alert's firing or resolution, to one channel), inserted in the
 * same batch as the alert's change, then carried by the alerts Queue. It is also the channel's delivery log.
 */
export const alertDeliveries = sqliteTable(
  "alert_deliveries",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    alertId: text("alert_id").notNull(),
    channelId: text("channel_id").notNull(),
    transition: text("transition", { enum: DELIVERY_TRANSITIONS }).notNull(),
    state: text("state", { enum: DELIVERY_STATES }).notNull(),
    attempts: integer("attempts").notNull().default(0),
    /** The receiver's HTTP status on the last attempt, when it answered. */
    lastStatus: integer("last_status"),
    /** A stable reason code, never an answer body or a secret. */
    lastError: text("last_error"),
    latencyMs: integer("latency_ms"),
    createdAt: integer("created_at").notNull(),
    /** When the row was last handed to the Queue; the cron re-sends pending rows the Queue never got. */
    enqueuedAt: integer("enqueued_at"),
    updatedAt: integer("updated_at").notNull(),
    deliveredAt: integer("delivered_at"),
  },
  (t) => [
    uniqueIndex("alert_deliveries_once_idx").on(t.alertId, t.channelId, t.transition),
    index("alert_deliveries_channel_idx").on(t.tenantId, t.channelId, t.createdAt),
    index("alert_deliveries_outbox_idx").on(t.state, t.enqueuedAt),
  ],
);

/** One row per committed wizard: the idempotency marker and the summary a retry returns. */
export const wizardCommits = sqliteTable(
  "wizard_commits",
  {
    wizardId: text("wizard_id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    summary: text("summary", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    committedAt: integer("committed_at").notNull(),
  },
  /** Tenant erasure deletes a tenant's rows in bounded chunks (src/erasure/tenant-tables.ts). */
  (t) => [index("wizard_commits_tenant_idx").on(t.tenantId)],
);

/** TOTP second factor of one admin key (RFC 6238). The shared secret is ciphertext, AAD-bound to the key. */
export const adminTotp = sqliteTable(
  "admin_totp",
  {
    keyId: text("key_id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    sealedSecret: text("sealed_secret").notNull(),
    /** The tenant DEK version its ciphertext is sealed under (src/vault/sealed-records.ts). */
    dekVersion: integer("dek_version").notNull(),
    confirmedAt: integer("confirmed_at"),
    /** The last accepted time step: a code is never accepted twice (RFC 6238 §5.2). */
    lastStep: integer("last_step").notNull().default(0),
    /** Wrong codes since the last accepted one; at the threshold the key is locked until `locked_until`. */
    failedAttempts: integer("failed_attempts").notNull().default(0),
    lockedUntil: integer("locked_until"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("admin_totp_dek_idx").on(t.tenantId, t.dekVersion)],
);

/**
 * One row per tenant erasure (GDPR Art. 17), written when the operator asks for it and kept after every other
 * row of the tenant is gone: it is the receipt. It holds the tenant id, times, counts and the audit chain's
 * last MAC, and nothing the tenant stored. Migration 0010's triggers make it permanent (never deleted, its
 * identity and request time never changed) and let the tenant's rows be deleted only while it exists.
 */
export const tenantErasures = sqliteTable(
  "tenant_erasures",
  {
    tenantId: text("tenant_id").primaryKey(),
    /** The erasure's id, also its Workflow instance id. */
    id: text("id").notNull(),
    state: text("state", { enum: ERASURE_STATES }).notNull(),
    step: text("step", { enum: ERASURE_STEPS }).notNull(),
    /** When the tenant's keys were disabled and its schedules cleared, in the batch that wrote this row. */
    requestedAt: integer("requested_at").notNull(),
    /** When every data_keys row of the tenant was deleted: from then on none of its ciphertext decrypts. */
    dekDestroyedAt: integer("dek_destroyed_at"),
    dataKeysDestroyed: integer("data_keys_destroyed").notNull().default(0),
    /** When the first pass over every tenant table found nothing left. */
    rowsDeletedAt: integer("rows_deleted_at"),
    completedAt: integer("completed_at"),
    /** `{ table: rows deleted }`, counted in the batch that deleted them. */
    rowsDeleted: text("rows_deleted", { mode: "json" }).$type<Record<string, number>>().notNull(),
    /** `{ key_limiters, wizard_sessions, audit_chain }`: Durable Objects whose storage was cleared. */
    objectsCleared: text("objects_cleared", { mode: "json" }).$type<Record<string, number>>().notNull(),
    /** The tenant's last audit row before its log was deleted: its seq and chain MAC. */
    auditHeadSeq: integer("audit_head_seq"),
    auditHeadHash: text("audit_head_hash"),
    /** HMAC-SHA-256 of the completed receipt under the `erasure-receipt` system key. */
    receiptMac: text("receipt_mac"),
  },
  (t) => [uniqueIndex("tenant_erasures_id_idx").on(t.id)],
);

/**
 * The key change feed (migration 0011): one row per change to a key that can make a cached verify answer wrong,
 * written by SQL triggers on api_keys (insert, delete, and updates of the columns a KeyRecord reads), so no
 * code path can forget it. `hash_prefix` is the first 16 hex characters of the key's SHA-256 (what api_keys
 * stores in full), never the key. Each isolate polls it (src/keys/key-change-feed.ts); the cron deletes rows
 * older than 48 hours.
 */
export const keyChanges = sqliteTable(
  "key_changes",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    hashPrefix: text("hash_prefix").notNull(),
    changedAt: integer("changed_at").notNull(),
  },
  (t) => [index("key_changes_changed_at_idx").on(t.changedAt)],
);

/**
 * Where a cron job that spans ticks stopped (migration 0012), one row per job: the counter rules' snapshot
 * (src/monitoring/counter-snapshot.ts) reads at most a page budget of usage rows a tick and continues from here
 * on the next. `window_start` is the bucket the pass belongs to (a new bucket starts a new pass), `phase` and
 * `after_rowid` where in it the next page starts. No tenant data: rowids and times only.
 */
export const jobCursors = sqliteTable("job_cursors", {
  name: text("name").primaryKey(),
  windowStart: integer("window_start").notNull(),
  phase: integer("phase").notNull(),
  afterRowid: integer("after_rowid").notNull(),
  updatedAt: integer("updated_at").notNull(),
});
