ALTER TABLE `admin_totp` ADD `failed_attempts` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `admin_totp` ADD `locked_until` integer;--> statement-breakpoint
ALTER TABLE `credentials` ADD `revision` integer DEFAULT 1 NOT NULL;