package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// pruneChunk bounds the idempotency records one pruning transaction
// deletes, so that pruning a large backlog never holds the single writer
// for long.
const pruneChunk = 10000

// PruneIdempotency deletes idempotency records created before before, in
// transactions of at most pruneChunk rows, and returns how many it
// deleted. See storage.Inboxes.
func (s *Store) PruneIdempotency(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.write(ctx, "prune idempotency", func(tx *sql.Tx) error {
			r, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE rowid IN
				(SELECT rowid FROM idempotency WHERE created_at < ? LIMIT ?)`, toDB(before), pruneChunk)
			if err != nil {
				return err
			}
			n, err = r.RowsAffected()
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < pruneChunk {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("sqlite: prune idempotency: %w", err)
		}
	}
}
