package storagetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

func testReceiveTransaction(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	mustUser(t, s, "bob", true)
	mustUser(t, s, "gone", false)
	a, _ := mustDevice(t, s, "alice")
	a2, _ := mustDevice(t, s, "alice")
	b, _ := mustDevice(t, s, "bob")
	sendOK(t, s, outboundSend(b, "local", local(a, "before"))) // a's inbox: cursor 1

	envs := []storage.InboundEnvelope{inbound(destB, a, "0"), inbound(destB, a2, "1"),
		inbound(destB, storage.Device{User: "nobody", ID: valise.NewDeviceID()}, "2"),
		inbound(destB, storage.Device{User: "alice", ID: valise.NewDeviceID()}, "3"),
		inbound(destB, storage.Device{User: "gone", ID: valise.NewDeviceID()}, "4"),
		inbound(destB, a, "5"), inbound(destB, a, "6"), inbound(destB, a, "7")}
	envs[5].ID = envs[0].ID                  // a duplicate within the transaction
	envs[6].Status = storage.InboundTooLarge // pre-judged: kept, not stored
	received := baseTime().Add(time.Hour)
	tx := &storage.InboundTransaction{Origin: destB, ID: "txn-1", Received: received, Envelopes: envs}
	res := receive(t, s, tx)
	wantStatuses := []storage.InboundStatus{storage.InboundAccepted, storage.InboundAccepted, storage.InboundUnknownRecipient,
		storage.InboundUnknownRecipient, storage.InboundRecipientDeactivated, storage.InboundDuplicate,
		storage.InboundTooLarge, storage.InboundAccepted}
	checkResult(t, "first delivery", res, false, wantStatuses...)
	wantDel := []storage.Delivery{{User: "alice", Device: a.ID, Cursor: 2}, {User: "alice", Device: a2.ID, Cursor: 1}, {User: "alice", Device: a.ID, Cursor: 3}}
	same(t, "Deliveries", wantDel, res.Deliveries)
	got := readAll(t, s, a)
	mustSame(t, "inbox cursors", []uint64{1, 2, 3}, cursors(got))
	e := got[1]
	if e.ID != envs[0].ID || e.Sender != (valise.UserID{Localpart: "carol", Node: destB}) || e.SenderDevice != envs[0].SenderDevice ||
		string(e.Ciphertext) != "0" || e.Failure != nil || e.RecipientDevice != a.ID {
		t.Errorf("inbound envelope: got %+v, want %+v from carol@%s", e, envs[0], destB)
	}
	checkTime(t, "inbound ServerTime", e.ServerTime, originTime())
	if got[2].ID != envs[7].ID {
		t.Errorf("second inbound envelope for a: got %s, want %s", got[2].ID, envs[7].ID)
	}
	same(t, "InboxDepth", int64(4), depth(t, s))
	// Cursors go on after inbound envelopes.
	same(t, "send after inbound envelopes", []storage.Delivery{{User: "alice", Device: a.ID, Cursor: 4}}, sendOK(t, s, outboundSend(b, "after", local(a, "x")))[0].Deliveries)

	// A replay, even with other envelopes, returns the first answer and
	// stores nothing.
	replay := &storage.InboundTransaction{Origin: destB, ID: "txn-1", Received: received.Add(time.Hour),
		Envelopes: []storage.InboundEnvelope{inbound(destB, a, "new"), inbound(destB, a, "new")}}
	r := receive(t, s, replay)
	if checkResult(t, "replay", r, true, wantStatuses...); len(r.Deliveries) != 0 {
		t.Errorf("replay: got deliveries %+v, want none", r.Deliveries)
	}
	same(t, "InboxDepth after replay", int64(5), depth(t, s))

	// Later transactions: an envelope accepted before is a duplicate, one
	// refused before may be accepted; ids and transaction ids are per origin.
	retried := envs[2]
	retried.Recipient, retried.RecipientDevice = "alice", a2.ID
	fromC := inbound(destC, a2, "c")
	fromC.ID = envs[0].ID
	checkResult(t, "accepted before or not", receive(t, s, &storage.InboundTransaction{Origin: destB, ID: "txn-2", Received: received,
		Envelopes: []storage.InboundEnvelope{envs[0], envs[7], retried}}), false, storage.InboundDuplicate, storage.InboundDuplicate, storage.InboundAccepted)
	checkResult(t, "same ids from another origin", receive(t, s, &storage.InboundTransaction{Origin: destC, ID: "txn-1", Received: received,
		Envelopes: []storage.InboundEnvelope{fromC}}), false, storage.InboundAccepted)
	empty := &storage.InboundTransaction{Origin: destB, ID: "txn-3", Received: received}
	checkResult(t, "empty transaction", receive(t, s, empty), false)
	checkResult(t, "replay of an empty transaction", receive(t, s, empty), true)
	got2 := readAll(t, s, a2)
	if len(got2) != 3 || got2[1].ID != retried.ID || got2[2].ID != envs[0].ID || got2[2].Sender.Node != destC {
		t.Errorf("a2's inbox: got %+v, want the retried envelope then %s's", got2, destC)
	}
}

func testReceiveConcurrent(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	a, _ := mustDevice(t, s, "alice")
	var envs []storage.InboundEnvelope
	for i := range 5 {
		envs = append(envs, inbound(destB, a, fmt.Sprint(i)))
	}
	// Eight callers deliver the same envelopes in two transactions, each
	// transaction by four of them.
	const callers = 8
	results := make([]*storage.InboundResult, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			tx := &storage.InboundTransaction{Origin: destB, ID: fmt.Sprint("txn-", c%2), Received: baseTime(), Envelopes: slices.Clone(envs)}
			r, err := s.ReceiveTransaction(t.Context(), tx)
			if err != nil {
				t.Errorf("caller %d: ReceiveTransaction: %v", c, err)
			}
			results[c] = r
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	first := map[int][]storage.InboundStatus{} // transaction -> the answer of its one commit
	accepted := make([]int, len(envs))
	for c, r := range results {
		if r.Replayed {
			continue
		}
		if _, dup := first[c%2]; dup {
			t.Errorf("transaction %d committed twice", c%2)
		}
		first[c%2] = r.Statuses
		for i, st := range r.Statuses {
			if st == storage.InboundAccepted {
				accepted[i]++
			} else if st != storage.InboundDuplicate {
				t.Errorf("envelope %d: got status %v, want accepted or duplicate", i, st)
			}
		}
	}
	if !slices.Equal(accepted, []int{1, 1, 1, 1, 1}) {
		t.Errorf("acceptances per envelope: got %v, want one each", accepted)
	}
	for c, r := range results {
		if r.Replayed && !cmp.Equal(r.Statuses, first[c%2]) {
			t.Errorf("caller %d: replay got %v, want the first answer %v", c, r.Statuses, first[c%2])
		}
	}
	if got := readAll(t, s, a); !cmp.Equal(cursors(got), []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("inbox after concurrent deliveries: got cursors %v, want 1..5", cursors(got))
	}
}
