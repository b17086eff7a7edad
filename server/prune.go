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

// runPruner prunes expired idempotency and federation records at once and
// then every interval, until ctx ends.
func (n *Node) runPruner(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		n.pruneIdempotency(ctx)
		n.pruneFederation(ctx)
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

// pruneFederation deletes the records of envelopes and transactions peers
// delivered, and the dead letters, older than cfg.FederationRetention. A
// failure is logged, not returned: the next pass tries again.
func (n *Node) pruneFederation(ctx context.Context) {
	before := n.now().Add(-n.cfg.FederationRetention)
	pctx, cancel := context.WithTimeout(ctx, pruneTimeout)
	defer cancel()
	start := time.Now()
	deleted, err := n.store.PruneFederation(pctx, before)
	switch {
	case err != nil && ctx.Err() != nil:
	case err != nil:
		n.log.WarnContext(ctx, "federation record pruning failed", "error", err, "deleted", deleted, "before", before)
	default:
		n.log.InfoContext(ctx, "federation records pruned", "deleted", deleted, "before", before,
			"duration", time.Since(start))
	}
}
