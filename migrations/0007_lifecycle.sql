CREATE TABLE `credential_rotations` (
	`credential_id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`method` text NOT NULL,
	`rotation_days` integer NOT NULL,
	`overlap_seconds` integer NOT NULL,
	`next_rotation_at` integer,
	`last_rotated_at` integer,
	`rotator_credential_id` text,
	`settings` text NOT NULL,
	`endpoint_url` text,
	`sealed_endpoint_secret` text,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `credential_rotations_next_idx` ON `credential_rotations` (`next_rotation_at`);--> statement-breakpoint
CREATE TABLE `events` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`kind` text NOT NULL,
	`severity` text NOT NULL,
	`subject_type` text NOT NULL,
	`subject_id` text NOT NULL,
	`dedupe_key` text NOT NULL,
	`detail` text NOT NULL,
	`at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `events_dedupe_idx` ON `events` (`dedupe_key`);--> statement-breakpoint
CREATE INDEX `events_tenant_idx` ON `events` (`tenant_id`,`at`,`id`);--> statement-breakpoint
CREATE TABLE `key_delivery_endpoints` (
	`tenant_id` text PRIMARY KEY NOT NULL,
	`url` text NOT NULL,
	`public_jwk` text NOT NULL,
	`sealed_signing_secret` text NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE TABLE `key_handoffs` (
	`key_id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`run_id` text NOT NULL,
	`method` text NOT NULL,
	`payload` text NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `key_handoffs_expiry_idx` ON `key_handoffs` (`method`,`expires_at`);--> statement-breakpoint
CREATE TABLE `rotation_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`subject_type` text NOT NULL,
	`subject_id` text NOT NULL,
	`trigger` text NOT NULL,
	`state` text NOT NULL,
	`step` text NOT NULL,
	`successor_id` text,
	`overlap_ends_at` integer,
	`error` text,
	`started_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`finished_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `rotation_runs_one_in_progress_idx` ON `rotation_runs` (`subject_id`) WHERE state = 'in_progress';--> statement-breakpoint
CREATE INDEX `rotation_runs_subject_idx` ON `rotation_runs` (`subject_id`,`started_at`);--> statement-breakpoint
CREATE INDEX `rotation_runs_overlap_idx` ON `rotation_runs` (`state`,`overlap_ends_at`);--> statement-breakpoint
CREATE INDEX `rotation_runs_step_idx` ON `rotation_runs` (`state`,`step`,`updated_at`);--> statement-breakpoint
ALTER TABLE `api_keys` ADD `rotation_days` integer;--> statement-breakpoint
ALTER TABLE `api_keys` ADD `rotation_overlap_seconds` integer DEFAULT 86400 NOT NULL;--> statement-breakpoint
ALTER TABLE `api_keys` ADD `next_rotation_at` integer;--> statement-breakpoint
ALTER TABLE `api_keys` ADD `last_rotated_at` integer;--> statement-breakpoint
CREATE INDEX `api_keys_next_rotation_idx` ON `api_keys` (`next_rotation_at`);--> statement-breakpoint
ALTER TABLE `credential_versions` ADD `stage` text;--> statement-breakpoint
ALTER TABLE `credential_versions` ADD `provider_key_id` text;--> statement-breakpoint
CREATE UNIQUE INDEX `credential_versions_stage_idx` ON `credential_versions` (`credential_id`,`stage`) WHERE stage IS NOT NULL;--> statement-breakpoint
ALTER TABLE `credentials` ADD `next_test_at` integer;--> statement-breakpoint
CREATE INDEX `credentials_next_test_idx` ON `credentials` (`next_test_at`);--> statement-breakpoint
-- Existing versions get their stage labels: the current one, and the one before it as previous.
UPDATE `credential_versions` SET `stage` = 'current'
  WHERE `version` = (SELECT `current_version` FROM `credentials` c WHERE c.`id` = `credential_versions`.`credential_id`);--> statement-breakpoint
UPDATE `credential_versions` SET `stage` = 'previous'
  WHERE `version` = (
    SELECT max(v.`version`) FROM `credential_versions` v JOIN `credentials` c ON c.`id` = v.`credential_id`
    WHERE v.`credential_id` = `credential_versions`.`credential_id` AND v.`version` < c.`current_version`
  );--> statement-breakpoint
-- Keys whose expiry was their tenant's rotation period (the wizard and seed set it so until now) get that
-- period as a rotation schedule instead, and no expiry: a rotation policy is not a kill date.
UPDATE `api_keys` SET
    `rotation_days` = (SELECT p.`rotation_days` FROM `security_policies` p WHERE p.`tenant_id` = `api_keys`.`tenant_id`),
    `next_rotation_at` = `expires_at`,
    `expires_at` = NULL
  WHERE `revoked_at` IS NULL AND `rotated_to_id` IS NULL AND `expires_at` IS NOT NULL
    AND EXISTS (
      SELECT 1 FROM `security_policies` p
      WHERE p.`tenant_id` = `api_keys`.`tenant_id` AND p.`rotation_days` IS NOT NULL
        AND abs(`api_keys`.`expires_at` - `api_keys`.`created_at` - p.`rotation_days` * 86400000) < 60000
    );--> statement-breakpoint
-- Every stored credential is re-tested live within a day of this migration.
UPDATE `credentials` SET `next_test_at` = `updated_at` + 86400000 WHERE `status` = 'active';
