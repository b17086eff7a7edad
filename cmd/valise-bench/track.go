package main

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The benchmark's payload, inside the sealed body: a magic, the sender's
// index, the message's sequence number within the run, the time it was
// meant to be sent (unix nanoseconds) and padding up to --size.
const (
	payloadMagic  = "VB1"
	payloadHeader = len(payloadMagic) + 4 + 8 + 8
)

// encodeBody returns the body of message seq of sender, stamped at.
func encodeBody(size int, sender uint32, seq uint64, at time.Time) []byte {
	b := make([]byte, max(size, payloadHeader))
	copy(b, payloadMagic)
	binary.BigEndian.PutUint32(b[3:], sender)
	binary.BigEndian.PutUint64(b[7:], seq)
	binary.BigEndian.PutUint64(b[15:], uint64(at.UnixNano()))
	for i := payloadHeader; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// decodeBody reads what encodeBody wrote.
func decodeBody(b []byte) (seq uint64, at time.Time, err error) {
	if len(b) < payloadHeader || string(b[:3]) != payloadMagic {
		return 0, time.Time{}, errors.New("not a valise-bench message")
	}
	return binary.BigEndian.Uint64(b[7:]), time.Unix(0, int64(binary.BigEndian.Uint64(b[15:]))), nil
}

// Message states in the tracker.
const (
	stPending = iota // handed to Send, no answer yet
	stSent           // the node accepted it
	stFailed         // Send failed
)

// record is one envelope the benchmark sent.
type record struct {
	receiver  int32
	state     uint8
	delivered uint8
	measured  bool
}

// tracker counts every envelope: each one sent is registered before Send
// and each opening is matched against it, so that lost, duplicated and
// misdelivered envelopes are found.
type tracker struct {
	mu      sync.Mutex
	recs    map[uint64]*record
	nextSeq atomic.Uint64

	sent, delivered, duplicated, unexpected, failed int64
	errs                                            int64
	lat                                             []time.Duration
	lastDelivery                                    time.Time
	measuredDelivered                               int64
	// window holds the latencies since the last progress line.
	window []time.Duration
	// base is what latencies are measured from, when not the time
	// inside the payload (the offline scenario: the time it connects).
	base time.Time
}

func newTracker() *tracker { return &tracker{recs: map[uint64]*record{}} }

// begin registers a new envelope for receiver and returns its sequence
// number. measured says whether it counts in the rate and latencies
// (warm-up envelopes do not).
func (t *tracker) begin(receiver int, measured bool) uint64 {
	seq := t.nextSeq.Add(1)
	t.mu.Lock()
	t.recs[seq] = &record{receiver: int32(receiver), measured: measured}
	t.mu.Unlock()
	return seq
}

// done records Send's outcome for seq.
func (t *tracker) done(seq uint64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.recs[seq]
	if err != nil {
		r.state = stFailed
		t.failed++
		t.errs++
		return
	}
	r.state = stSent
	t.sent++
}

// deliver records that receiver opened the envelope with body b.
func (t *tracker) deliver(receiver int, b []byte, now time.Time) {
	seq, at, err := decodeBody(b)
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.recs[seq]
	if err != nil || r == nil || int(r.receiver) != receiver {
		t.unexpected++
		return
	}
	r.delivered++
	if r.delivered > 1 {
		t.duplicated++
		return
	}
	if r.state == stFailed {
		// The send failed as far as the sender knows, yet it arrived.
		t.unexpected++
		return
	}
	t.delivered++
	if !r.measured {
		return
	}
	if !t.base.IsZero() {
		at = t.base
	}
	d := now.Sub(at)
	t.lat = append(t.lat, d)
	t.window = append(t.window, d)
	t.measuredDelivered++
	t.lastDelivery = now
}

// error counts a failure outside Send (receiving, a rejected envelope).
func (t *tracker) error() {
	t.mu.Lock()
	t.errs++
	t.mu.Unlock()
}

// counts is a snapshot of the tracker.
type counts struct {
	sent, delivered, duplicated, unexpected, failed, errs, pending int64
	lost                                                           int64
}

func (t *tracker) counts() counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := counts{sent: t.sent, delivered: t.delivered, duplicated: t.duplicated, unexpected: t.unexpected, failed: t.failed, errs: t.errs}
	for _, r := range t.recs {
		if r.state == stSent && r.delivered == 0 {
			c.lost++
		}
		if r.state == stPending {
			c.pending++
		}
	}
	return c
}

// allDelivered reports whether every accepted envelope arrived.
func (t *tracker) allDelivered() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.delivered >= t.sent
}

// takeWindow returns and resets the latencies since the last call.
func (t *tracker) takeWindow() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.window
	t.window = nil
	return w
}

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// latencies returns the measured latencies, sorted, and when the last
// measured envelope arrived.
func (t *tracker) latencies() ([]time.Duration, time.Time, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := slices.Clone(t.lat)
	slices.Sort(l)
	return l, t.lastDelivery, t.measuredDelivered
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timeAt is the time of unix nanoseconds ns.
func timeAt(ns int64) time.Time { return time.Unix(0, ns) }
