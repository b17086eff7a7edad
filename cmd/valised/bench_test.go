package main

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// BenchmarkSendEnvelopes measures SendEnvelopes through the real wire (TLS
// on loopback) into a real node: 16 senders in parallel, each call carrying
// 10 envelopes of 1 KiB to 10 devices. It reports envelopes accepted
// durably per second; the group-commit writer is what makes concurrent
// senders share commits. The backend is VALISE_BENCH_BACKEND (default
// sqlite).
func BenchmarkSendEnvelopes(b *testing.B) {
	backend := os.Getenv("VALISE_BENCH_BACKEND")
	if backend == "" {
		backend = "sqlite"
	}
	n := startNode(b, backend, nil)
	var to []*device
	for i := range 10 {
		u := fmt.Sprintf("rcpt%d", i)
		n.createUser(b, u, "password-"+u)
		to = append(to, n.login(b, u, "password-"+u))
	}
	n.createUser(b, "sender", "sender-password")
	var senders []*device
	for range 16 {
		senders = append(senders, n.login(b, "sender", "sender-password"))
	}
	body := make([]byte, 1024)
	var next, calls atomic.Int64
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := senders[int(next.Add(1)-1)%len(senders)]
		for pb.Next() {
			k := calls.Add(1)
			req := &clientv1.SendEnvelopesRequest{IdempotencyKey: fmt.Sprint(k)}
			for _, r := range to {
				req.Envelopes = append(req.Envelopes, &clientv1.OutgoingEnvelope{RecipientUser: r.user, RecipientDeviceId: r.id, Ciphertext: body})
			}
			if _, err := d.c.SendEnvelopes(d.ctx(b.Context()), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(calls.Load()*int64(len(to)))/b.Elapsed().Seconds(), "envelopes/s")
}
