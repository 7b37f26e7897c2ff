import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

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

export const dataKeys = sqliteTable(
  "data_keys",
  {
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    version: integer("version").notNull(),
    kekVersion: integer("kek_version").notNull(),
    wrappedKey: text("wrapped_key").notNull(),
    /** Encryptions under this DEK; rotated long before the GCM random-IV bound of 2^32 (SP 800-38D §8.3). */
    encryptionCount: integer("encryption_count").notNull().default(0),
    status: text("status", { enum: ["active", "retired"] }).notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.version] })],
);

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
    createdBy: text("created_by"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
    lastUsedAt: integer("last_used_at"),
  },
  (t) => [
    uniqueIndex("api_keys_hash_idx").on(t.hash),
    uniqueIndex("api_keys_rotated_from_idx").on(t.rotatedFromId),
    index("api_keys_tenant_idx").on(t.tenantId, t.createdAt, t.id),
  ],
);

export const keyUsageDaily = sqliteTable(
  "key_usage_daily",
  {
    tenantId: text("tenant_id").notNull(),
    keyId: text("key_id").notNull(),
    day: text("day").notNull(),
    valid: integer("valid").notNull().default(0),
    invalid: integer("invalid").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.keyId, t.day] })],
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
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("credentials_tenant_idx").on(t.tenantId, t.createdAt, t.id)],
);

export const credentialVersions = sqliteTable(
  "credential_versions",
  {
    credentialId: text("credential_id").notNull(),
    tenantId: text("tenant_id").notNull(),
    version: integer("version").notNull(),
    /** `{ field: blob }`: each value AES-256-GCM under the tenant DEK, AAD-bound to (tenant, credential#version, field). */
    sealedFields: text("sealed_fields", { mode: "json" }).$type<Record<string, string>>().notNull(),
    /** `{ field: display }`: secret fields masked (at most a third shown), identifier fields as entered. */
    displayFields: text("display_fields", { mode: "json" }).$type<Record<string, string>>().notNull(),
    createdBy: text("created_by").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.credentialId, t.version] })],
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
    kind: text("kind", { enum: ["email", "slack", "webhook", "sms"] }).notNull(),
    name: text("name").notNull(),
    /** Non-secret settings (address, URL host, phone number) as entered. */
    config: text("config", { mode: "json" }).$type<Record<string, string>>().notNull(),
    /** `{ field: blob }`: secret settings (Slack URL, webhook signing secret, Twilio token) encrypted. */
    sealedSecrets: text("sealed_secrets", { mode: "json" }).$type<Record<string, string>>().notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("alert_channels_tenant_idx").on(t.tenantId)],
);

export const alertRules = sqliteTable(
  "alert_rules",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    kind: text("kind", { enum: ["usage_threshold", "failure_rate", "expiry_warning"] }).notNull(),
    serviceId: text("service_id"),
    settings: text("settings", { mode: "json" }).$type<Record<string, number | string>>().notNull(),
    channelIds: text("channel_ids", { mode: "json" }).$type<string[]>().notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("alert_rules_tenant_idx").on(t.tenantId)],
);

/** One row per committed wizard: the idempotency marker and the summary a retry returns. */
export const wizardCommits = sqliteTable("wizard_commits", {
  wizardId: text("wizard_id").primaryKey(),
  tenantId: text("tenant_id").notNull(),
  summary: text("summary", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
  committedAt: integer("committed_at").notNull(),
});

/** TOTP second factor of one admin key (RFC 6238). The shared secret is ciphertext, AAD-bound to the key. */
export const adminTotp = sqliteTable("admin_totp", {
  keyId: text("key_id").primaryKey(),
  tenantId: text("tenant_id")
    .notNull()
    .references(() => tenants.id),
  sealedSecret: text("sealed_secret").notNull(),
  confirmedAt: integer("confirmed_at"),
  /** The last accepted time step: a code is never accepted twice (RFC 6238 §5.2). */
  lastStep: integer("last_step").notNull().default(0),
  /** Wrong codes since the last accepted one; at the threshold the key is locked until `locked_until`. */
  failedAttempts: integer("failed_attempts").notNull().default(0),
  lockedUntil: integer("locked_until"),
  createdAt: integer("created_at").notNull(),
});
