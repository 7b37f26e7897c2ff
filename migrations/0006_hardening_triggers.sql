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
