CREATE TABLE `api_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`name` text NOT NULL,
	`hash` text NOT NULL,
	`start` text NOT NULL,
	`last4` text NOT NULL,
	`environment` text NOT NULL,
	`security_level` text NOT NULL,
	`scopes` text NOT NULL,
	`enabled` integer DEFAULT true NOT NULL,
	`revoked_at` integer,
	`expires_at` integer,
	`ip_allowlist` text,
	`country_allowlist` text,
	`ratelimit_limit` integer,
	`ratelimit_window_ms` integer,
	`usage_limit` integer,
	`refill_amount` integer,
	`refill_interval_ms` integer,
	`limits_version` integer DEFAULT 1 NOT NULL,
	`metadata` text,
	`backup_of_id` text,
	`rotated_to_id` text,
	`rotated_from_id` text,
	`service_id` text,
	`created_by` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`last_used_at` integer,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_hash_idx` ON `api_keys` (`hash`);--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_rotated_from_idx` ON `api_keys` (`rotated_from_id`);--> statement-breakpoint
CREATE INDEX `api_keys_tenant_idx` ON `api_keys` (`tenant_id`,`created_at`,`id`);--> statement-breakpoint
CREATE TABLE `audit_log` (
	`tenant_id` text NOT NULL,
	`seq` integer NOT NULL,
	`at` integer NOT NULL,
	`actor_type` text NOT NULL,
	`actor_id` text NOT NULL,
	`action` text NOT NULL,
	`target_type` text NOT NULL,
	`target_id` text NOT NULL,
	`request_id` text NOT NULL,
	`detail` text NOT NULL,
	`prev_hash` text NOT NULL,
	`hash` text NOT NULL,
	PRIMARY KEY(`tenant_id`, `seq`)
);
--> statement-breakpoint
CREATE TABLE `data_keys` (
	`tenant_id` text NOT NULL,
	`version` integer NOT NULL,
	`kek_version` integer NOT NULL,
	`wrapped_key` text NOT NULL,
	`encryption_count` integer DEFAULT 0 NOT NULL,
	`status` text NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`tenant_id`, `version`),
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE TABLE `key_usage_daily` (
	`tenant_id` text NOT NULL,
	`key_id` text NOT NULL,
	`day` text NOT NULL,
	`valid` integer DEFAULT 0 NOT NULL,
	`invalid` integer DEFAULT 0 NOT NULL,
	PRIMARY KEY(`key_id`, `day`)
);
--> statement-breakpoint
CREATE TABLE `keyring` (
	`kek_version` integer PRIMARY KEY NOT NULL,
	`check_value` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `tenants` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`key_prefix` text NOT NULL,
	`created_at` integer NOT NULL
);
