package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/valise-im/valise/internal/config"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// fedMsgBody is the ciphertext of envelope seq of sending device dev to
// recipient r: about 100 bytes that name all three.
func fedMsgBody(dev, seq, r int) []byte {
	b := fmt.Appendf(nil, "fed dev=%d seq=%05d to=%d|", dev, seq, r)
	for len(b) < 100 {
		b = append(b, byte('a'+(dev*7+seq+len(b))%26))
	}
	return b
}

// parseFedMsgBody returns what fedMsgBody encoded in b.
func parseFedMsgBody(b []byte) (dev, seq, r int, ok bool) {
	if _, err := fmt.Sscanf(string(b), "fed dev=%d seq=%05d to=%d|", &dev, &seq, &r); err != nil {
		return 0, 0, 0, false
	}
	return dev, seq, r, bytes.Equal(b, fedMsgBody(dev, seq, r))
}

// fedSend sends bodies[i] to to[i] in one call under key and returns the
// envelope ids.
func fedSend(ctx context.Context, from *device, key string, to []*device, bodies [][]byte) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := &clientv1.SendEnvelopesRequest{IdempotencyKey: key}
	for i, d := range to {
		req.Envelopes = append(req.Envelopes, &clientv1.OutgoingEnvelope{RecipientUser: d.user, RecipientDeviceId: d.id, Ciphertext: bodies[i]})
	}
	res, err := from.c.SendEnvelopes(from.ctx(ctx), req)
	if err != nil {
		return nil, err
	}
	if len(res.EnvelopeIds) != len(to) {
		return nil, fmt.Errorf("send %s: %d envelope ids for %d envelopes", key, len(res.EnvelopeIds), len(to))
	}
	return res.EnvelopeIds, nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a listener that must keep its address across restarts.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// metricsAddr returns the metrics address from p's "node serving" line.
func (p *proc) metricsAddr(t *testing.T) string {
	t.Helper()
	for line := range strings.Lines(p.logs.String()) {
		var m struct{ Msg, Metrics string }
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "node serving" && m.Metrics != "" {
			return m.Metrics
		}
	}
	t.Fatal("the node serving line names no metrics address")
	return ""
}

// metricAt is testNode.metric for the metrics listener at addr.
func metricAt(t *testing.T, addr, name string, labels ...string) float64 {
	t.Helper()
	return (&testNode{ready: ready{Metrics: addr}}).metric(t, name, labels...)
}

// deliveryOf returns the delivery state for peer that admin lists.
func deliveryOf(t *testing.T, admin adminv1.AdminServiceClient, peer string) *adminv1.PeerDelivery {
	t.Helper()
	resp, err := admin.ListPeers(t.Context(), &adminv1.ListPeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Peers {
		if p.Name == peer {
			return p.Delivery
		}
	}
	t.Fatalf("%s is not listed as a peer", peer)
	return nil
}

// fedInbox reads one device's inbox stream, acknowledging as it goes so
// the inbox stays small.
type fedInbox struct {
	who   string
	mu    sync.Mutex
	got   []*clientv1.StreamInboxResponse
	first time.Time // when the first envelope arrived
	err   error     // what ended the stream, unless the test did
}

const fedAckEvery = 200

// readFedInbox streams d's inbox until the test ends.
func readFedInbox(t *testing.T, d *device) *fedInbox {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := d.c.StreamInbox(d.ctx(ctx), &clientv1.StreamInboxRequest{})
	if err != nil {
		cancel()
		t.Fatalf("stream %s: %v", d.user, err)
	}
	in := &fedInbox{who: d.user + "/" + d.id}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			m, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					in.mu.Lock()
					in.err = err
					in.mu.Unlock()
				}
				return
			}
			in.mu.Lock()
			if len(in.got) == 0 {
				in.first = time.Now()
			}
			in.got = append(in.got, m)
			n := len(in.got)
			in.mu.Unlock()
			if n%fedAckEvery == 0 {
				if _, err := d.c.AckInbox(d.ctx(ctx), &clientv1.AckInboxRequest{Cursor: m.Cursor}); err != nil && ctx.Err() == nil {
					in.mu.Lock()
					in.err = fmt.Errorf("ack cursor %d: %w", m.Cursor, err)
					in.mu.Unlock()
					return
				}
			}
		}
	}()
	return in
}

// status returns how many envelopes arrived and the error that ended the
// stream, if any.
func (in *fedInbox) status() (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.got), in.err
}

