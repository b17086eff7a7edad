package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// Message n of the kill test has its own idempotency key and a body that
// names it.
func killKey(n int) string { return fmt.Sprintf("kill9-%06d", n) }

func killBody(n int) []byte {
	b := fmt.Appendf(nil, "message %06d|", n)
	return append(b, bytes.Repeat([]byte{byte(n), 0xff, 0x00, byte(n >> 8)}, 64)...)
}

// parseKillBody returns n for a body made by killBody.
func parseKillBody(b []byte) (int, bool) {
	var n int
	if _, err := fmt.Sscanf(string(b), "message %06d|", &n); err != nil {
		return 0, false
	}
	return n, bytes.Equal(b, killBody(n))
}

// sendOne sends body to to's device under key and returns the one
// envelope id.
func sendOne(ctx context.Context, from, to *device, key string, body []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := from.c.SendEnvelopes(from.ctx(ctx), &clientv1.SendEnvelopesRequest{
		IdempotencyKey: key,
		Envelopes:      []*clientv1.OutgoingEnvelope{{RecipientUser: to.user, RecipientDeviceId: to.id, Ciphertext: body}},
	})
	if err != nil {
		return "", err
	}
	if len(res.EnvelopeIds) != 1 || res.EnvelopeIds[0] == "" {
		return "", fmt.Errorf("send %s: envelope ids %q, want one", key, res.EnvelopeIds)
	}
	return res.EnvelopeIds[0], nil
}

// inboxReader reads one inbox stream and checks it as it goes: cursors
// strictly increase, every body is a kill-test message or an expected
// marker, and no message arrives twice.
type inboxReader struct {
	t       *testing.T
	ch      <-chan *clientv1.StreamInboxResponse
	sender  *device
	last    uint64
	byNum   map[int]*clientv1.StreamInboxResponse
	total   int
	markers int
}

// readUntil reads until the envelope with body marker arrives.
func (r *inboxReader) readUntil(marker string) {
	r.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		var m *clientv1.StreamInboxResponse
		select {
		case got, ok := <-r.ch:
			if !ok {
				r.t.Fatalf("the inbox stream ended after %d envelopes, before %q", r.total, marker)
			}
			m = got
		case <-timeout:
			r.t.Fatalf("%q not received within 30s; %d envelopes read, last cursor %d", marker, r.total, r.last)
		}
		r.total++
		if m.Cursor <= r.last {
			r.t.Errorf("cursor %d follows cursor %d", m.Cursor, r.last)
		}
		r.last = m.Cursor
		if m.SenderUser != r.sender.user || m.SenderDeviceId != r.sender.id {
			r.t.Errorf("cursor %d: sender %s/%s, want %s/%s", m.Cursor, m.SenderUser, m.SenderDeviceId, r.sender.user, r.sender.id)
		}
		if string(m.Ciphertext) == marker {
			r.markers++
			return
		}
		n, ok := parseKillBody(m.Ciphertext)
		if !ok {
			r.t.Errorf("cursor %d: unexpected body %.40q", m.Cursor, m.Ciphertext)
			continue
		}
		if prev, dup := r.byNum[n]; dup {
			r.t.Errorf("message %d delivered twice: cursors %d and %d, envelopes %s and %s", n, prev.Cursor, m.Cursor, prev.EnvelopeId, m.EnvelopeId)
			continue
		}
		r.byNum[n] = m
	}
}

