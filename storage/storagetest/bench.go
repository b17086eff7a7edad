package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// BenchCommitBatch measures group commits of 50 sends of 2 envelopes each
// (256-byte ciphertexts, idempotency keys) to 10 devices on s, and reports
// envelopes per second. Backends call it from a Benchmark function so both
// report the same figure.
func BenchCommitBatch(b *testing.B, s storage.Store) {
	const sends, perSend, devices = 50, 2, 10
	var to []storage.Device
	for i := range devices {
		u := fmt.Sprintf("user%d", i)
		if err := s.CreateUser(b.Context(), storage.User{Localpart: u, PasswordHash: "h", Active: true}, nil); err != nil {
			b.Fatalf("CreateUser: %v", err)
		}
		d := storage.Device{User: u, ID: valise.NewDeviceID()}
		if err := s.CreateDevice(b.Context(), d, fmt.Appendf(nil, "token-%d", i)); err != nil {
			b.Fatalf("CreateDevice: %v", err)
		}
		to = append(to, d)
	}
	ct := make([]byte, 256)
	now := time.Now()
	sender := valise.UserID{Localpart: "carol", Node: "ministry-b.example"}
	n := 0
	for b.Loop() {
		batch := &storage.Batch{}
		for j := range sends {
			op := storage.SendOp{Sender: sender, SenderDevice: "DVSENDERSENDERSEND", IdempotencyKey: fmt.Sprintf("%d-%d", n, j), ServerTime: now}
			for k := range perSend {
				d := to[(j+k)%len(to)]
				op.Envelopes = append(op.Envelopes, storage.NewEnvelope{ID: valise.NewEnvelopeID(now), Recipient: d.User, RecipientDevice: d.ID, Ciphertext: ct})
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
