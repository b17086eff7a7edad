package federation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
	"github.com/valise-im/valise/storage"
)

// callLog counts, at a receiving node, the DeliverTransaction calls that
// carried each envelope id and each transaction id.
type callLog struct {
	mu        sync.Mutex
	envelopes map[string]int
	txs       map[string]int
}

func newCallLog() *callLog {
	return &callLog{envelopes: map[string]int{}, txs: map[string]int{}}
}

func (l *callLog) record(req any) {
	r, ok := req.(*federationv1.DeliverTransactionRequest)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.txs[r.GetTransactionId()]++
	for _, e := range r.GetEnvelopes() {
		l.envelopes[e.GetEnvelopeId()]++
	}
}

func (l *callLog) count(id valise.EnvelopeID) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.envelopes[string(id)]
}

func (l *callLog) hook() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		l.record(req)
		return handler(ctx, req)
	}
}

// wantInbox checks that a device's inbox holds exactly want, in order.
func wantInbox(n *testNode, local string, dev valise.DeviceID, want []sent) error {
	got := n.inbox(local, dev)
	if len(got) != len(want) {
		return fmt.Errorf("inbox of %s has %d envelopes, want %d", local, len(got), len(want))
	}
	for i, e := range got {
		if e.ID != want[i].id || string(e.Ciphertext) != want[i].ciphertext {
			return fmt.Errorf("inbox[%d] = %s %q, want %s %q", i, e.ID, e.Ciphertext, want[i].id, want[i].ciphertext)
		}
		if e.Sender.Node != nodeA || e.Failure != nil {
			return fmt.Errorf("inbox[%d] sender %v, failure %v", i, e.Sender, e.Failure)
		}
	}
	return nil
}

func TestDeliverInOrderExactlyOnce(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: func(c *OutboundConfig) {
		fastOutbound(c)
		c.BatchEnvelopes = 7 // several transactions
	}}, nodeOpts{})
	log := newCallLog()
	b.setHook(log.hook())
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}

	var want []sent
	for i := range 5 {
		var msgs []message
		for j := range 1 + i*2 {
			msgs = append(msgs, message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: fmt.Sprintf("m%d.%d", i, j)})
		}
		want = append(want, a.send(msgs...)...)
	}
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, want) })
	eventually(t, a.outboxEmpty)
	for _, w := range want {
		if n := log.count(w.id); n != 1 {
			t.Errorf("envelope %s sent %d times, want 1", w.id, n)
		}
	}
	b.mu.Lock()
	woken := len(b.delivered)
	b.mu.Unlock()
	if woken != len(want) {
		t.Errorf("Delivered hook got %d rows, want %d", woken, len(want))
	}
	eventually(t, func() error {
		st, err := a.store.GetDeliveryState(t.Context(), nodeB)
		if err != nil {
			return err
		}
		if st.LastSuccess.IsZero() || st.Failures != 0 {
			return fmt.Errorf("delivery state %+v", st)
		}
		return nil
	})
}

func TestResponseLostAfterCommit(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: fastOutbound}, nodeOpts{})
	log := newCallLog()
	var mu sync.Mutex
	dropped := 0
	b.setHook(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		log.record(req)
		resp, err := handler(ctx, req)
		mu.Lock()
		defer mu.Unlock()
		if _, ok := req.(*federationv1.DeliverTransactionRequest); ok && err == nil && dropped < 2 {
			// The receiver committed, then "crashed" before answering.
			dropped++
			return nil, status.Error(codes.Unavailable, "connection lost")
		}
		return resp, err
	})
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	want := a.send(
		message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "one"},
		message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "two"},
	)
	eventually(t, a.outboxEmpty)
	if err := wantInbox(b, "bob", bobDev, want); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.txs) != 1 {
		t.Errorf("retries used %d transaction ids, want 1: %v", len(log.txs), log.txs)
	}
	for id, n := range log.txs {
		if n != 3 {
			t.Errorf("transaction %s sent %d times, want 3", id, n)
		}
	}
}

