-- 0002_idempotency_created_at: idempotency records expire
-- (storage.Inboxes.PruneIdempotency deletes those created before a cutoff);
-- this index finds them without scanning the table.
CREATE INDEX idempotency_created_at ON idempotency (created_at);
