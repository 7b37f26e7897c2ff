CREATE TABLE `key_changes` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`hash_prefix` text NOT NULL,
	`changed_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `key_changes_changed_at_idx` ON `key_changes` (`changed_at`);--> statement-breakpoint
-- The key change feed (docs/keys.md, "Caching and the propagation bound"). The database itself logs every change
-- that can make a cached verify answer wrong, in the statement that makes it, so no code path (the API, rotation,
-- import, erasure, a hand-written UPDATE) can forget it: a key created (its hash may be cached as unknown), a key
-- deleted, and an update of a column that a KeyRecord reads (src/keys/key-record.ts toKeyRecord) or that the key
-- is found by (hash). Stamping last_used_at or updated_at, or moving the rotation schedule, logs nothing, and
-- neither does an update that leaves those columns as they were. The prefix is the first 16 hex characters of
-- the SHA-256 that api_keys holds in full.
CREATE TRIGGER `api_keys_log_insert` AFTER INSERT ON `api_keys`
BEGIN
  INSERT INTO `key_changes` (`hash_prefix`, `changed_at`)
  VALUES (substr(new.`hash`, 1, 16), CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;--> statement-breakpoint
CREATE TRIGGER `api_keys_log_delete` AFTER DELETE ON `api_keys`
BEGIN
  INSERT INTO `key_changes` (`hash_prefix`, `changed_at`)
  VALUES (substr(old.`hash`, 1, 16), CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;--> statement-breakpoint
CREATE TRIGGER `api_keys_log_update` AFTER UPDATE OF `id`, `tenant_id`, `name`, `hash`, `environment`, `enabled`,
  `revoked_at`, `expires_at`, `scopes`, `ip_allowlist`, `country_allowlist`, `ratelimit_limit`, `ratelimit_window_ms`,
  `usage_limit`, `refill_amount`, `refill_interval_ms`, `limits_version`, `rotated_to_id`, `metadata` ON `api_keys`
WHEN new.`id` IS NOT old.`id` OR new.`tenant_id` IS NOT old.`tenant_id` OR new.`name` IS NOT old.`name`
  OR new.`hash` IS NOT old.`hash` OR new.`environment` IS NOT old.`environment` OR new.`enabled` IS NOT old.`enabled`
  OR new.`revoked_at` IS NOT old.`revoked_at` OR new.`expires_at` IS NOT old.`expires_at`
  OR new.`scopes` IS NOT old.`scopes` OR new.`ip_allowlist` IS NOT old.`ip_allowlist`
  OR new.`country_allowlist` IS NOT old.`country_allowlist` OR new.`ratelimit_limit` IS NOT old.`ratelimit_limit`
  OR new.`ratelimit_window_ms` IS NOT old.`ratelimit_window_ms` OR new.`usage_limit` IS NOT old.`usage_limit`
  OR new.`refill_amount` IS NOT old.`refill_amount` OR new.`refill_interval_ms` IS NOT old.`refill_interval_ms`
  OR new.`limits_version` IS NOT old.`limits_version` OR new.`rotated_to_id` IS NOT old.`rotated_to_id`
  OR new.`metadata` IS NOT old.`metadata`
BEGIN
  INSERT INTO `key_changes` (`hash_prefix`, `changed_at`)
  VALUES (substr(old.`hash`, 1, 16), CAST(unixepoch('subsec') * 1000 AS INTEGER));
  -- A new hash: a miss cached for it must go too.
  INSERT INTO `key_changes` (`hash_prefix`, `changed_at`)
  SELECT substr(new.`hash`, 1, 16), CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE new.`hash` IS NOT old.`hash`;
END;