func TestPermanentRejectionDeadLetters(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: fastOutbound}, nodeOpts{})
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	nobody := valise.UserID{Localpart: "nobody", Node: nodeB}
	first := a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "before"})
	lost := a.send(message{from: "alice", fromDev: aliceDev, to: nobody, toDev: bobDev, text: "lost"})
	last := a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "after"})
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, append(first, last...)) })
	eventually(t, a.outboxEmpty)

	dls, err := a.store.ListDeadLetters(t.Context(), nodeB, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].ID != lost[0].id || dls[0].Reason != valise.FailureUnknownRecipient {
		t.Fatalf("dead letters = %+v, want %s as %s", dls, lost[0].id, valise.FailureUnknownRecipient)
	}
	notes := a.inbox("alice", aliceDev)
	if len(notes) != 1 || notes[0].Failure == nil {
		t.Fatalf("alice's inbox = %+v, want one delivery-failure notice", notes)
	}
	f := notes[0].Failure
	if f.EnvelopeID != lost[0].id || f.Reason != valise.FailureUnknownRecipient || f.Recipient != nobody {
		t.Errorf("notice = %+v", f)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.notices) != 1 {
		t.Errorf("Delivered hook got %d notices, want 1", len(a.notices))
	}
}

func TestExpiredNeverSent(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: fastOutbound}, nodeOpts{})
	log := newCallLog()
	b.setHook(log.hook())
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	old := time.Now().Add(-2 * time.Hour)
	stale := a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "stale",
		serverAt: old, expireAt: old.Add(time.Hour)})
	fresh := a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "fresh"})
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, fresh) })
	eventually(t, a.outboxEmpty)
	if n := log.count(stale[0].id); n != 0 {
		t.Errorf("expired envelope sent %d times", n)
	}
	dls, err := a.store.ListDeadLetters(t.Context(), nodeB, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Reason != valise.FailureExpired {
		t.Errorf("dead letters = %+v, want one expired", dls)
	}
}

func TestNotPeerDeadLettered(t *testing.T) {
	a, _ := pair(t, nodeOpts{outbound: fastOutbound}, nodeOpts{})
	aliceDev := a.addUser("alice")
	lost := a.send(message{from: "alice", fromDev: aliceDev, to: valise.UserID{Localpart: "x", Node: nodeD},
		toDev: valise.NewDeviceID(), text: "to nowhere"})
	eventually(t, a.outboxEmpty)
	dls, err := a.store.ListDeadLetters(t.Context(), nodeD, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].ID != lost[0].id || dls[0].Reason != valise.FailureNotPeer {
		t.Errorf("dead letters = %+v, want one not_peer", dls)
	}
}

func TestPeerDownBacksOffThenDelivers(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: fastOutbound}, nodeOpts{})
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	b.stopServer()
	want := a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "hello"})
	eventually(t, func() error {
		st, err := a.store.GetDeliveryState(t.Context(), nodeB)
		if err != nil {
			return err
		}
		if st.Failures < 2 || st.LastError == "" || st.LastErrorAt.IsZero() || st.NextAttempt.IsZero() {
			return fmt.Errorf("delivery state %+v, want recorded failures", st)
		}
		if len(st.LastError) > 200 {
			t.Errorf("LastError is %d bytes", len(st.LastError))
		}
		return nil
	})
	b.serve()
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, want) })
	eventually(t, func() error {
		st, err := a.store.GetDeliveryState(t.Context(), nodeB)
		if err != nil {
			return err
		}
		if st.Failures != 0 || st.LastError != "" || st.LastSuccess.IsZero() {
			return fmt.Errorf("delivery state %+v, want success", st)
		}
		return nil
	})
}

