package postgres_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// inboundTo returns a pending envelope from carol@b.example to d.
func inboundTo(d storage.Device, id valise.EnvelopeID) storage.InboundEnvelope {
	return storage.InboundEnvelope{ID: id, Sender: valise.UserID{Localpart: "carol", Node: "b.example"},
		SenderDevice: "DVCAROLCAROLCAROL2", Recipient: d.User, RecipientDevice: d.ID,
		OriginTime: time.Now(), Ciphertext: []byte("ct")}
}

// TestReplicasReceiveTransactions runs deliveries from another node on two
// replicas at once, beside group commits to the same devices: transactions
// delivered twice, and envelope ids shared by several transactions in
// different orders. Each transaction must commit once, each envelope land
// once, and cursors stay consecutive.
func TestReplicasReceiveTransactions(t *testing.T) {
	rs := replicas(t)
	ds := setUp(t, rs[0], "alice", "bob")
	const txns, envelopes = 12, 6
	var ids []valise.EnvelopeID
	for range envelopes {
		ids = append(ids, valise.NewEnvelopeID(time.Now()))
	}
	results := make([]*storage.InboundResult, 2*txns)
	errs := make([]error, len(results)+txns)
	var wg sync.WaitGroup
	for c := range results {
		wg.Go(func() {
			in := &storage.InboundTransaction{Origin: "b.example", ID: fmt.Sprint("txn-", c%txns), Received: time.Now()}
			for i := range envelopes {
				j := (i + c) % envelopes // each transaction its own order
				if c%2 == 1 {
					j = envelopes - 1 - j
				}
				in.Envelopes = append(in.Envelopes, inboundTo(ds[j%2], ids[j]))
			}
			results[c], errs[c] = rs[c%2].ReceiveTransaction(t.Context(), in)
		})
	}
	for w := range txns {
		wg.Go(func() {
			batch := &storage.Batch{Sends: []storage.SendOp{send("DVSENDERSENDERSEND", "", ds[w%2], ds[(w+1)%2])}}
			_, errs[len(results)+w] = rs[w%2].CommitBatch(t.Context(), batch)
		})
	}
	wg.Wait()
	for c, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", c, err)
		}
	}
	first := make(map[int][]storage.InboundStatus)
	accepted := 0
	for c, r := range results {
		if r.Replayed {
			continue
		}
		if _, dup := first[c%txns]; dup {
			t.Errorf("transaction %d committed twice", c%txns)
		}
		first[c%txns] = r.Statuses
		for _, st := range r.Statuses {
			if st == storage.InboundAccepted {
				accepted++
			}
		}
	}
	if len(first) != txns || accepted != envelopes {
		t.Errorf("got %d transactions committed, %d envelopes accepted; want %d, %d", len(first), accepted, txns, envelopes)
	}
	for c, r := range results {
		if r.Replayed && !slices.Equal(r.Statuses, first[c%txns]) {
			t.Errorf("caller %d: replay %v, want the first answer %v", c, r.Statuses, first[c%txns])
		}
	}
	for _, d := range ds {
		envs, err := rs[1].ReadInbox(t.Context(), d.User, d.ID, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if want := envelopes/2 + txns; len(envs) != want {
			t.Errorf("%s: got %d envelopes, want %d", d.User, len(envs), want)
		}
		for i, e := range envs {
			if e.Cursor != uint64(i+1) {
				t.Fatalf("%s: envelope %d has cursor %d", d.User, i, e.Cursor)
			}
		}
	}
}

