package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valise-im/valise/client"
)

// result is one scenario's outcome, printed as one JSON object with
// --json (docs/ops/valise-bench.md describes every field).
type result struct {
	Scenario    string  `json:"scenario"`
	Backend     string  `json:"backend"`
	Nodes       int     `json:"nodes"`
	Senders     int     `json:"senders,omitempty"`
	Receivers   int     `json:"receivers,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	RateTarget  float64 `json:"rate_target,omitempty"`
	SizeBytes   int     `json:"size_bytes"`

	Sent       int64 `json:"sent"`
	Delivered  int64 `json:"delivered"`
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	Unexpected int64 `json:"unexpected"`
	Errors     int64 `json:"errors"`

	Measured       int64   `json:"measured"`
	DurationSec    float64 `json:"duration_sec"`
	RatePerSec     float64 `json:"rate_per_sec"`
	AcceptedPerSec float64 `json:"accepted_per_sec"`
	P50Ms          float64 `json:"p50_ms"`
	P90Ms          float64 `json:"p90_ms"`
	P99Ms          float64 `json:"p99_ms"`
	MaxMs          float64 `json:"max_ms"`

	Devices             int     `json:"devices,omitempty"`
	RSSBeforeKiB        int64   `json:"rss_before_kib,omitempty"`
	RSSAfterKiB         int64   `json:"rss_after_kib,omitempty"`
	RSSPerDeviceKiB     float64 `json:"rss_per_device_kib,omitempty"`
	HeapPerDeviceKiB    float64 `json:"heap_per_device_kib,omitempty"`
	GoroutinesPerDevice float64 `json:"goroutines_per_device,omitempty"`
	OpenFileLimit       uint64  `json:"open_file_limit"`

	OK bool `json:"ok"`
}

// fill copies the tracker's counts and latencies into r. start is when
// the measured sending began and sendEnd when it stopped.
func (r *result) fill(tr *tracker, start, sendEnd time.Time) {
	c := tr.counts()
	r.Sent, r.Delivered, r.Lost, r.Duplicated, r.Unexpected, r.Errors = c.sent, c.delivered, c.lost, c.duplicated, c.unexpected, c.errs
	lat, last, n := tr.latencies()
	r.Measured = n
	r.DurationSec = sendEnd.Sub(start).Seconds()
	if d := sendEnd.Sub(start).Seconds(); d > 0 {
		r.AcceptedPerSec = float64(n) / d
	}
	if d := last.Sub(start).Seconds(); d > 0 && n > 0 {
		r.RatePerSec = float64(n) / d
	}
	r.P50Ms, r.P90Ms, r.P99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 90)), ms(percentile(lat, 99))
	if len(lat) > 0 {
		r.MaxMs = ms(lat[len(lat)-1])
	}
}

// route says which receivers the k-th message of sender s goes to.
type route func(s int, k uint64) []int

// sendLoop sends until ctx ends or limit envelopes (0: no limit) were
// begun: closed loop with --concurrency workers, or open loop at --rate.
// Worker w sends as sender w % len(senders).
func (b *bench) sendLoop(ctx context.Context, tr *tracker, senders, rcv []*dev, rt route, limit int64, measured bool) {
	var begun atomic.Int64
	one := func(s int, k uint64, at time.Time) bool {
		for _, r := range rt(s, k) {
			if limit > 0 && begun.Add(1) > limit {
				return false
			}
			if ctx.Err() != nil {
				return false
			}
			seq := tr.begin(r, measured)
			stamp := at
			if stamp.IsZero() {
				stamp = time.Now()
			}
			body := encodeBody(b.size, uint32(s), seq, stamp)
			// The send itself is not cut by the end of the run: an
			// envelope handed to the SDK is either accepted or failed.
			_, err := senders[s].c.Send(context.WithoutCancel(ctx), rcv[r].user, body, client.SendOptions{})
			if err != nil {
				b.warnf("send %s → %s: %v", senders[s].user, rcv[r].user, err)
			}
			tr.done(seq, err)
		}
		return true
	}
	var wg sync.WaitGroup
	if b.rate <= 0 {
		for w := range b.concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := w % len(senders)
				for k := uint64(w / len(senders)); ; k += uint64((b.concurrency + len(senders) - 1) / len(senders)) {
					if !one(s, k, time.Time{}) {
						return
					}
				}
			}()
		}
		wg.Wait()
		return
	}
	// Open loop: the dispatcher stamps each message with the time it is
	// due, so that latency includes any time it waited for a worker.
	type job struct {
		s  int
		k  uint64
		at time.Time
	}
	jobs := make(chan job, 1<<16)
	for range b.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if !one(j.s, j.k, j.at) {
					for range jobs {
					}
					return
				}
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / b.rate)
	counters := make([]uint64, len(senders))
dispatch:
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				break dispatch
			}
		}
		if ctx.Err() != nil || (limit > 0 && begun.Load() >= limit) {
			break
		}
		s := i % len(senders)
		select {
		case jobs <- job{s: s, k: counters[s], at: due}:
			counters[s]++
		case <-ctx.Done():
			break dispatch
		}
	}
	close(jobs)
	wg.Wait()
}

// waitDelivered waits until every accepted envelope arrived, or --drain
// passes, or ctx ends.
func (b *bench) waitDelivered(ctx context.Context, tr *tracker, nodes []*node) {
	deadline := time.Now().Add(b.drain)
	for !tr.allDelivered() && time.Now().Before(deadline) && ctx.Err() == nil {
		for _, n := range nodes {
			if n.alive() != nil {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if tr.allDelivered() {
		// A moment more for duplicates.
		time.Sleep(200 * time.Millisecond)
	}
}

// progressLine is the progress line of a sending scenario.
func (b *bench) progressLine(scenario string, tr *tracker, start time.Time) func() string {
	var lastDelivered int64
	lastAt := start
	return func() string {
		c := tr.counts()
		now := time.Now()
		w := tr.takeWindow()
		slices.Sort(w)
		rate := float64(c.delivered-lastDelivered) / now.Sub(lastAt).Seconds()
		lastDelivered, lastAt = c.delivered, now
		return fmt.Sprintf("%s %5.1fs  sent %d  delivered %d  %.0f/s  p50 %.1fms  p99 %.1fms  errors %d",
			scenario, now.Sub(start).Seconds(), c.sent, c.delivered, rate, ms(percentile(w, 50)), ms(percentile(w, 99)), c.errs)
	}
}

// runLoad runs local, federated and fanout: senders on sendNodes,
// receivers spread over recvNodes; each sender's k-th message goes to
// receiver (s + k) % receivers, and in fanout (one sender) every message
// goes to every receiver.
func (b *bench) runLoad(ctx context.Context, res *result, sendNodes, recvNodes []*node, nSenders, nReceivers int) error {
	fanout := res.Scenario == "fanout"
	res.Senders, res.Receivers, res.Concurrency, res.RateTarget, res.OpenFileLimit = nSenders, nReceivers, b.concurrency, b.rate, b.nofile
	senders, err := b.makeDevices(ctx, sendNodes, "s", nSenders)
	if err != nil {
		return err
	}
	rcv, err := b.makeDevices(ctx, recvNodes, "r", nReceivers)
	if err != nil {
		return err
	}
	all := make([]int, nReceivers)
	for i := range all {
		all[i] = i
	}
	rt := func(s int, k uint64) []int {
		if fanout {
			return all
		}
		return []int{int((uint64(s) + k) % uint64(nReceivers))}
	}
	tr := newTracker()
	recv := b.receive(ctx, rcv, tr)
	defer recv.stop()
	nodes := append(slices.Clone(sendNodes), recvNodes...)
	if b.warmup {
		// Every pair once: keys looked up and pinned, streams open.
		b.warmupPairs(ctx, tr, senders, rcv, rt, nReceivers)
		b.waitDelivered(ctx, tr, nodes)
		if c := tr.counts(); c.lost > 0 {
			return fmt.Errorf("warm-up: %d of %d envelopes not delivered within --drain", c.lost, c.sent)
		}
	}
	start := time.Now()
	stop := b.progressf(b.progressLine(res.Scenario, tr, start))
	sctx, cancel := context.WithTimeout(ctx, b.duration)
	if b.duration <= 0 {
		sctx, cancel = context.WithCancel(ctx)
	}
	b.sendLoop(sctx, tr, senders, rcv, rt, int64(b.count), true)
	cancel()
	sendEnd := time.Now()
	b.waitDelivered(ctx, tr, nodes)
	stop()
	res.fill(tr, start, sendEnd)
	return ctx.Err()
}

// warmupPairs sends one unmeasured envelope on every sender-receiver
// pair the route uses, --concurrency at a time.
func (b *bench) warmupPairs(ctx context.Context, tr *tracker, senders, rcv []*dev, rt route, nReceivers int) {
	type pair struct{ s, r int }
	var pairs []pair
	for s := range senders {
		seen := map[int]bool{}
		for k := uint64(0); k < uint64(nReceivers); k++ {
			for _, r := range rt(s, k) {
				if !seen[r] {
					seen[r] = true
					pairs = append(pairs, pair{s, r})
				}
			}
		}
	}
	ch := make(chan pair)
	var wg sync.WaitGroup
	for range b.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range ch {
				seq := tr.begin(p.r, false)
				_, err := senders[p.s].c.Send(ctx, rcv[p.r].user, encodeBody(b.size, uint32(p.s), seq, time.Now()), client.SendOptions{})
				if err != nil {
					b.warnf("warm-up send %s → %s: %v", senders[p.s].user, rcv[p.r].user, err)
				}
				tr.done(seq, err)
			}
		}()
	}
	for _, p := range pairs {
		ch <- p
	}
	close(ch)
	wg.Wait()
}

// runOffline queues --queued envelopes from --senders senders for one
// device that is not connected, then connects it and measures until all
// are read. Latencies count from the moment it connects.
func (b *bench) runOffline(ctx context.Context, res *result, n *node) error {
	res.Senders, res.Receivers, res.Concurrency, res.OpenFileLimit = b.senders, 1, b.concurrency, b.nofile
	senders, err := b.makeDevices(ctx, []*node{n}, "s", b.senders)
	if err != nil {
		return err
	}
	rcv, err := b.makeDevices(ctx, []*node{n}, "r", 1)
	if err != nil {
		return err
	}
	rt := func(int, uint64) []int { return []int{0} }
	tr := newTracker()
	if b.warmup {
		recv := b.receive(ctx, rcv, tr)
		b.warmupPairs(ctx, tr, senders, rcv, rt, 1)
		b.waitDelivered(ctx, tr, []*node{n})
		recv.stop()
	}
	qstart := time.Now()
	stop := b.progressf(func() string {
		c := tr.counts()
		return fmt.Sprintf("offline %5.1fs  queued %d/%d", time.Since(qstart).Seconds(), c.sent, b.queued)
	})
	saved := b.rate
	b.rate = 0 // queueing is as fast as it goes
	b.sendLoop(ctx, tr, senders, rcv, rt, int64(b.queued), true)
	b.rate = saved
	stop()
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	tr.mu.Lock()
	tr.base = start
	tr.mu.Unlock()
	stop = b.progressf(b.progressLine("offline", tr, start))
	recv := b.receive(ctx, rcv, tr)
	b.waitDelivered(ctx, tr, []*node{n})
	recv.stop()
	stop()
	res.fill(tr, start, start)
	_, last, _ := tr.latencies()
	res.DurationSec = last.Sub(start).Seconds()
	res.AcceptedPerSec = 0
	return ctx.Err()
}