// TestRetryAndContactWake runs with an hour of backoff: only Retry and a
// call from the peer can make the sender try again in time.
func TestRetryAndContactWake(t *testing.T) {
	slow := func(c *OutboundConfig) {
		c.BackoffMin = time.Hour
		c.BackoffMax = time.Hour
		c.Poll = 50 * time.Millisecond
		c.RPCTimeout = time.Second
	}
	a, b := pair(t, nodeOpts{outbound: slow}, nodeOpts{})
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}

	backingOff := func() error {
		st, err := a.store.GetDeliveryState(t.Context(), nodeB)
		if err != nil {
			return err
		}
		if time.Until(st.NextAttempt) < 30*time.Minute {
			return fmt.Errorf("delivery state %+v, want a long backoff", st)
		}
		return nil
	}

	// Retry (the admin's).
	b.stopServer()
	first := a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "first"})
	eventually(t, backingOff)
	b.serve()
	a.out.Retry(nodeB)
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, first) })

	// Contact: b calls a (any successful call).
	b.stopServer()
	second := a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "second"})
	eventually(t, backingOff)
	b.serve()
	if _, err := b.client(a).GetSigningKeys(t.Context(), &federationv1.GetSigningKeysRequest{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, append(first, second...)) })

	// A retry made through another replica: only the stored state says so.
	b.stopServer()
	third := a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "third"})
	eventually(t, backingOff)
	b.serve()
	st, err := a.store.GetDeliveryState(t.Context(), nodeB)
	if err != nil {
		t.Fatal(err)
	}
	st.NextAttempt = time.Time{}
	if err := a.store.SetDeliveryState(t.Context(), nodeB, st); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, append(append(first, second...), third...)) })
}

// TestTwoReplicas runs two Outbounds on one store: the lease lets only
// one send each batch.
func TestTwoReplicas(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: func(c *OutboundConfig) {
		fastOutbound(c)
		c.BatchEnvelopes = 5
		c.Owner = "replica-1"
	}}, nodeOpts{})
	second := NewOutbound(OutboundConfig{
		Self: a.name, Store: a.store, Trust: a.trust, Cert: static(a.cert), Owner: "replica-2",
		BatchEnvelopes: 5, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Poll: 10 * time.Millisecond, RPCTimeout: 2 * time.Second,
	})
	a.runOutbound(second)
	log := newCallLog()
	b.setHook(log.hook())
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	var want []sent
	for i := range 30 {
		m := message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: fmt.Sprintf("m%d", i)}
		want = append(want, a.send(m, m, m)...)
		second.Queued([]valise.NodeName{nodeB})
	}
	eventually(t, a.outboxEmpty)
	if err := wantInbox(b, "bob", bobDev, want); err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if n := log.count(w.id); n != 1 {
			t.Errorf("envelope %s sent %d times, want 1", w.id, n)
		}
	}
}

func TestCheckDestination(t *testing.T) {
	a, _ := pair(t, nodeOpts{noOutbound: true}, nodeOpts{noOutbound: true})
	if err := a.out.CheckDestination(nodeB); err != nil {
		t.Errorf("CheckDestination(peer) = %v", err)
	}
	for _, tc := range []struct {
		node valise.NodeName
		kind valise.Kind
	}{{nodeA, valise.KindInvalid}, {nodeC, valise.KindPermission}} {
		err := a.out.CheckDestination(tc.node)
		var e *valise.Error
		if !errors.As(err, &e) || e.Kind != tc.kind {
			t.Errorf("CheckDestination(%s) = %v, want kind %v", tc.node, err, tc.kind)
		}
	}
	// A blocked peer is refused too.
	if err := a.store.SetPeerBlocked(t.Context(), nodeB, true, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.trust.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.out.CheckDestination(nodeB); valise.KindOf(err) != valise.KindPermission {
		t.Errorf("CheckDestination(blocked) = %v", err)
	}
}

// TestBlockedPeerHeld checks that a blocked destination's queue is held,
// not given up, and flows after unblocking and Retry.
func TestBlockedPeerHeld(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: fastOutbound}, nodeOpts{})
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	if err := a.store.SetPeerBlocked(t.Context(), nodeB, true, nil); err != nil {
		t.Fatal(err)
	}
	want := a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "held"})
	eventually(t, func() error {
		st, err := a.store.GetDeliveryState(t.Context(), nodeB)
		if err != nil {
			return err
		}
		if st.LastError == "" {
			return errors.New("no hold recorded")
		}
		return nil
	})
	if err := a.outboxEmpty(); err == nil {
		t.Fatal("blocked peer's queue was dropped")
	}
	if err := a.store.SetPeerBlocked(t.Context(), nodeB, false, nil); err != nil {
		t.Fatal(err)
	}
	a.out.Retry(nodeB)
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, want) })
}

