CREATE TABLE `credential_versions` (
	`credential_id` text NOT NULL,
	`tenant_id` text NOT NULL,
	`version` integer NOT NULL,
	`sealed_fields` text NOT NULL,
	`display_fields` text NOT NULL,
	`created_by` text NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`credential_id`, `version`)
);
--> statement-breakpoint
CREATE TABLE `credentials` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`service_id` text NOT NULL,
	`environment` text NOT NULL,
	`security_level` text NOT NULL,
	`name` text NOT NULL,
	`current_version` integer NOT NULL,
	`status` text NOT NULL,
	`deleted_at` integer,
	`last_test_status` text,
	`last_test_reason` text,
	`last_test_latency_ms` integer,
	`last_tested_at` integer,
	`provider_expires_at` integer,
	`provider_account` text,
	`created_by` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `credentials_tenant_idx` ON `credentials` (`tenant_id`,`created_at`,`id`);