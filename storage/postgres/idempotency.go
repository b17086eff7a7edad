package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise/storage"
)

// pruneChunk bounds the idempotency records one pruning transaction
// deletes, so that pruning a large backlog holds no long transaction.
const pruneChunk = 10000

// pruneIdempotency deletes one chunk of old records. SKIP LOCKED lets
// replicas prune at once without waiting for one another.
const pruneIdempotency = `DELETE FROM idempotency_keys k USING (
		SELECT sender_node, sender_localpart, sender_device, idempotency_key FROM idempotency_keys
		WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED) old
	WHERE k.sender_node = old.sender_node AND k.sender_localpart = old.sender_localpart
		AND k.sender_device = old.sender_device AND k.idempotency_key = old.idempotency_key`

// PruneIdempotency deletes idempotency records created before before, in
// transactions of at most pruneChunk rows, and returns how many it
// deleted. See storage.Inboxes.
func (s *Store) PruneIdempotency(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.inTx(ctx, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, pruneIdempotency, dbTime(before), pruneChunk)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("postgres: prune idempotency: %w", err)
		}
		total += n
		if n < pruneChunk {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("postgres: prune idempotency: %w", err)
		}
	}
}

// recordTime is when the idempotency record of op is created: its
// ServerTime, or now if that is zero.
func recordTime(op *storage.SendOp, now time.Time) time.Time {
	if op.ServerTime.IsZero() {
		return now
	}
	return dbTime(op.ServerTime)
}
