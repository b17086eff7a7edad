package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valise-im/valise/internal/config"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// BenchmarkSendEnvelopes measures SendEnvelopes through the real wire (TLS
// on loopback) into a real node: 16 senders in parallel, each call carrying
// 10 envelopes of 1 KiB to 10 devices. It reports envelopes accepted
// durably per second; the group-commit writer is what makes concurrent
// senders share commits. The backend is VALISE_BENCH_BACKEND (default
// sqlite).
func BenchmarkSendEnvelopes(b *testing.B) {
	n := startNode(b, benchBackend(), benchTweak)
	senders, rcpts := benchDevices(b, n, n)
	var sent atomic.Int64
	b.ResetTimer()
	benchSend(b, senders, rcpts, &sent)
	b.ReportMetric(float64(sent.Load()*int64(len(rcpts)))/b.Elapsed().Seconds(), "envelopes/s")
}

// BenchmarkDeliver measures delivery end to end through the real wire:
// 16 senders in parallel call SendEnvelopes with one 1 KiB envelope for
// each of 10 receiving devices, and each receiver reads its open
// StreamInbox and acknowledges every 100 envelopes. The clock stops when
// every receiver has read every envelope sent to it; it reports envelopes
// delivered per second. The backend is VALISE_BENCH_BACKEND (default
// sqlite).
//
//	go test -run XXX -bench 'Deliver$' -benchtime 3s -count 5 ./cmd/valised
func BenchmarkDeliver(b *testing.B) {
	n := startNode(b, benchBackend(), benchTweak)
	benchDeliver(b, n, n)
}

// BenchmarkDeliverFederated is BenchmarkDeliver with the senders on node
// a.example and the receivers on b.example: every envelope crosses the
// federation (a's outbox, a DeliverTransaction over mTLS, b's commit).
// It also reports the envelopes per transaction.
//
//	go test -run XXX -bench DeliverFederated -benchtime 3s -count 5 ./cmd/valised
func BenchmarkDeliverFederated(b *testing.B) {
	backend := benchBackend()
	from := startFedNode(b, backend, "a.example", benchTweak)
	to := startFedNode(b, backend, "b.example", benchTweak)
	peerAll(b, from, to)
	benchDeliver(b, from, to)
	if tx := from.metric(b, "valise_federation_transactions_total"); tx > 0 {
		b.ReportMetric(from.metric(b, "valise_federation_envelopes_sent_total")/tx, "envelopes/tx")
	}
}

func benchBackend() string {
	if b := os.Getenv("VALISE_BENCH_BACKEND"); b != "" {
		return b
	}
	return "sqlite"
}

// benchTweak lifts the per-device send limit and the per-peer call rate,
// which a benchmark's few devices and one peer would otherwise hit.
func benchTweak(c *config.Config) {
	c.Limits.Send = config.Rate{Burst: 1 << 30, PerSecond: 1 << 30}
	c.Federation.PeerRate = config.Rate{Burst: 1 << 30, PerSecond: 1 << 30}
}

// benchDeliver runs the load of BenchmarkDeliver from senders on node
// from to receivers on node to.
func benchDeliver(b *testing.B, from, to *testNode) {
	senders, rcpts := benchDevices(b, from, to)
	var sent atomic.Int64
	received := make([]atomic.Int64, len(rcpts))
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var wg sync.WaitGroup
	for i, d := range rcpts {
		stream, err := d.c.StreamInbox(d.ctx(ctx), &clientv1.StreamInboxRequest{})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := stream.Recv()
				if err != nil {
					return
				}
				if received[i].Add(1)%100 == 0 {
					if _, err := d.c.AckInbox(d.ctx(ctx), &clientv1.AckInboxRequest{Cursor: m.Cursor}); err != nil && ctx.Err() == nil {
						b.Error(err)
					}
				}
			}
		}()
	}
	b.ResetTimer()
	benchSend(b, senders, rcpts, &sent)
	want := sent.Load()
	for i := range received {
		for received[i].Load() < want && !b.Failed() {
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(want*int64(len(rcpts)))/b.Elapsed().Seconds(), "envelopes/s")
	cancel()
	wg.Wait()
	for i := range received {
		if got := received[i].Load(); got != want {
			b.Fatalf("receiver %d read %d envelopes, want %d", i, got, want)
		}
	}
}

// benchDevices creates the devices of the delivery benchmarks: 10
// receiving users with a device each on node to, and 16 devices of one
// sending user on node from.
func benchDevices(b *testing.B, from, to *testNode) (senders, rcpts []*device) {
	for i := range 10 {
		u := fmt.Sprintf("rcpt%d", i)
		to.createUser(b, u, "password-"+u)
		rcpts = append(rcpts, to.login(b, u, "password-"+u))
	}
	from.createUser(b, "sender", "sender-password")
	for range 16 {
		senders = append(senders, from.login(b, "sender", "sender-password"))
	}
	return senders, rcpts
}

// benchSend runs b.N SendEnvelopes calls from 16 goroutines, each call
// from one of senders carrying one 1 KiB envelope for each of rcpts, and
// counts the calls in sent.
func benchSend(b *testing.B, senders, rcpts []*device, sent *atomic.Int64) {
	body := make([]byte, 1024)
	var next atomic.Int64
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		d := senders[int(next.Add(1)-1)%len(senders)]
		for pb.Next() {
			req := &clientv1.SendEnvelopesRequest{IdempotencyKey: fmt.Sprint(sent.Add(1))}
			for _, r := range rcpts {
				req.Envelopes = append(req.Envelopes, &clientv1.OutgoingEnvelope{RecipientUser: r.user, RecipientDeviceId: r.id, Ciphertext: body})
			}
			if _, err := d.c.SendEnvelopes(d.ctx(b.Context()), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
