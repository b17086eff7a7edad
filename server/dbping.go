package server

import (
	"context"
	"time"
)

const (
	// pingInterval is how often Run pings the database for the
	// valise_storage_ping_seconds and valise_storage_up metrics and
	// Config.DatabaseUp.
	pingInterval = 10 * time.Second
	// pingTimeout bounds one ping; a ping that takes longer counts as down.
	pingTimeout = 5 * time.Second
)

// runPinger pings the database at once and then every interval, until ctx
// ends, recording the latency and whether it answered, and telling
// Config.DatabaseUp. A change between answering and not is logged once,
// not every failed ping.
func (n *Node) runPinger(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	up := true
	for {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		start := time.Now()
		err := n.store.Ping(pctx)
		d := time.Since(start)
		cancel()
		if ctx.Err() != nil {
			return
		}
		n.metrics.observePing(d, err)
		if n.cfg.DatabaseUp != nil {
			n.cfg.DatabaseUp(err == nil)
		}
		switch {
		case err != nil && up:
			n.log.ErrorContext(ctx, "database not answering", "error", err, "duration", d)
		case err == nil && !up:
			n.log.InfoContext(ctx, "database answering again", "duration", d)
		}
		up = err == nil
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