// TestBlockedPeerExpiry checks that the time to live holds while a peer
// is blocked: an expired envelope is given up, and its sender told.
func TestBlockedPeerExpiry(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: fastOutbound}, nodeOpts{})
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	if err := a.store.SetPeerBlocked(t.Context(), nodeB, true, nil); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	a.send(message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: "stale",
		serverAt: old, expireAt: old.Add(time.Hour)})
	eventually(t, a.outboxEmpty)
	dls, err := a.store.ListDeadLetters(t.Context(), nodeB, 0, 10)
	if err != nil || len(dls) != 1 || dls[0].Reason != valise.FailureExpired {
		t.Fatalf("dead letters = %+v, %v; want the expired envelope", dls, err)
	}
	if got := a.inbox("alice", aliceDev); len(got) != 1 || got[0].Failure == nil || got[0].Failure.Reason != valise.FailureExpired {
		t.Errorf("alice's inbox = %+v; want one expiry notice", got)
	}
}

// TestBatchSplitOnInvalidArgument makes the peer refuse transactions of
// more than one envelope as a whole: the sender halves its batch down to
// one and still delivers everything.
func TestBatchSplitOnInvalidArgument(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: fastOutbound}, nodeOpts{limits: Limits{MaxBatchEnvelopes: 1}})
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	var msgs []message
	for i := range 6 {
		msgs = append(msgs, message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: fmt.Sprint(i)})
	}
	want := a.send(msgs...)
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, want) })
	dls, err := a.store.ListDeadLetters(t.Context(), "", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 0 {
		t.Errorf("dead letters = %+v, want none", dls)
	}
}

func TestTransactionID(t *testing.T) {
	e := func(id string, attempt int) storage.OutboxEnvelope {
		return storage.OutboxEnvelope{ID: valise.EnvelopeID(id), Attempt: attempt}
	}
	x := transactionID([]storage.OutboxEnvelope{e("a", 0), e("b", 0)})
	if len(x) != 33 || x[0] != 't' {
		t.Errorf("transactionID = %q", x)
	}
	if y := transactionID([]storage.OutboxEnvelope{e("a", 0), e("b", 0)}); y != x {
		t.Errorf("same batch: %q != %q", y, x)
	}
	for _, other := range [][]storage.OutboxEnvelope{
		{e("a", 0)},
		{e("a", 0), e("b", 1)},
		{e("b", 0), e("a", 0)},
		{e("a", 0), e("b", 0), e("c", 0)},
	} {
		if y := transactionID(other); y == x {
			t.Errorf("batch %v reuses the id %q", other, x)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	o := NewOutbound(OutboundConfig{Self: nodeA, BackoffMin: time.Second, BackoffMax: 10 * time.Second})
	s := newSender(o, nodeB)
	for failures, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 60: 10 * time.Second} {
		lo, hi := base*4/5, min(base*6/5, 10*time.Second)
		var spread bool
		first := s.backoff(failures)
		for range 100 {
			d := s.backoff(failures)
			if d < lo || d > hi {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", failures, d, lo, hi)
			}
			spread = spread || d != first
		}
		if !spread {
			t.Errorf("backoff(%d) is always %v: no jitter", failures, first)
		}
	}
}

// remote mirrors server.Remote, which federation must not import:
// cmd/valised asserts the real interface.
type remote interface {
	CheckDestination(node valise.NodeName) error
	Queued(dests []valise.NodeName)
	Retry(node valise.NodeName)
	DeviceKeys(ctx context.Context, user valise.UserID) ([]valise.DeviceKeys, error)
	ClaimOneTimeKey(ctx context.Context, requester valise.UserID, requesterDevice valise.DeviceID,
		user valise.UserID, device valise.DeviceID) (valise.PreKey, bool, error)
}

var _ remote = (*Outbound)(nil)

// TestRateLimitedSenderWaits has the peer rate-limit the sender: it waits
// as RetryInfo says and delivers everything, in order, nothing given up.
func TestRateLimitedSenderWaits(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: func(c *OutboundConfig) {
		fastOutbound(c)
		c.BatchEnvelopes = 1
	}}, nodeOpts{limits: Limits{PeerRate: rateOf(2, 20)}})
	limited := 0
	var mu sync.Mutex
	b.setHook(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if status.Code(err) == codes.ResourceExhausted {
			mu.Lock()
			limited++
			mu.Unlock()
		}
		return resp, err
	})
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	var msgs []message
	for i := range 12 {
		msgs = append(msgs, message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: fmt.Sprint(i)})
	}
	want := a.send(msgs...)
	eventually(t, func() error { return wantInbox(b, "bob", bobDev, want) })
	mu.Lock()
	defer mu.Unlock()
	if limited == 0 {
		t.Error("the peer never rate-limited the sender; the test proves nothing")
	}
	dls, err := a.store.ListDeadLetters(t.Context(), "", 0, 10)
	if err != nil || len(dls) != 0 {
		t.Errorf("dead letters = %+v, %v; want none", dls, err)
	}
}

