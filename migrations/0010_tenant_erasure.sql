CREATE TABLE `tenant_erasures` (
	`tenant_id` text PRIMARY KEY NOT NULL,
	`id` text NOT NULL,
	`state` text NOT NULL,
	`step` text NOT NULL,
	`requested_at` integer NOT NULL,
	`dek_destroyed_at` integer,
	`data_keys_destroyed` integer DEFAULT 0 NOT NULL,
	`rows_deleted_at` integer,
	`completed_at` integer,
	`rows_deleted` text NOT NULL,
	`objects_cleared` text NOT NULL,
	`audit_head_seq` integer,
	`audit_head_hash` text,
	`receipt_mac` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `tenant_erasures_id_idx` ON `tenant_erasures` (`id`);--> statement-breakpoint
CREATE INDEX `key_baselines_tenant_idx` ON `key_baselines` (`tenant_id`);--> statement-breakpoint
CREATE INDEX `key_origins_tenant_idx` ON `key_origins` (`tenant_id`);--> statement-breakpoint
CREATE INDEX `rotation_runs_tenant_idx` ON `rotation_runs` (`tenant_id`);--> statement-breakpoint
CREATE INDEX `wizard_commits_tenant_idx` ON `wizard_commits` (`tenant_id`);--> statement-breakpoint
-- An erasure is never undone: its row is never deleted, and its identity, request time and the moment its
-- DEKs were destroyed never change once set (docs/erasure.md).
CREATE TRIGGER `tenant_erasures_no_delete` BEFORE DELETE ON `tenant_erasures`
BEGIN
  SELECT RAISE(ABORT, 'a tenant erasure is never undone');
END;--> statement-breakpoint
CREATE TRIGGER `tenant_erasures_permanent` BEFORE UPDATE ON `tenant_erasures`
WHEN new.`tenant_id` != old.`tenant_id` OR new.`id` != old.`id` OR new.`requested_at` != old.`requested_at`
  OR (old.`dek_destroyed_at` IS NOT NULL AND new.`dek_destroyed_at` IS NOT old.`dek_destroyed_at`)
BEGIN
  SELECT RAISE(ABORT, 'a tenant erasure is never undone');
END;--> statement-breakpoint
-- Crypto-shredding stays final: no data key is ever created again for a tenant being erased (a rotation that
-- raced the erasure aborts), and none of its keys is created or enabled again.
CREATE TRIGGER `data_keys_none_while_erasing` BEFORE INSERT ON `data_keys`
WHEN EXISTS (SELECT 1 FROM `tenant_erasures` WHERE `tenant_id` = new.`tenant_id`)
BEGIN
  SELECT RAISE(ABORT, 'data_keys: the tenant is being erased');
END;--> statement-breakpoint
CREATE TRIGGER `api_keys_none_while_erasing` BEFORE INSERT ON `api_keys`
WHEN EXISTS (SELECT 1 FROM `tenant_erasures` WHERE `tenant_id` = new.`tenant_id`)
BEGIN
  SELECT RAISE(ABORT, 'api_keys: the tenant is being erased');
END;--> statement-breakpoint
CREATE TRIGGER `api_keys_stay_disabled_while_erasing` BEFORE UPDATE OF `enabled` ON `api_keys`
WHEN new.`enabled` = 1 AND EXISTS (SELECT 1 FROM `tenant_erasures` WHERE `tenant_id` = old.`tenant_id`)
BEGIN
  SELECT RAISE(ABORT, 'api_keys: the tenant is being erased');
END;--> statement-breakpoint
-- Migration 0006's rule "a tenant always keeps a working admin key" yields to an erasure, and to nothing else:
-- the erasure disables every key of the tenant in the batch that records it, then deletes them.
DROP TRIGGER `api_keys_keep_working_admin_on_update`;--> statement-breakpoint
CREATE TRIGGER `api_keys_keep_working_admin_on_update` BEFORE UPDATE OF `enabled`, `revoked_at`, `expires_at`, `scopes` ON `api_keys`
WHEN OLD.id IN (SELECT id FROM working_admin_keys)
  AND NOT (
    NEW.enabled = 1 AND NEW.revoked_at IS NULL
    AND (NEW.expires_at IS NULL OR NEW.expires_at > unixepoch('subsec') * 1000)
    AND EXISTS (SELECT 1 FROM json_each(NEW.scopes) WHERE value = 'admin')
  )
  AND NOT EXISTS (SELECT 1 FROM working_admin_keys WHERE tenant_id = OLD.tenant_id AND id != OLD.id)
  AND NOT EXISTS (SELECT 1 FROM `tenant_erasures` WHERE `tenant_id` = OLD.tenant_id)
BEGIN
  SELECT RAISE(ABORT, 'api_keys: the last working admin key must remain');
END;--> statement-breakpoint
DROP TRIGGER `api_keys_keep_working_admin_on_delete`;--> statement-breakpoint
CREATE TRIGGER `api_keys_keep_working_admin_on_delete` BEFORE DELETE ON `api_keys`
WHEN OLD.id IN (SELECT id FROM working_admin_keys)
  AND NOT EXISTS (SELECT 1 FROM working_admin_keys WHERE tenant_id = OLD.tenant_id AND id != OLD.id)
  AND NOT EXISTS (SELECT 1 FROM `tenant_erasures` WHERE `tenant_id` = OLD.tenant_id)
BEGIN
  SELECT RAISE(ABORT, 'api_keys: the last working admin key must remain');
END;--> statement-breakpoint
-- The audit log stays append-only above the retention horizon for every tenant, except one whose erasure has
-- already destroyed its DEKs: only then may its rows, and its horizon, be deleted. Other tenants' rows keep the
-- protection of migration 0009 unchanged; no row may ever be updated (audit_log_no_update stays).
DROP TRIGGER `audit_log_delete_below_horizon`;--> statement-breakpoint
CREATE TRIGGER `audit_log_delete_below_horizon` BEFORE DELETE ON `audit_log`
WHEN old.`seq` >= coalesce((SELECT `first_seq` FROM `audit_horizons` WHERE `tenant_id` = old.`tenant_id`), 0)
  AND NOT EXISTS (
    SELECT 1 FROM `tenant_erasures` WHERE `tenant_id` = old.`tenant_id` AND `dek_destroyed_at` IS NOT NULL
  )
BEGIN
  SELECT RAISE(ABORT, 'audit_log is append-only above the retention horizon');
END;--> statement-breakpoint
DROP TRIGGER `audit_horizons_no_delete`;--> statement-breakpoint
CREATE TRIGGER `audit_horizons_no_delete` BEFORE DELETE ON `audit_horizons`
WHEN NOT EXISTS (
  SELECT 1 FROM `tenant_erasures` WHERE `tenant_id` = old.`tenant_id` AND `dek_destroyed_at` IS NOT NULL
)
BEGIN
  SELECT RAISE(ABORT, 'the audit retention horizon only moves forward');
END;
