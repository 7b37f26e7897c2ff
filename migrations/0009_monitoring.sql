CREATE TABLE `alert_deliveries` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`alert_id` text NOT NULL,
	`channel_id` text NOT NULL,
	`transition` text NOT NULL,
	`state` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`last_status` integer,
	`last_error` text,
	`latency_ms` integer,
	`created_at` integer NOT NULL,
	`enqueued_at` integer,
	`updated_at` integer NOT NULL,
	`delivered_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `alert_deliveries_once_idx` ON `alert_deliveries` (`alert_id`,`channel_id`,`transition`);--> statement-breakpoint
CREATE INDEX `alert_deliveries_channel_idx` ON `alert_deliveries` (`tenant_id`,`channel_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `alert_deliveries_outbox_idx` ON `alert_deliveries` (`state`,`enqueued_at`);--> statement-breakpoint
CREATE TABLE `alerts` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`rule_id` text NOT NULL,
	`kind` text NOT NULL,
	`severity` text NOT NULL,
	`state` text NOT NULL,
	`subject_type` text NOT NULL,
	`subject_id` text NOT NULL,
	`fingerprint` text NOT NULL,
	`summary` text NOT NULL,
	`detail` text NOT NULL,
	`fired_at` integer NOT NULL,
	`last_seen_at` integer NOT NULL,
	`acknowledged_at` integer,
	`acknowledged_by` text,
	`resolved_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `alerts_open_idx` ON `alerts` (`tenant_id`,`fingerprint`) WHERE state != 'resolved';--> statement-breakpoint
CREATE INDEX `alerts_tenant_idx` ON `alerts` (`tenant_id`,`state`,`fired_at`,`id`);--> statement-breakpoint
CREATE INDEX `alerts_fingerprint_idx` ON `alerts` (`tenant_id`,`fingerprint`,`resolved_at`);--> statement-breakpoint
CREATE TABLE `key_baselines` (
	`tenant_id` text NOT NULL,
	`key_id` text NOT NULL,
	`hour_of_week` integer NOT NULL,
	`samples` integer NOT NULL,
	`volume_mean` real NOT NULL,
	`volume_var` real NOT NULL,
	`failure_mean` real NOT NULL,
	`failure_var` real NOT NULL,
	`last_hour` integer NOT NULL,
	PRIMARY KEY(`key_id`, `hour_of_week`)
);
--> statement-breakpoint
CREATE TABLE `key_origins` (
	`tenant_id` text NOT NULL,
	`key_id` text NOT NULL,
	`kind` text NOT NULL,
	`value` text NOT NULL,
	`first_seen_at` integer NOT NULL,
	`last_seen_at` integer NOT NULL,
	PRIMARY KEY(`key_id`, `kind`, `value`)
);
--> statement-breakpoint
CREATE INDEX `key_origins_first_seen_idx` ON `key_origins` (`first_seen_at`);--> statement-breakpoint
CREATE TABLE `usage_counts` (
	`tenant_id` text NOT NULL,
	`key_id` text NOT NULL,
	`service_id` text,
	`bucket` text NOT NULL,
	`start` integer NOT NULL,
	`valid` integer DEFAULT 0 NOT NULL,
	`invalid` integer DEFAULT 0 NOT NULL,
	`invalid_format` integer DEFAULT 0 NOT NULL,
	`not_found` integer DEFAULT 0 NOT NULL,
	`disabled` integer DEFAULT 0 NOT NULL,
	`expired` integer DEFAULT 0 NOT NULL,
	`forbidden` integer DEFAULT 0 NOT NULL,
	`insufficient_scopes` integer DEFAULT 0 NOT NULL,
	`rate_limited` integer DEFAULT 0 NOT NULL,
	`usage_exceeded` integer DEFAULT 0 NOT NULL,
	`auth_failed` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`tenant_id`, `key_id`, `bucket`, `start`)
);
--> statement-breakpoint
CREATE INDEX `usage_counts_period_idx` ON `usage_counts` (`bucket`,`start`);--> statement-breakpoint
CREATE INDEX `usage_counts_tenant_idx` ON `usage_counts` (`tenant_id`,`bucket`,`start`);--> statement-breakpoint
-- Daily history carries over; before this migration failures were not broken down by code.
INSERT INTO `usage_counts` (`tenant_id`, `key_id`, `service_id`, `bucket`, `start`, `valid`, `invalid`)
SELECT d.`tenant_id`, d.`key_id`, k.`service_id`, 'day', CAST(strftime('%s', d.`day`) AS INTEGER) * 1000, d.`valid`, d.`invalid`
FROM `key_usage_daily` d LEFT JOIN `api_keys` k ON k.`id` = d.`key_id`;--> statement-breakpoint
DROP TABLE `key_usage_daily`;--> statement-breakpoint
DROP INDEX `alert_channels_tenant_idx`;--> statement-breakpoint
ALTER TABLE `alert_channels` ADD `health` text DEFAULT 'healthy' NOT NULL;--> statement-breakpoint
ALTER TABLE `alert_channels` ADD `consecutive_failures` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `alert_channels` ADD `last_delivery_at` integer;--> statement-breakpoint
ALTER TABLE `alert_channels` ADD `last_error` text;--> statement-breakpoint
ALTER TABLE `alert_channels` ADD `updated_at` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
-- Each wizard commit used to append a copy of every channel: later copies get a distinct name.
UPDATE `alert_channels` SET `name` = substr(`name`, 1, 40) || ' (' || `id` || ')'
WHERE rowid NOT IN (SELECT min(rowid) FROM `alert_channels` GROUP BY `tenant_id`, `name`);--> statement-breakpoint
UPDATE `alert_channels` SET `updated_at` = `created_at`;--> statement-breakpoint
CREATE UNIQUE INDEX `alert_channels_name_idx` ON `alert_channels` (`tenant_id`,`name`);--> statement-breakpoint
DROP INDEX `alert_rules_tenant_idx`;--> statement-breakpoint
ALTER TABLE `alert_rules` ADD `name` text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE `alert_rules` ADD `severity` text DEFAULT 'warning' NOT NULL;--> statement-breakpoint
ALTER TABLE `alert_rules` ADD `cooldown_seconds` integer DEFAULT 3600 NOT NULL;--> statement-breakpoint
ALTER TABLE `alert_rules` ADD `enabled` integer DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE `alert_rules` ADD `updated_at` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
UPDATE `alert_rules` SET `name` = `kind`, `updated_at` = `created_at`;--> statement-breakpoint
-- An expiry rule now reminds on a list of days.
UPDATE `alert_rules` SET `settings` = json_set(`settings`, '$.days_before', json_array(json_extract(`settings`, '$.days_before')))
WHERE `kind` = 'expiry_warning' AND json_type(`settings`, '$.days_before') = 'integer';--> statement-breakpoint
CREATE INDEX `alert_rules_tenant_idx` ON `alert_rules` (`tenant_id`,`kind`);--> statement-breakpoint
-- Rule names are unique per tenant: a second rule of the same kind is named after its id.
UPDATE `alert_rules` SET `name` = `name` || ' (' || `id` || ')'
WHERE rowid NOT IN (SELECT min(rowid) FROM `alert_rules` GROUP BY `tenant_id`, `name`);--> statement-breakpoint
CREATE UNIQUE INDEX `alert_rules_name_idx` ON `alert_rules` (`tenant_id`,`name`);--> statement-breakpoint
CREATE INDEX `api_keys_expiry_idx` ON `api_keys` (`expires_at`) WHERE expires_at IS NOT NULL;--> statement-breakpoint
CREATE INDEX `credentials_provider_expiry_idx` ON `credentials` (`provider_expires_at`) WHERE provider_expires_at IS NOT NULL;--> statement-breakpoint
CREATE INDEX `credentials_failing_idx` ON `credentials` (`tenant_id`,`id`) WHERE last_test_status = 'invalid';--> statement-breakpoint
ALTER TABLE `events` ADD `alerted_at` integer;--> statement-breakpoint
-- Events older than a day happened before alerting existed: they are history, not news.
UPDATE `events` SET `alerted_at` = `at` WHERE `at` < (CAST(strftime('%s', 'now') AS INTEGER) - 86400) * 1000;--> statement-breakpoint
CREATE INDEX `events_unalerted_idx` ON `events` (`at`) WHERE alerted_at IS NULL;--> statement-breakpoint
CREATE TABLE `audit_horizons` (
	`tenant_id` text PRIMARY KEY NOT NULL,
	`first_seq` integer NOT NULL,
	`prev_hash` text NOT NULL,
	`moved_at` integer NOT NULL
);--> statement-breakpoint
-- Retention may delete audit rows below the tenant's horizon and nothing else; the horizon only moves forward.
DROP TRIGGER `audit_log_no_delete`;--> statement-breakpoint
CREATE TRIGGER `audit_log_delete_below_horizon` BEFORE DELETE ON `audit_log`
WHEN old.`seq` >= coalesce((SELECT `first_seq` FROM `audit_horizons` WHERE `tenant_id` = old.`tenant_id`), 0)
BEGIN
  SELECT RAISE(ABORT, 'audit_log is append-only above the retention horizon');
END;--> statement-breakpoint
CREATE TRIGGER `audit_horizons_forward_only` BEFORE UPDATE ON `audit_horizons`
WHEN new.`first_seq` < old.`first_seq` OR new.`tenant_id` != old.`tenant_id`
BEGIN
  SELECT RAISE(ABORT, 'the audit retention horizon only moves forward');
END;--> statement-breakpoint
CREATE TRIGGER `audit_horizons_no_delete` BEFORE DELETE ON `audit_horizons`
BEGIN
  SELECT RAISE(ABORT, 'the audit retention horizon only moves forward');
END;