// TestRetryableAnswerKeepsItsPlace checks that an envelope the peer
// answers as retryable is sent again before the later envelopes of its
// sending device: the sender records such an answer before it reads the
// next batch (only answers where every envelope is done with are recorded
// while the next transaction is in flight).
func TestRetryableAnswerKeepsItsPlace(t *testing.T) {
	a, b := pair(t, nodeOpts{outbound: func(c *OutboundConfig) {
		fastOutbound(c)
		c.BatchEnvelopes = 5
	}}, nodeOpts{})
	var (
		mu      sync.Mutex
		held    string   // the envelope answered retryable once
		arrived []string // envelope ids in the order b committed them
	)
	b.setHook(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		r, ok := req.(*federationv1.DeliverTransactionRequest)
		if !ok {
			return handler(ctx, req)
		}
		mu.Lock()
		first := held == ""
		if first {
			held = r.GetEnvelopes()[0].GetEnvelopeId()
		}
		mu.Unlock()
		if !first {
			resp, err := handler(ctx, req)
			if err == nil {
				mu.Lock()
				for _, e := range r.GetEnvelopes() {
					arrived = append(arrived, e.GetEnvelopeId())
				}
				mu.Unlock()
			}
			return resp, err
		}
		// The first transaction: the peer takes all but the first
		// envelope, which it answers as retryable.
		rest := &federationv1.DeliverTransactionRequest{Origin: r.GetOrigin(), Destination: r.GetDestination(),
			TransactionId: r.GetTransactionId() + "-rest", Envelopes: r.GetEnvelopes()[1:]}
		resp, err := handler(ctx, rest)
		if err != nil {
			return nil, err
		}
		out := resp.(*federationv1.DeliverTransactionResponse)
		mu.Lock()
		for _, e := range rest.GetEnvelopes() {
			arrived = append(arrived, e.GetEnvelopeId())
		}
		mu.Unlock()
		results := append([]*federationv1.EnvelopeResult{{EnvelopeId: held}}, out.GetResults()...)
		return &federationv1.DeliverTransactionResponse{Results: results}, nil
	})
	aliceDev := a.addUser("alice")
	bobDev := b.addUser("bob")
	bob := valise.UserID{Localpart: "bob", Node: nodeB}
	var msgs []message
	for i := range 12 {
		msgs = append(msgs, message{from: "alice", fromDev: aliceDev, to: bob, toDev: bobDev, text: fmt.Sprintf("m%d", i)})
	}
	sentIDs := a.send(msgs...)
	eventually(t, a.outboxEmpty)
	mu.Lock()
	defer mu.Unlock()
	pos := map[string]int{}
	for i, id := range arrived {
		pos[id] = i
	}
	// The first batch is sentIDs[0:5]; the held envelope sentIDs[0] must
	// arrive before any envelope of a later batch.
	h, ok := pos[string(sentIDs[0].id)]
	if !ok || len(arrived) != len(sentIDs) {
		t.Fatalf("arrived %d envelopes %v, want all %d", len(arrived), arrived, len(sentIDs))
	}
	for _, s := range sentIDs[5:] {
		if pos[string(s.id)] < h {
			t.Errorf("envelope %s of a later batch arrived before the retried %s (order %v)", s.id, sentIDs[0].id, arrived)
		}
	}
}
