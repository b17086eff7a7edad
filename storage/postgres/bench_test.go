package postgres_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

// BenchmarkCommitBatch measures group commits of 50 sends of 2 envelopes
// each, with idempotency keys, to 10 devices, and reports envelopes per
// second.
func BenchmarkCommitBatch(b *testing.B) {
	const sends, perSend = 50, 2
	s := openStore(b, pgtest.DSN(b))
	var users []string
	for i := range 10 {
		users = append(users, fmt.Sprintf("user%d", i))
	}
	to := setUp(b, s, users...)
	ct := make([]byte, 256)
	now := time.Now()
	n := 0
	for b.Loop() {
		batch := &storage.Batch{}
		for j := range sends {
			op := send("DVSENDERSENDERSEND", fmt.Sprintf("%d-%d", n, j))
			for k := range perSend {
				d := to[(j+k)%len(to)]
				op.Envelopes = append(op.Envelopes, storage.NewEnvelope{
					ID: valise.NewEnvelopeID(now), Recipient: d.User, RecipientDevice: d.ID, Ciphertext: ct,
				})
			}
			batch.Sends = append(batch.Sends, op)
		}
		if _, err := s.CommitBatch(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*sends*perSend)/b.Elapsed().Seconds(), "envelopes/s")
}