func (in *fedInbox) snapshot() []*clientv1.StreamInboxResponse {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]*clientv1.StreamInboxResponse(nil), in.got...)
}

// waitInboxes waits up to d until every inbox holds want envelopes; diag
// describes the sender's side for the failure message.
func waitInboxes(t *testing.T, d time.Duration, want int, diag func() string, ins ...*fedInbox) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		all := true
		var counts []string
		for _, in := range ins {
			n, err := in.status()
			if err != nil {
				t.Fatalf("%s: the inbox stream ended after %d envelopes: %v", in.who, n, err)
			}
			all = all && n >= want
			counts = append(counts, fmt.Sprintf("%s: %d", in.who, n))
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every inbox got %d envelopes within %v (%s); %s", want, d, strings.Join(counts, ", "), diag())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fedKey identifies an envelope by sending device and sequence number.
type fedKey struct{ dev, seq int }

// checkFedInbox checks what in received: every envelope is one of want
// (by sending device and sequence number: its envelope id), each exactly
// once, from senders[dev], to recipient r, and in increasing sequence
// order per sending device.
func checkFedInbox(t *testing.T, in *fedInbox, r int, senders []*device, want map[fedKey]string) {
	t.Helper()
	got := in.snapshot()
	seen := map[fedKey]*clientv1.StreamInboxResponse{}
	ids := map[string]bool{}
	last := map[int]int{}
	var lastCursor uint64
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 20 {
			t.Errorf("%s: "+format, append([]any{in.who}, args...)...)
		}
	}
	for _, m := range got {
		if m.Cursor <= lastCursor {
			report("cursor %d follows cursor %d", m.Cursor, lastCursor)
		}
		lastCursor = m.Cursor
		if ids[m.EnvelopeId] {
			report("envelope %s delivered twice", m.EnvelopeId)
		}
		ids[m.EnvelopeId] = true
		dev, seq, to, ok := parseFedMsgBody(m.Ciphertext)
		if !ok || to != r || dev < 0 || dev >= len(senders) {
			report("cursor %d: unexpected body %.60q", m.Cursor, m.Ciphertext)
			continue
		}
		k := fedKey{dev, seq}
		if s := senders[dev]; m.SenderUser != s.user || m.SenderDeviceId != s.id {
			report("%v: sender %s/%s, want %s/%s", k, m.SenderUser, m.SenderDeviceId, s.user, s.id)
		}
		if prev, dup := seen[k]; dup {
			report("%v delivered twice: cursors %d and %d, envelopes %s and %s", k, prev.Cursor, m.Cursor, prev.EnvelopeId, m.EnvelopeId)
			continue
		}
		seen[k] = m
		if p, ok := last[dev]; ok && seq <= p {
			report("device %d: seq %d arrived after seq %d", dev, seq, p)
		}
		last[dev] = seq
		if id, ok := want[k]; !ok {
			report("%v arrived but was never acknowledged", k)
		} else if id != m.EnvelopeId {
			report("%v: envelope %s arrived, %s was acknowledged", k, m.EnvelopeId, id)
		}
	}
	missing := 0
	for k := range want {
		if _, ok := seen[k]; !ok {
			if missing++; missing <= 10 {
				t.Errorf("%s: acknowledged %v (envelope %s) never arrived", in.who, k, want[k])
			}
		}
	}
	if missing > 0 || bad > 0 {
		t.Errorf("%s: %d envelopes received, %d acknowledged; %d missing, %d problems", in.who, len(got), len(want), missing, bad)
	}
}

