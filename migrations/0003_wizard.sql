CREATE TABLE `alert_channels` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`kind` text NOT NULL,
	`name` text NOT NULL,
	`config` text NOT NULL,
	`sealed_secrets` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `alert_channels_tenant_idx` ON `alert_channels` (`tenant_id`);--> statement-breakpoint
CREATE TABLE `alert_rules` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`kind` text NOT NULL,
	`service_id` text,
	`settings` text NOT NULL,
	`channel_ids` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `alert_rules_tenant_idx` ON `alert_rules` (`tenant_id`);--> statement-breakpoint
CREATE TABLE `security_policies` (
	`tenant_id` text PRIMARY KEY NOT NULL,
	`security_level` text NOT NULL,
	`environment` text NOT NULL,
	`rotation_policy` text NOT NULL,
	`rotation_days` integer,
	`ip_allowlist` text NOT NULL,
	`country_allowlist` text NOT NULL,
	`require_2fa` integer NOT NULL,
	`compliance` text NOT NULL,
	`wizard_id` text NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE TABLE `wizard_commits` (
	`wizard_id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`summary` text NOT NULL,
	`committed_at` integer NOT NULL
);