// TestKillDashNine kills a node with SIGKILL while eight clients send to
// one inbox, restarts it on the same data directory, and checks that every
// send the node acknowledged is in the inbox exactly once, that a retry
// of any send with its idempotency key returns the first answer, and that
// sends left in doubt by the kill end up stored exactly once after retry.
func TestKillDashNine(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		dir := newNodeDir(t, backend)
		writeTestConfig(t, dir, nil)
		p := startProc(t, dir)
		p.createUsers(t, "alice", "bob")
		alice, bob := p.login(t, "alice"), p.login(t, "bob")

		// Send until killed. A send answered OK is acknowledged; one that
		// fails after the kill is in doubt; one that fails before is a bug.
		const senders = 8
		type outcome struct {
			acked    map[int]string // message number → envelope id
			inDoubt  []int
			failures []string
		}
		var (
			next, nAcked atomic.Int64
			killed       atomic.Bool
			wg           sync.WaitGroup
			outcomes     = make([]outcome, senders)
		)
		for i := range senders {
			wg.Go(func() {
				o := &outcomes[i]
				o.acked = map[int]string{}
				for !killed.Load() {
					n := int(next.Add(1))
					id, err := sendOne(t.Context(), alice, bob, killKey(n), killBody(n))
					switch {
					case err == nil:
						o.acked[n] = id
						nAcked.Add(1)
					case killed.Load():
						o.inDoubt = append(o.inDoubt, n)
						return
					default:
						o.failures = append(o.failures, fmt.Sprintf("send %d before the kill: %v", n, err))
						return
					}
				}
			})
		}
		start := time.Now()
		for nAcked.Load() < 400 && (nAcked.Load() == 0 || time.Since(start) < 2*time.Second) {
			if time.Since(start) > 30*time.Second {
				killed.Store(true)
				p.kill()
				wg.Wait()
				t.Fatalf("only %d sends acknowledged in 30s", nAcked.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
		killed.Store(true)
		p.killNine(t)
		wg.Wait()

		acked := map[int]string{}
		var inDoubt []int
		for _, o := range outcomes {
			maps.Copy(acked, o.acked)
			inDoubt = append(inDoubt, o.inDoubt...)
			for _, f := range o.failures {
				t.Error(f)
			}
		}
		slices.Sort(inDoubt)
		attempted := slices.Sorted(maps.Keys(acked))
		attempted = append(attempted, inDoubt...)
		t.Logf("killed after %d acknowledged sends, %d in flight", len(acked), len(inDoubt))

		// Restart on the same directory: the SQLite WAL, PostgreSQL
		// connections and the admin socket file are left from the killed
		// process. Devices and tokens survive.
		p2 := startProc(t, dir)
		alice2, bob2 := p2.reattach(t, alice), p2.reattach(t, bob)
		p2.admin(t) // the admin socket answers again
		if _, err := sendOne(t.Context(), alice2, bob2, "marker-1", []byte("marker after restart")); err != nil {
			t.Fatalf("first send after restart: %v", err)
		}
		// Everything committed before the kill precedes the marker.
		r := &inboxReader{t: t, ch: inboxStream(t, bob2, 0), sender: alice, byNum: map[int]*clientv1.StreamInboxResponse{}}
		r.readUntil("marker after restart")
		var missing []int
		for _, n := range slices.Sorted(maps.Keys(acked)) {
			m, ok := r.byNum[n]
			if !ok {
				missing = append(missing, n)
				continue
			}
			if m.EnvelopeId != acked[n] {
				t.Errorf("message %d: envelope id %s in the inbox, %s acknowledged", n, m.EnvelopeId, acked[n])
			}
		}
		if len(missing) > 0 {
			t.Errorf("%d of %d acknowledged messages lost by the kill, first %v", len(missing), len(acked), missing[:min(len(missing), 20)])
		}
		committedBefore := 0
		for _, n := range inDoubt {
			if _, ok := r.byNum[n]; ok {
				committedBefore++
			}
		}
		for n := range r.byNum {
			if _, ok := acked[n]; !ok && !slices.Contains(inDoubt, n) {
				t.Errorf("message %d is in the inbox but was never sent", n)
			}
		}

		// Retry every send with its key: the node answers each with its
		// first answer, or stores it now if the kill lost it in flight.
		var (
			mu      sync.Mutex
			retryID = map[int]string{}
			work    = make(chan int)
		)
		for range senders {
			wg.Go(func() {
				for n := range work {
					id, err := sendOne(t.Context(), alice2, bob2, killKey(n), killBody(n))
					mu.Lock()
					if err != nil {
						t.Errorf("retry of message %d: %v", n, err)
					} else {
						retryID[n] = id
					}
					mu.Unlock()
				}
			})
		}
		for _, n := range attempted {
			work <- n
		}
		close(work)
		wg.Wait()
		for n, id := range acked {
			if got, ok := retryID[n]; ok && got != id {
				t.Errorf("retry of acknowledged message %d returned envelope %s, want %s", n, got, id)
			}
		}
		if _, err := sendOne(t.Context(), alice2, bob2, "marker-2", []byte("marker after retries")); err != nil {
			t.Fatal(err)
		}
		r.readUntil("marker after retries")
		for _, n := range attempted {
			m, ok := r.byNum[n]
			if !ok {
				t.Errorf("message %d is not in the inbox after its retry", n)
				continue
			}
			if id, ok := retryID[n]; ok && m.EnvelopeId != id {
				t.Errorf("message %d: envelope %s in the inbox, retry answered %s", n, m.EnvelopeId, id)
			}
		}
		if got, want := len(r.byNum), len(attempted); got != want {
			t.Errorf("inbox holds %d distinct messages, want %d", got, want)
		}
		t.Logf("%s: %d acknowledged before SIGKILL, %d recovered; %d in doubt (%d committed before the kill, %d stored by the retry); inbox: %d envelopes, last cursor %d",
			backend, len(acked), len(acked)-len(missing), len(inDoubt), committedBefore, len(inDoubt)-committedBefore, r.total, r.last)
	})
}
