package server

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/valise-im/valise"
)

// BenchmarkStreamPush measures the node's side of pushing committed
// envelopes to an open inbox stream: a send of 10 envelopes of 1 KiB to
// one device goes through the group-commit writer (over an in-memory
// store, so no database cost is counted) and the stream delivers them
// from memory. It reports ns and allocations per envelope pushed.
func BenchmarkStreamPush(b *testing.B) {
	store := &memInbox{}
	cfg := Config{Node: "localhost", Password: cheap}
	cfg.Limits.Send = Rate{Burst: 1 << 30, PerSecond: 1 << 30}
	n := NewNode(cfg, store, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	const perSend = 10
	delivered := make(chan uint64, 1)
	go n.StreamInbox(ctx, Caller{User: "bob", Device: devB}, 0, func(e valise.Envelope) error {
		if e.Cursor%perSend == 0 {
			delivered <- e.Cursor
		}
		return nil
	})
	envs := make([]OutgoingEnvelope, perSend)
	for i := range envs {
		envs[i] = OutgoingEnvelope{RecipientUser: "bob", RecipientDevice: string(devB), Ciphertext: make([]byte, 1024)}
	}
	alice := Caller{User: "alice", Device: devA}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := n.Send(ctx, alice, fmt.Sprint(i), envs); err != nil {
			b.Fatal(err)
		}
		<-delivered
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*perSend), "ns/envelope")
}
