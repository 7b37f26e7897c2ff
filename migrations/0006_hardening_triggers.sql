-- Compare-and-set for credential writes: a client's If-Match names a revision, and the write sets it to
-- exactly that revision + 1. A concurrent writer that got there first makes OLD.revision already equal to
-- the value being set, so the whole D1 batch (with its audit row) aborts and the caller answers 412.
CREATE TRIGGER credentials_revision_cas BEFORE UPDATE OF revision ON credentials
WHEN NEW.revision != OLD.revision + 1
BEGIN
  SELECT RAISE(ABORT, 'credentials.revision compare-and-set failed');
END;
--> statement-breakpoint
-- A rotation successor may only be born of a live key: a rotation racing a revocation, a disable or a
-- delete of its source aborts as a whole instead of leaving a live successor of a dead key.
CREATE TRIGGER api_keys_successor_of_live_key BEFORE INSERT ON api_keys
WHEN NEW.rotated_from_id IS NOT NULL AND NOT EXISTS (
  SELECT 1 FROM api_keys WHERE id = NEW.rotated_from_id AND revoked_at IS NULL AND enabled = 1
)
BEGIN
  SELECT RAISE(ABORT, 'api_keys.rotated_from_id source is not live');
END;
--> statement-breakpoint
-- A tenant always keeps a working admin key (enabled, not revoked, not expired, holding `admin`): a change
-- that would leave it none aborts its whole batch, audit row included. The rule lives here, at the one place
-- every writer passes, because a check read before the batch would race (two admins each revoking one of the
-- last two admin keys would both pass it). A rotation inserts its successor first, so rotating the last
-- admin key is allowed.
CREATE VIEW working_admin_keys AS
SELECT id, tenant_id FROM api_keys
WHERE enabled = 1 AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > unixepoch('subsec') * 1000)
  AND EXISTS (SELECT 1 FROM json_each(api_keys.scopes) WHERE value = 'admin');
--> statement-breakpoint
CREATE TRIGGER api_keys_keep_working_admin_on_update BEFORE UPDATE OF enabled, revoked_at, expires_at, scopes ON api_keys
WHEN OLD.id IN (SELECT id FROM working_admin_keys)
  AND NOT (
    NEW.enabled = 1 AND NEW.revoked_at IS NULL
    AND (NEW.expires_at IS NULL OR NEW.expires_at > unixepoch('subsec') * 1000)
    AND EXISTS (SELECT 1 FROM json_each(NEW.scopes) WHERE value = 'admin')
  )
  AND NOT EXISTS (SELECT 1 FROM working_admin_keys WHERE tenant_id = OLD.tenant_id AND id != OLD.id)
BEGIN
  SELECT RAISE(ABORT, 'api_keys: the last working admin key must remain');
END;
--> statement-breakpoint
CREATE TRIGGER api_keys_keep_working_admin_on_delete BEFORE DELETE ON api_keys
WHEN OLD.id IN (SELECT id FROM working_admin_keys)
  AND NOT EXISTS (SELECT 1 FROM working_admin_keys WHERE tenant_id = OLD.tenant_id AND id != OLD.id)
BEGIN
  SELECT RAISE(ABORT, 'api_keys: the last working admin key must remain');
END;
