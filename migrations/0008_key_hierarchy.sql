CREATE TABLE `system_keys` (
	`purpose` text PRIMARY KEY NOT NULL,
	`kek_provider` text NOT NULL,
	`kek_version` integer NOT NULL,
	`wrapped_key` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `admin_totp` ADD `dek_version` integer NOT NULL DEFAULT 1;--> statement-breakpoint
CREATE INDEX `admin_totp_dek_idx` ON `admin_totp` (`tenant_id`,`dek_version`);--> statement-breakpoint
ALTER TABLE `alert_channels` ADD `dek_version` integer NOT NULL DEFAULT 1;--> statement-breakpoint
CREATE INDEX `alert_channels_dek_idx` ON `alert_channels` (`tenant_id`,`dek_version`);--> statement-breakpoint
ALTER TABLE `credential_rotations` ADD `dek_version` integer;--> statement-breakpoint
CREATE INDEX `credential_rotations_dek_idx` ON `credential_rotations` (`tenant_id`,`dek_version`);--> statement-breakpoint
ALTER TABLE `credential_versions` ADD `dek_version` integer NOT NULL DEFAULT 1;--> statement-breakpoint
CREATE INDEX `credential_versions_dek_idx` ON `credential_versions` (`tenant_id`,`dek_version`);--> statement-breakpoint
ALTER TABLE `data_keys` ADD `kek_provider` text NOT NULL DEFAULT 'master';--> statement-breakpoint
ALTER TABLE `data_keys` ADD `next_rotation_at` integer;--> statement-breakpoint
ALTER TABLE `data_keys` ADD `retire_after` integer;--> statement-breakpoint
CREATE INDEX `data_keys_next_rotation_idx` ON `data_keys` (`next_rotation_at`);--> statement-breakpoint
CREATE INDEX `data_keys_kek_idx` ON `data_keys` (`kek_provider`,`kek_version`);--> statement-breakpoint
ALTER TABLE `key_delivery_endpoints` ADD `dek_version` integer NOT NULL DEFAULT 1;--> statement-breakpoint
ALTER TABLE `key_handoffs` ADD `dek_version` integer;--> statement-breakpoint
CREATE INDEX `key_handoffs_dek_idx` ON `key_handoffs` (`tenant_id`,`dek_version`);--> statement-breakpoint
-- Hand-written data conversion. Before this migration every tenant had exactly one DEK, version 1, under a
-- master KEK, so every sealed row above is under DEK 1 (the DEFAULTs) except rows that hold no ciphertext.
-- The schema declares these columns without defaults, so every new row must name its DEK.
UPDATE `key_handoffs` SET `dek_version` = NULL WHERE `method` <> 'pickup';--> statement-breakpoint
UPDATE `key_handoffs` SET `dek_version` = 1 WHERE `method` = 'pickup';--> statement-breakpoint
UPDATE `credential_rotations` SET `dek_version` = 1 WHERE `sealed_endpoint_secret` IS NOT NULL;--> statement-breakpoint
-- Active DEKs join the 90-day schedule (src/vault/data-keys.ts DEK_ROTATION_DAYS) from their creation. Those
-- already older than that are spread at random over the next 90 days instead of all rotating on the first tick.
UPDATE `data_keys` SET `next_rotation_at` = CASE
    WHEN `created_at` + 7776000000 > CAST(strftime('%s', 'now') AS INTEGER) * 1000 THEN `created_at` + 7776000000
    ELSE CAST(strftime('%s', 'now') AS INTEGER) * 1000 + abs(random() % 7776000000) END
  WHERE `status` = 'active';