// TestReplicasOutboxLease races replicas for a lease, and a fenced
// FinishOutbox against its takeover.
func TestReplicasOutboxLease(t *testing.T) {
	rs := replicas(t)
	a := setUp(t, rs[0], "alice")[0]
	now := time.Now()
	for round := range 20 {
		dest := valise.NodeName(fmt.Sprintf("n%d.example", round))
		var got [4]bool
		var wg sync.WaitGroup
		for w := range got {
			wg.Go(func() {
				ok, err := rs[w%2].AcquireOutboxLease(t.Context(), dest, fmt.Sprint("w", w), now, now.Add(time.Minute))
				if err != nil {
					t.Error(err)
				}
				got[w] = ok
			})
		}
		wg.Wait()
		if n := len(slices.DeleteFunc(got[:], func(ok bool) bool { return !ok })); n != 1 {
			t.Fatalf("round %d: %d owners got the lease, want 1", round, n)
		}
	}

	// A holder finishing as its lease is taken over: the finish either
	// commits before the takeover or is fenced and writes nothing.
	op := storage.SendOp{Sender: valise.UserID{Localpart: "alice", Node: "a.example"}, SenderDevice: a.ID,
		ServerTime: now, ExpireTime: now.Add(time.Hour)}
	const rounds = 20
	for range rounds {
		op.Envelopes = append(op.Envelopes, storage.NewEnvelope{ID: valise.NewEnvelopeID(now),
			RecipientNode: "x.example", Recipient: "bob", RecipientDevice: "DVBOBBOBBOBBOBBOB1"})
	}
	if _, err := rs[0].CommitBatch(t.Context(), &storage.Batch{Sends: []storage.SendOp{op}}); err != nil {
		t.Fatal(err)
	}
	q, err := rs[0].ReadOutbox(t.Context(), "x.example", 100, 1<<20, nil)
	if err != nil || len(q) != rounds {
		t.Fatalf("ReadOutbox: %d, %v", len(q), err)
	}
	finished := 0
	for i, e := range q {
		at := now.Add(time.Duration(i) * time.Hour)
		if ok, err := rs[0].AcquireOutboxLease(t.Context(), "x.example", "old", at, at.Add(time.Minute)); err != nil || !ok {
			t.Fatalf("AcquireOutboxLease: %v, %v", ok, err)
		}
		var finishErr, takeErr error
		var took bool
		var wg sync.WaitGroup
		wg.Go(func() {
			_, finishErr = rs[0].FinishOutbox(t.Context(), "x.example", "old", at.Add(time.Second),
				[]storage.OutboxOutcome{{Seq: e.Seq, DeadLetter: valise.FailureExpired}})
		})
		wg.Go(func() {
			// The old lease looks expired to this taker.
			took, takeErr = rs[1].AcquireOutboxLease(t.Context(), "x.example", "new", at.Add(time.Minute), at.Add(2*time.Minute))
		})
		wg.Wait()
		if takeErr != nil || !took {
			t.Fatalf("round %d: takeover: %v, %v", i, took, takeErr)
		}
		switch {
		case finishErr == nil:
			finished++
		case !errors.Is(finishErr, storage.ErrPrecondition):
			t.Fatalf("round %d: FinishOutbox: %v", i, finishErr)
		}
	}
	t.Logf("%d of %d finishes committed before the takeover", finished, rounds)
	dls, err := rs[1].ListDeadLetters(t.Context(), "x.example", 0, 100)
	if err != nil || len(dls) != finished {
		t.Errorf("ListDeadLetters: got %d, %v; want %d", len(dls), err, finished)
	}
	envs, err := rs[1].ReadInbox(t.Context(), "alice", a.ID, 0, 100)
	if err != nil || len(envs) != finished {
		t.Errorf("notices: got %d, %v; want %d", len(envs), err, finished)
	}
	left, err := rs[1].ReadOutbox(t.Context(), "x.example", 100, 1<<20, nil)
	if err != nil || len(left) != rounds-finished {
		t.Errorf("outbox: got %d, %v; want %d", len(left), err, rounds-finished)
	}
}

// TestReplicasFederationEvents checks that inbound envelopes and
// delivery-failure notices wake the inbox streams of every replica.
func TestReplicasFederationEvents(t *testing.T) {
	rs := replicas(t)
	ds := setUp(t, rs[0], "alice", "bob")
	a, b := ds[0], ds[1]
	listeners := []<-chan storage.Event{listenEvents(t, rs[0]), listenEvents(t, rs[1])}
	now := time.Now()
	op := storage.SendOp{Sender: valise.UserID{Localpart: "alice", Node: "a.example"}, SenderDevice: a.ID,
		ServerTime: now, ExpireTime: now.Add(time.Hour), Envelopes: []storage.NewEnvelope{{ID: valise.NewEnvelopeID(now),
			RecipientNode: "x.example", Recipient: "zed", RecipientDevice: "DVZEDZEDZEDZEDZED1"}}}
	if _, err := rs[0].CommitBatch(t.Context(), &storage.Batch{Sends: []storage.SendOp{op}}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs[1].ReceiveTransaction(t.Context(), &storage.InboundTransaction{Origin: "b.example", ID: "t",
		Received: now, Envelopes: []storage.InboundEnvelope{inboundTo(b, valise.NewEnvelopeID(now))}}); err != nil {
		t.Fatal(err)
	}
	if ok, err := rs[1].AcquireOutboxLease(t.Context(), "x.example", "w", now, now.Add(time.Minute)); err != nil || !ok {
		t.Fatalf("AcquireOutboxLease: %v, %v", ok, err)
	}
	q, err := rs[1].ReadOutbox(t.Context(), "x.example", 10, 1000, nil)
	if err != nil || len(q) != 1 {
		t.Fatalf("ReadOutbox: %d, %v", len(q), err)
	}
	if _, err := rs[1].FinishOutbox(t.Context(), "x.example", "w", now,
		[]storage.OutboxOutcome{{Seq: q[0].Seq, DeadLetter: valise.FailureRejected}}); err != nil {
		t.Fatal(err)
	}
	for i, ch := range listeners {
		if e := nextEvent(t, ch); e != inboxEvent(b) {
			t.Errorf("store %d: first event %+v, want %+v", i, e, inboxEvent(b))
		}
		if e := nextEvent(t, ch); e != inboxEvent(a) {
			t.Errorf("store %d: second event %+v, want %+v", i, e, inboxEvent(a))
		}
	}
}