// TestFederationPeerDownKillNine runs node a as a real process and node
// b, its peer, in process. With b down, four devices on a send 10,000
// envelopes to two devices on b; halfway a is killed with SIGKILL while
// sends are in flight and restarted on the same data directory, and the
// sends in flight are retried with their idempotency keys. Then b starts:
// every acknowledged envelope reaches b's devices exactly once, in order
// per sending device, and a's queue for b drains to idle.
func TestFederationPeerDownKillNine(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		const (
			senders    = 4
			recipients = 2
			total      = 10000
			perDevice  = total / (senders * recipients) // sends per device, one envelope per recipient each
		)
		start := time.Now()
		// b: fixed federation address, so that a's peer entry survives b's
		// restart; its users and their devices exist before a sends.
		dirB := newNamedNodeDir(t, backend, "b.example")
		bFed := freeAddr(t)
		cfgB := testConfig(t, dirB, func(c *config.Config) { fedTweak(c); c.Listen.Federation = bFed })
		dirA := newNamedNodeDir(t, backend, "a.example")
		aFed := freeAddr(t)
		writeTestConfig(t, dirA, func(c *config.Config) { fedTweak(c); c.Listen.Federation = aFed })

		b := startNodeIn(t, dirB, cfgB)
		addPeer(t, b, dirA, aFed)
		b.createUser(t, "bob", "bob-password")
		b.createUser(t, "dave", "dave-password")
		rcpt := []*device{b.login(t, "bob", "bob-password"), b.login(t, "dave", "dave-password")}
		b.stop()

		p := startProc(t, dirA)
		caB, err := os.ReadFile(filepath.Join(dirB, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.admin(t).AddPeer(t.Context(), &adminv1.AddPeerRequest{Name: "b.example", Address: bFed, CaBundle: caB}); err != nil {
			t.Fatalf("a: add peer b.example: %v", err)
		}
		p.createUsers(t, "alice", "carol")
		devs := []*device{p.login(t, "alice"), p.login(t, "alice"), p.login(t, "carol"), p.login(t, "carol")}

		// Each device sends its envelopes one call at a time (one envelope
		// per recipient), retrying a call the kill left in doubt with its
		// idempotency key on the restarted process.
		var (
			nAcked     atomic.Int64
			killed     atomic.Bool
			restarted  = make(chan struct{})
			after      []*device // devs on the restarted process, set before restarted closes
			acked      = make([][][]string, senders)
			inDoubt    = make([]int, senders)
			firstFails = make([]error, senders)
			wg         sync.WaitGroup
		)
		for i := range senders {
			acked[i] = make([][]string, perDevice)
			wg.Go(func() {
				d := devs[i]
				for seq := 0; seq < perDevice; seq++ {
					bodies := [][]byte{fedMsgBody(i, seq, 0), fedMsgBody(i, seq, 1)}
					key := fmt.Sprintf("fedkill-%d-%05d", i, seq)
					for attempt := 0; ; attempt++ {
						ids, err := fedSend(t.Context(), d, key, rcpt, bodies)
						if err == nil {
							acked[i][seq] = ids
							nAcked.Add(int64(len(ids)))
							break
						}
						if !killed.Load() {
							firstFails[i] = fmt.Errorf("device %d: send %d before the kill: %w", i, seq, err)
							return
						}
						if attempt == 0 {
							inDoubt[i]++
						}
						if attempt >= 5 {
							firstFails[i] = fmt.Errorf("device %d: send %d still fails after the restart: %w", i, seq, err)
							return
						}
						select {
						case <-restarted:
						case <-t.Context().Done():
							return
						}
						if d != after[i] {
							d = after[i]
						} else if grpcCode(err) == codes.Unavailable {
							time.Sleep(100 * time.Millisecond)
						} else {
							firstFails[i] = fmt.Errorf("device %d: send %d after the restart: %w", i, seq, err)
							return
						}
					}
				}
			})
		}

		// Kill a halfway, while the devices send.
		for nAcked.Load() < total/2 {
			if time.Since(start) > 60*time.Second {
				killed.Store(true)
				p.kill()
				t.Fatalf("only %d envelopes acknowledged in 60s", nAcked.Load())
			}
			time.Sleep(2 * time.Millisecond)
		}
		killed.Store(true)
		p.killNine(t)
		ackedAtKill := nAcked.Load()
		killedAt := time.Now()
		p2 := startProc(t, dirA)
		for _, d := range devs {
			after = append(after, p2.reattach(t, d))
		}
		close(restarted)
		wg.Wait()
		for _, err := range firstFails {
			if err != nil {
				t.Error(err)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		sent := time.Now()

		// Every acknowledged envelope, by recipient; ids are unique.
		want := []map[fedKey]string{{}, {}}
		allIDs := map[string]bool{}
		for i := range senders {
			for seq, ids := range acked[i] {
				for r, id := range ids {
					if allIDs[id] {
						t.Errorf("envelope id %s acknowledged twice", id)
					}
					allIDs[id] = true
					want[r][fedKey{i, seq}] = id
				}
			}
		}
		admin := p2.admin(t)
		before := deliveryOf(t, admin, "b.example")
		if before.QueueDepth != total {
			t.Errorf("a's queue for b before b starts = %d, want %d (the acknowledged envelopes, each once)", before.QueueDepth, total)
		}

		b2 := startNodeIn(t, dirB, cfgB)
		bStarted := time.Now()
		ins := make([]*fedInbox, recipients)
		for r, d := range rcpt {
			ins[r] = readFedInbox(t, onNode(t, d, b2))
		}
		waitInboxes(t, 90*time.Second, total/recipients, func() string {
			d := deliveryOf(t, admin, "b.example")
			return fmt.Sprintf("a's delivery to b: %v", d)
		}, ins...)
		delivered := time.Now()
		eventually(t, 10*time.Second, "a's delivery state for b idle with an empty queue", func() bool {
			d := deliveryOf(t, admin, "b.example")
			return d.State == "idle" && d.QueueDepth == 0
		})
		time.Sleep(500 * time.Millisecond) // a duplicate would arrive now
		for r, in := range ins {
			checkFedInbox(t, in, r, devs, want[r])
		}

		// b was down through the kill, so no answer of b could be lost:
		// nothing is delivered twice, not even to b's dedup.
		aMetrics := p2.metricsAddr(t)
		for _, c := range []struct {
			addr, name, label string
			want              float64
		}{
			{b2.ready.Metrics, "valise_federation_inbound_envelopes_total", `status="accepted"`, total},
			{b2.ready.Metrics, "valise_federation_inbound_envelopes_total", `status="duplicate"`, 0},
			{aMetrics, "valise_federation_envelopes_sent_total", `result="accepted"`, total},
			{aMetrics, "valise_federation_envelopes_sent_total", `result="duplicate"`, 0},
		} {
			if got := metricAt(t, c.addr, c.name, c.label); got != c.want {
				t.Errorf("%s{%s} = %v, want %v", c.name, c.label, got, c.want)
			}
		}
		// The first envelope reaches b only once the killed process's
		// lease on b's outbox has expired (the restarted process is
		// another owner): about 30 s after the kill.
		first := ins[0].first
		for _, in := range ins[1:] {
			if in.first.Before(first) {
				first = in.first
			}
		}
		t.Logf("%s: %d envelopes acknowledged at the kill, %d sends failed by the kill and retried; all %d sent %v after start (%v after the kill); "+
			"a's state for b then %q, queue %d; b started; the first envelope arrived %v after the kill, the last %v after b started; "+
			"a's transactions to b: %v ok, %v failed; total %v",
			backend, ackedAtKill, sumInts(inDoubt), total, sent.Sub(start).Round(time.Millisecond), sent.Sub(killedAt).Round(time.Millisecond),
			before.State, before.QueueDepth, first.Sub(killedAt).Round(time.Millisecond), delivered.Sub(bStarted).Round(time.Millisecond),
			metricAt(t, aMetrics, "valise_federation_transactions_total", `outcome="ok"`),
			metricAt(t, aMetrics, "valise_federation_transactions_total", `outcome="failed"`),
			time.Since(start).Round(time.Millisecond))
	})
}

func sumInts(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// TestFederationReplicasNoDoubleSend runs nodes a and b as two replicas
// each, every node on its own PostgreSQL database. Four devices, two on
// each replica of a, send to a user of b whose stream is open on b's
// second replica, while a's peer entry points at b's first: every
// envelope arrives exactly once and in order per sending device, and no
// envelope is sent twice (the outbox lease keeps a's replicas from
// sending the same batch), although both replicas of a send.
func TestFederationReplicasNoDoubleSend(t *testing.T) {
	const (
		senders = 4
		total   = 2000
		each    = total / senders
	)
	start := time.Now()
	dirA1 := newNamedNodeDir(t, "postgres", "a.example")
	dirA2 := copyNodeDir(t, dirA1)
	dirB1 := newNamedNodeDir(t, "postgres", "b.example")
	dirB2 := copyNodeDir(t, dirB1)
	fedConfig := func(dir string) config.Config { return testConfig(t, dir, fedTweak) }
	a1 := startNodeIn(t, dirA1, fedConfig(dirA1))
	b1 := startNodeIn(t, dirB1, fedConfig(dirB1))
	// The peer list lives in each node's database: the second replicas
	// load it when they start.
	addPeer(t, a1, dirB1, b1.ready.Federation)
	addPeer(t, b1, dirA1, a1.ready.Federation)
	a2 := startNodeIn(t, dirA2, fedConfig(dirA2))
	b2 := startNodeIn(t, dirB2, fedConfig(dirB2))

	b1.createUser(t, "bob", "bob-password")
	bob := b2.login(t, "bob", "bob-password")
	bobIn := readFedInbox(t, bob)
	a1.createUser(t, "alice", "alice-password")
	a1.createUser(t, "carol", "carol-password")
	// Devices 0 and 2 send through a1, 1 and 3 through a2.
	devs := []*device{
		a1.login(t, "alice", "alice-password"), a2.login(t, "alice", "alice-password"),
		a1.login(t, "carol", "carol-password"), a2.login(t, "carol", "carol-password"),
	}

	// Four phases: all devices at once, then only those of a2, then only
	// those of a1, then all at once again. Between phases a's queue
	// drains, so its lease is released: the phases through one replica
	// make that replica's sender take the queue over from the other.
	phases := []struct {
		devs []int
		n    int
	}{{[]int{0, 1, 2, 3}, 150}, {[]int{1, 3}, 200}, {[]int{0, 2}, 200}, {[]int{0, 1, 2, 3}, 150}}
	want := map[fedKey]string{}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = make([]int, senders)
	)
	for k, ph := range phases {
		for _, i := range ph.devs {
			d, from := devs[i], next[i]
			next[i] += ph.n
			wg.Go(func() {
				for seq := from; seq < from+ph.n; seq++ {
					ids, err := fedSend(t.Context(), d, fmt.Sprintf("fedrep-%d-%05d", i, seq), []*device{bob}, [][]byte{fedMsgBody(i, seq, 0)})
					if err != nil {
						t.Errorf("device %d: send %d: %v", i, seq, err)
						return
					}
					mu.Lock()
					want[fedKey{i, seq}] = ids[0]
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if k < len(phases)-1 {
			eventually(t, 30*time.Second, fmt.Sprintf("a's queue for b drained after phase %d", k+1), func() bool {
				return a1.peerState(t, "b.example").QueueDepth == 0
			})
		}
	}
	if len(want) != total {
		t.Fatalf("%d envelopes acknowledged, want %d", len(want), total)
	}
	sent := time.Now()

	waitInboxes(t, 60*time.Second, total, func() string {
		return fmt.Sprintf("a's delivery to b: %v", a1.peerState(t, "b.example"))
	}, bobIn)
	delivered := time.Now()
	eventually(t, 10*time.Second, "a's delivery state for b idle with an empty queue", func() bool {
		d1, d2 := a1.peerState(t, "b.example"), a2.peerState(t, "b.example")
		return d1.State == "idle" && d1.QueueDepth == 0 && d2.State == "idle" && d2.QueueDepth == 0
	})
	time.Sleep(500 * time.Millisecond) // a duplicate would arrive now
	checkFedInbox(t, bobIn, 0, devs, want)

	metric := func(nodes []*testNode, name, label string) (sum float64, per []float64) {
		for _, n := range nodes {
			v := n.metric(t, name, label)
			sum += v
			per = append(per, v)
		}
		return sum, per
	}
	for _, c := range []struct {
		nodes       []*testNode
		name, label string
		want        float64
	}{
		{[]*testNode{a1, a2}, "valise_federation_envelopes_sent_total", `result="duplicate"`, 0},
		{[]*testNode{a1, a2}, "valise_federation_envelopes_sent_total", `result="accepted"`, total},
		{[]*testNode{b1, b2}, "valise_federation_inbound_envelopes_total", `status="accepted"`, total},
		{[]*testNode{b1, b2}, "valise_federation_inbound_envelopes_total", `status="duplicate"`, 0},
	} {
		if got, per := metric(c.nodes, c.name, c.label); got != c.want {
			t.Errorf("%s{%s} summed over the replicas = %v (per replica %v), want %v", c.name, c.label, got, per, c.want)
		}
	}
	_, sentPer := metric([]*testNode{a1, a2}, "valise_federation_envelopes_sent_total", `result="accepted"`)
	if sentPer[0] == 0 || sentPer[1] == 0 {
		t.Errorf("envelopes sent by a's replicas: %v; want both to have sent some (the phases through one replica hand the queue over)", sentPer)
	}
	_, txPer := metric([]*testNode{a1, a2}, "valise_federation_transactions_total", `outcome="ok"`)
	_, inPer := metric([]*testNode{b1, b2}, "valise_federation_inbound_envelopes_total", `status="accepted"`)
	t.Logf("%d envelopes sent in %v (4 phases), all on b's second replica %v later; envelopes sent by a's replicas %v in %v transactions; accepted by b's replicas %v; total %v",
		total, sent.Sub(start).Round(time.Millisecond), delivered.Sub(sent).Round(time.Millisecond), sentPer, txPer, inPer, time.Since(start).Round(time.Millisecond))
}
