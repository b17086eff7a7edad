package server

import (
	"context"
	"time"
)

const (
	// pruneInterval is how often Run prunes expired idempotency records.
	pruneInterval = time.Hour
	// pruneTimeout bounds one pruning pass.
	pruneTimeout = 10 * time.Minute
)

// runPruner prunes expired idempotency records at once and then
// every interval, until ctx ends.
func (n *Node) runPruner(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		n.pruneIdempotency(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pruneIdempotency deletes the idempotency records older than
// cfg.IdempotencyRetention. A failure is logged, not returned: the next
// pass tries again, and a record kept too long only lets a late retry be
// answered as a replay.
func (n *Node) pruneIdempotency(ctx context.Context) {
	before := n.now().Add(-n.cfg.IdempotencyRetention)
	pctx, cancel := context.WithTimeout(ctx, pruneTimeout)
	defer cancel()
	start := time.Now()
	deleted, err := n.store.PruneIdempotency(pctx, before)
	switch {
	case err != nil && ctx.Err() != nil:
		// The node is stopping; the next start prunes again.
	case err != nil:
		n.log.WarnContext(ctx, "idempotency pruning failed", "error", err, "deleted", deleted, "before", before)
	default:
		n.log.InfoContext(ctx, "idempotency records pruned", "deleted", deleted, "before", before,
			"duration", time.Since(start))
	}
}
