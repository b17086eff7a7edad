package storagetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// The nodes of the federation tests: this node and two destinations.
const (
	localNode valise.NodeName = "a.example"
	destB     valise.NodeName = "b.example"
	destC     valise.NodeName = "c.example"
)

// remoteDevice is the recipient device of envelopes for other nodes.
const remoteDevice valise.DeviceID = "DVREMOTEREMOTEREMO"

// remote returns an envelope for localpart at node with a fresh id.
func remote(node valise.NodeName, localpart, ct string) storage.NewEnvelope {
	return storage.NewEnvelope{ID: valise.NewEnvelopeID(baseTime()), RecipientNode: node, Recipient: localpart,
		RecipientDevice: remoteDevice, Ciphertext: []byte(ct)}
}

// local returns an envelope for device d of this node with a fresh id.
func local(d storage.Device, ct string) storage.NewEnvelope {
	return storage.NewEnvelope{ID: valise.NewEnvelopeID(baseTime()), Recipient: d.User, RecipientDevice: d.ID, Ciphertext: []byte(ct)}
}

// outboundSend returns a send of envs by the local device from.
func outboundSend(from storage.Device, key string, envs ...storage.NewEnvelope) storage.SendOp {
	return storage.SendOp{Sender: valise.UserID{Localpart: from.User, Node: localNode}, SenderDevice: from.ID,
		IdempotencyKey: key, ServerTime: baseTime(), ExpireTime: baseTime().Add(24 * time.Hour), Envelopes: envs}
}

// sendOK commits ops in one batch and fails the test if one is refused.
func sendOK(t *testing.T, s storage.Store, ops ...storage.SendOp) []storage.SendResult {
	t.Helper()
	res := commit(t, s, &storage.Batch{Sends: ops})
	for i, r := range res.Sends {
		if r.Err != nil {
			t.Fatalf("send %d: %v", i, r.Err)
		}
	}
	return res.Sends
}

// outbox returns the whole outbox of dest.
func outbox(t *testing.T, s storage.Store, dest valise.NodeName) []storage.OutboxEnvelope {
	t.Helper()
	return noErr(s.ReadOutbox(t.Context(), dest, 100000, 1<<30, nil))(t, fmt.Sprintf("ReadOutbox(%s)", dest))
}

// idsOf returns the envelope id of each x, in order.
func idsOf[T, ID any](xs []T, id func(T) ID) []ID {
	var ids []ID
	for _, x := range xs {
		ids = append(ids, id(x))
	}
	return ids
}

func outboxIDs(envs []storage.OutboxEnvelope) []valise.EnvelopeID {
	return idsOf(envs, func(e storage.OutboxEnvelope) valise.EnvelopeID { return e.ID })
}

func outboxSeqs(envs []storage.OutboxEnvelope) []int64 {
	return idsOf(envs, func(e storage.OutboxEnvelope) int64 { return e.Seq })
}

func deadLetterIDs(dls []storage.DeadLetter) []valise.EnvelopeID {
	return idsOf(dls, func(dl storage.DeadLetter) valise.EnvelopeID { return dl.ID })
}

// snapshot sums up what the federation tests observe of s, to prove that
// a failed call wrote nothing.
func snapshot(t *testing.T, s storage.Store) string {
	t.Helper()
	var b strings.Builder
	for _, d := range []valise.NodeName{destB, destC} {
		for _, e := range outbox(t, s, d) {
			fmt.Fprintf(&b, "%s:%d:%s:%d ", d, e.Seq, e.ID, e.Attempt)
		}
	}
	for _, dl := range deadLetters(t, s, "") {
		fmt.Fprintf(&b, "dead:%d:%s ", dl.Seq, dl.ID)
	}
	fmt.Fprintf(&b, "inbox:%d", depth(t, s))
	return b.String()
}

// mustLease gives owner dest's lease from now for an hour.
func mustLease(t *testing.T, s storage.Store, dest valise.NodeName, owner string, now time.Time) {
	t.Helper()
	ok, err := s.AcquireOutboxLease(t.Context(), dest, owner, now, now.Add(time.Hour))
	if err != nil || !ok {
		t.Fatalf("AcquireOutboxLease(%s, %s): got %v, %v; want true, nil", dest, owner, ok, err)
	}
}

// finish applies outcomes to dest's outbox and fails the test on an error.
func finish(t *testing.T, s storage.Store, dest valise.NodeName, owner string, now time.Time, outcomes ...storage.OutboxOutcome) []storage.Delivery {
	t.Helper()
	return noErr(s.FinishOutbox(t.Context(), dest, owner, now, outcomes))(t, fmt.Sprintf("FinishOutbox(%s, %s)", dest, owner))
}

// deadLetters returns every dead letter of dest ("" for all).
func deadLetters(t *testing.T, s storage.Store, dest valise.NodeName) []storage.DeadLetter {
	t.Helper()
	return noErr(s.ListDeadLetters(t.Context(), dest, 0, 100000))(t, fmt.Sprintf("ListDeadLetters(%q)", dest))
}

// originTime is when the origin of inbound envelopes accepted them.
func originTime() time.Time { return baseTime().Add(-time.Minute) }

// inbound returns a pending envelope from carol at origin to device to.
func inbound(origin valise.NodeName, to storage.Device, ct string) storage.InboundEnvelope {
	return storage.InboundEnvelope{ID: valise.NewEnvelopeID(baseTime()), Sender: valise.UserID{Localpart: "carol", Node: origin},
		SenderDevice: "DVCAROLCAROLCAROL2", Recipient: to.User, RecipientDevice: to.ID,
		OriginTime: originTime(), Ciphertext: []byte(ct)}
}

// receive commits tx and fails the test on an error.
func receive(t *testing.T, s storage.Store, tx *storage.InboundTransaction) *storage.InboundResult {
	t.Helper()
	return noErr(s.ReceiveTransaction(t.Context(), tx))(t, fmt.Sprintf("ReceiveTransaction(%s, %s)", tx.Origin, tx.ID))
}

// checkResult reports an error unless r has the given Replayed and
// statuses.
func checkResult(t *testing.T, what string, r *storage.InboundResult, replayed bool, want ...storage.InboundStatus) {
	t.Helper()
	if r.Replayed != replayed || !cmp.Equal(want, r.Statuses, cmpopts.EquateEmpty()) {
		t.Errorf("%s: got replayed %v, statuses %v; want %v, %v", what, r.Replayed, r.Statuses, replayed, want)
	}
}

// stats returns OutboxStats of s.
func stats(t *testing.T, s storage.Store) []storage.OutboxStat {
	t.Helper()
	return noErr(s.OutboxStats(t.Context()))(t, "OutboxStats")
}

// same reports whether want and got are equal (an empty slice equals
// nil) and reports an error if not.
func same(t *testing.T, what string, want, got any) bool {
	t.Helper()
	diff := cmp.Diff(want, got, cmpopts.EquateEmpty())
	if diff != "" {
		t.Errorf("%s (-want +got):\n%s", what, diff)
	}
	return diff == ""
}

// noErr returns v through a function that first ends the test if err is
// not nil: got := noErr(s.OutboxStats(ctx))(t, "OutboxStats").
func noErr[T any](v T, err error) func(t *testing.T, what string) T {
	return func(t *testing.T, what string) T {
		t.Helper()
		must(t, what, err)
		return v
	}
}

// must ends the test if err is not nil.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// mustSame is same but ends the test if they differ.
func mustSame(t *testing.T, what string, want, got any) {
	t.Helper()
	if !same(t, what, want, got) {
		t.FailNow()
	}
}

func testFederation(t *testing.T, open opener) {
	t.Run("Outbox", func(t *testing.T) { testOutbox(t, open) })
	t.Run("ReadOutboxLimits", func(t *testing.T) { testReadOutboxLimits(t, open) })
	t.Run("Lease", func(t *testing.T) { testLease(t, open) })
	t.Run("FinishOutbox", func(t *testing.T) { testFinishOutbox(t, open) })
	t.Run("DeadLetters", func(t *testing.T) { testDeadLetters(t, open) })
	t.Run("DeliveryState", func(t *testing.T) { testDeliveryState(t, open) })
	t.Run("ReceiveTransaction", func(t *testing.T) { testReceiveTransaction(t, open) })
	t.Run("ReceiveConcurrent", func(t *testing.T) { testReceiveConcurrent(t, open) })
	t.Run("PruneFederation", func(t *testing.T) { testPruneFederation(t, open) })
	t.Run("SigningKeys", func(t *testing.T) { testSigningKeys(t, open) })
	t.Run("OutboxNeedsExpiry", func(t *testing.T) { testOutboxNeedsExpiry(t, open) })
	t.Run("Context", func(t *testing.T) { testFederationContext(t, open) })
}

func testOutbox(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	mustUser(t, s, "bob", true)
	mustUser(t, s, "gone", false)
	a, _ := mustDevice(t, s, "alice")
	b, _ := mustDevice(t, s, "bob")
	// Recipients on other nodes are not checked here: "gone" is a
	// deactivated local user and "nobody" no local user at all.
	first := outboundSend(a, "k1", remote(destB, "bob", "ct-1"), local(b, "ct-2"), remote(destC, "nobody", "ct-3"), remote(destB, "gone", "ct-4"))
	second := outboundSend(a, "k2", remote(destC, "carol", "ct-5"))
	second.ServerTime = baseTime().Add(time.Second)
	res := sendOK(t, s, first, second)
	same(t, "IDs", idsOf(first.Envelopes, func(e storage.NewEnvelope) valise.EnvelopeID { return e.ID }), res[0].IDs)
	same(t, "Deliveries", []storage.Delivery{{User: "bob", Device: b.ID, Cursor: 1}}, res[0].Deliveries)
	same(t, "Outbound, sorted", []valise.NodeName{destB, destC}, slices.Sorted(slices.Values(res[0].Outbound)))
	if !cmp.Equal(res[1].Outbound, []valise.NodeName{destC}) || len(res[1].Deliveries) != 0 {
		t.Errorf("second send: got Outbound %v, Deliveries %v; want [%s], none", res[1].Outbound, res[1].Deliveries, destC)
	}
	if got := readAll(t, s, b); len(got) != 1 || got[0].ID != first.Envelopes[1].ID || string(got[0].Ciphertext) != "ct-2" {
		t.Errorf("bob's inbox: got %+v, want the one local envelope", got)
	}
	same(t, "InboxDepth (remote envelopes touch no inbox)", int64(1), depth(t, s))

	gotB, gotC := outbox(t, s, destB), outbox(t, s, destC)
	mustSame(t, fmt.Sprintf("outbox of %s", destB), []valise.EnvelopeID{first.Envelopes[0].ID, first.Envelopes[3].ID}, outboxIDs(gotB))
	mustSame(t, fmt.Sprintf("outbox of %s", destC), []valise.EnvelopeID{first.Envelopes[2].ID, second.Envelopes[0].ID}, outboxIDs(gotC))
	want := storage.OutboxEnvelope{Seq: gotB[0].Seq, ID: first.Envelopes[0].ID, Destination: destB, Sender: "alice",
		SenderDevice: a.ID, Recipient: "bob", RecipientDevice: remoteDevice, ServerTime: baseTime(),
		ExpireTime: baseTime().Add(24 * time.Hour), Ciphertext: []byte("ct-1")}
	same(t, "outbox envelope", want, gotB[0])
	checkTime(t, "ServerTime", gotB[0].ServerTime, want.ServerTime)
	checkTime(t, "ExpireTime", gotB[0].ExpireTime, want.ExpireTime)
	checkTime(t, "second ServerTime", gotC[1].ServerTime, second.ServerTime)
	wantStats := []storage.OutboxStat{{Destination: destB, Depth: 2, Oldest: baseTime()}, {Destination: destC, Depth: 2, Oldest: baseTime()}}
	same(t, "OutboxStats", wantStats, stats(t, s))
	// Seq follows commit and request order across destinations.
	if seqs := []int64{gotB[0].Seq, gotC[0].Seq, gotB[1].Seq, gotC[1].Seq}; !slices.IsSorted(seqs) || seqs[0] == seqs[1] || seqs[1] == seqs[2] || seqs[2] == seqs[3] {
		t.Errorf("seqs in request order: got %v, want strictly increasing", seqs)
	}

	// A replay returns every id of the first send and queues nothing.
	before := snapshot(t, s)
	retry := outboundSend(a, "k1", remote(destB, "bob", "ct-1"), local(b, "ct-2"), remote(destC, "nobody", "ct-3"), remote(destB, "gone", "ct-4"))
	r := commit(t, s, &storage.Batch{Sends: []storage.SendOp{retry}}).Sends[0]
	if r.Err != nil || !r.Replayed || len(r.Outbound) != 0 || len(r.Deliveries) != 0 || !cmp.Equal(r.IDs, res[0].IDs) {
		t.Errorf("replay: got %+v, want a replay of %v with no Outbound or Deliveries", r, res[0].IDs)
	}
	// A refused local recipient refuses the whole send: nothing is queued.
	bad := outboundSend(a, "k3", remote(destB, "bob", "ct-6"), local(storage.Device{User: "alice", ID: valise.NewDeviceID()}, "ct-7"))
	r = commit(t, s, &storage.Batch{Sends: []storage.SendOp{bad}}).Sends[0]
	if valise.KindOf(r.Err) != valise.KindNotFound || len(r.Outbound) != 0 {
		t.Errorf("send to a missing local device: got err %v, Outbound %v; want NotFound, none", r.Err, r.Outbound)
	}
	if got := snapshot(t, s); got != before {
		t.Errorf("after a replay and a refused send: got %q, want %q", got, before)
	}
}

func testReadOutboxLimits(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	a, _ := mustDevice(t, s, "alice")
	ten := string(bytes.Repeat([]byte{'x'}, 10))
	first := outboundSend(a, "k1", remote(destB, "bob", ten), remote(destB, "bob", ten), remote(destC, "bob", string(make([]byte, 100))))
	second := outboundSend(a, "k2", remote(destB, "bob", ten), remote(destC, "bob", "y"))
	sendOK(t, s, first)
	sendOK(t, s, second)
	inB := []valise.EnvelopeID{first.Envelopes[0].ID, first.Envelopes[1].ID, second.Envelopes[0].ID}
	inC := []valise.EnvelopeID{first.Envelopes[2].ID, second.Envelopes[1].ID}
	seqB := outboxSeqs(noErr(s.ReadOutbox(t.Context(), destB, 10, 1000, nil))(t, "ReadOutbox"))
	tests := []struct {
		name            string
		dest            valise.NodeName
		limit, maxBytes int
		skip            []int64
		want            []valise.EnvelopeID
	}{
		{"all", destB, 10, 1000, nil, inB},
		{"limit", destB, 2, 1000, nil, inB[:2]},
		{"limit one", destB, 1, 1000, nil, inB[:1]},
		{"bytes for all exactly", destB, 10, 30, nil, inB},
		{"bytes for two", destB, 10, 29, nil, inB[:2]},
		{"bytes for two exactly", destB, 10, 20, nil, inB[:2]},
		{"bytes for one", destB, 10, 19, nil, inB[:1]},
		{"first whatever its size", destB, 10, 5, nil, inB[:1]},
		{"big first alone", destC, 10, 50, nil, inC[:1]},
		{"big first and the next", destC, 10, 101, nil, inC},
		{"limit zero", destB, 0, 1000, nil, nil},
		{"unknown destination", "d.example", 10, 1000, nil, nil},
		{"skip the first", destB, 10, 1000, seqB[:1], inB[1:]},
		{"skip the middle", destB, 10, 1000, seqB[1:2], []valise.EnvelopeID{inB[0], inB[2]}},
		{"skip the first two, limit one", destB, 1, 1000, seqB[:2], inB[2:]},
		{"skip the first, bytes for one", destB, 10, 10, seqB[:1], inB[1:2]},
		{"skip the first, whatever its size", destB, 10, 5, seqB[:1], inB[1:2]},
		{"skip all", destB, 10, 1000, seqB, nil},
		{"skip another destination's", destC, 10, 1000, seqB, inC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := noErr(s.ReadOutbox(t.Context(), tt.dest, tt.limit, tt.maxBytes, tt.skip))(t, "ReadOutbox")
			same(t, fmt.Sprintf("ReadOutbox(%s, %d, %d, %v)", tt.dest, tt.limit, tt.maxBytes, tt.skip), tt.want, outboxIDs(got))
		})
	}
}

func testLease(t *testing.T, open opener) {
	s := open(t)
	now := baseTime()
	steps := []struct {
		name     string
		release  bool
		dest     valise.NodeName
		owner    string
		at, till time.Duration
		want     bool
	}{
		{"first owner takes it", false, destB, "w1", 0, 10 * time.Second, true},
		{"another owner is refused", false, destB, "w2", time.Second, 30 * time.Second, false},
		{"the holder renews", false, destB, "w1", 5 * time.Second, 20 * time.Second, true},
		{"refused within the renewal", false, destB, "w2", 15 * time.Second, 30 * time.Second, false},
		{"another destination is free", false, destC, "w2", 15 * time.Second, 30 * time.Second, true},
		{"taken once expired", false, destB, "w2", 21 * time.Second, 40 * time.Second, true},
		{"the old holder is refused", false, destB, "w1", 22 * time.Second, 50 * time.Second, false},
		{"release by a non-holder", true, destB, "w1", 0, 0, false},
		{"still refused", false, destB, "w1", 23 * time.Second, 50 * time.Second, false},
		{"release by the holder", true, destB, "w2", 0, 0, false},
		{"free after release", false, destB, "w1", 24 * time.Second, 50 * time.Second, true},
		{"the releaser is now refused", false, destB, "w2", 25 * time.Second, 50 * time.Second, false},
	}
	for _, st := range steps {
		if st.release {
			must(t, fmt.Sprintf("%s: ReleaseOutboxLease", st.name), s.ReleaseOutboxLease(t.Context(), st.dest, st.owner))
			continue
		}
		got := noErr(s.AcquireOutboxLease(t.Context(), st.dest, st.owner, now.Add(st.at), now.Add(st.till)))(t, fmt.Sprintf("%s: AcquireOutboxLease", st.name))
		if got != st.want {
			t.Errorf("%s: AcquireOutboxLease(%s, %s): got %v, want %v", st.name, st.dest, st.owner, got, st.want)
		}
	}
}

func testFinishOutbox(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	a, _ := mustDevice(t, s, "alice")
	other, _ := mustDevice(t, s, "alice")
	sendOK(t, s, outboundSend(other, "local", local(a, "hello"))) // a's inbox: cursor 1
	op := outboundSend(a, "k1", remote(destB, "bob", "1"), remote(destB, "bob", "2"), remote(destB, "bob", "3"),
		remote(destB, "bob", "4"), remote(destC, "bob", "5"))
	sendOK(t, s, op)
	q := outbox(t, s, destB)
	seqC := outbox(t, s, destC)[0].Seq
	now := baseTime().Add(time.Minute)
	mustLease(t, s, destB, "w1", now)

	notices := finish(t, s, destB, "w1", now,
		storage.OutboxOutcome{Seq: q[0].Seq, Delivered: true},
		storage.OutboxOutcome{Seq: q[1].Seq, DeadLetter: valise.FailureUnknownRecipient},
		storage.OutboxOutcome{Seq: q[2].Seq},                                    // retry
		storage.OutboxOutcome{Seq: seqC, Delivered: true},                       // another destination's: ignored
		storage.OutboxOutcome{Seq: q[3].Seq + 1000, Delivered: true},            // not queued: ignored
		storage.OutboxOutcome{Seq: q[0].Seq, DeadLetter: valise.FailureInvalid}, // no longer queued: ignored
	)
	same(t, "notices", []storage.Delivery{{User: "alice", Device: a.ID, Cursor: 2}}, notices)
	left := outbox(t, s, destB)
	mustSame(t, "outbox after FinishOutbox", []valise.EnvelopeID{q[2].ID, q[3].ID}, outboxIDs(left))
	same(t, "attempts", []int{1, 0}, []int{left[0].Attempt, left[1].Attempt})
	if got := outbox(t, s, destC); len(got) != 1 || got[0].Seq != seqC {
		t.Errorf("outbox of %s: got %+v, want it untouched", destC, got)
	}

	// The notice is in the sending device's inbox, after what was there.
	inbox := readAll(t, s, a)
	mustSame(t, "sender's inbox cursors", []uint64{1, 2}, cursors(inbox))
	n := inbox[1]
	wantFailure := &valise.DeliveryFailure{EnvelopeID: q[1].ID, Recipient: valise.UserID{Localpart: "bob", Node: destB},
		RecipientDevice: remoteDevice, Reason: valise.FailureUnknownRecipient}
	same(t, "notice Failure", wantFailure, n.Failure)
	if n.ID == "" || n.ID == q[1].ID || !n.Sender.IsZero() || n.SenderDevice != "" || len(n.Ciphertext) != 0 ||
		n.Recipient.Localpart != "alice" || n.RecipientDevice != a.ID {
		t.Errorf("notice: got %+v, want a fresh id, no sender or ciphertext, for alice's sending device", n)
	}
	checkTime(t, "notice ServerTime", n.ServerTime, now)
	if inbox[0].Failure != nil {
		t.Errorf("plain envelope: got Failure %+v, want nil", inbox[0].Failure)
	}
	if got := readAll(t, s, other); len(got) != 0 {
		t.Errorf("other device's inbox: got %d envelopes, want none (the notice goes to the sending device)", len(got))
	}
	// Cursors go on after a notice.
	same(t, "send after a notice", []storage.Delivery{{User: "alice", Device: a.ID, Cursor: 3}}, sendOK(t, s, outboundSend(other, "after", local(a, "x")))[0].Deliveries)
	dls := deadLetters(t, s, "")
	wantDL := []storage.DeadLetter{{Seq: 1, ID: q[1].ID, Destination: destB, Sender: "alice", SenderDevice: a.ID,
		Recipient: "bob", RecipientDevice: remoteDevice, ServerTime: baseTime(), Reason: valise.FailureUnknownRecipient, Time: now}}
	mustSame(t, "dead letters", wantDL, dls)
	checkTime(t, "dead letter ServerTime", dls[0].ServerTime, baseTime())
	checkTime(t, "dead letter Time", dls[0].Time, now)

	// Another retry counts again.
	finish(t, s, destB, "w1", now, storage.OutboxOutcome{Seq: q[2].Seq})
	same(t, "attempt after a second retry", 2, outbox(t, s, destB)[0].Attempt)

	// Without the lease nothing is written.
	fenced := []storage.OutboxOutcome{{Seq: q[2].Seq, DeadLetter: valise.FailureRejected}, {Seq: q[3].Seq, Delivered: true}}
	fences := []struct {
		name  string
		owner string
		now   time.Time
	}{
		{"another owner", "w2", now},
		{"expired lease", "w1", now.Add(2 * time.Hour)},
		{"no lease", "w1", now},
	}
	before := snapshot(t, s)
	for _, f := range fences {
		if f.name == "no lease" {
			must(t, "ReleaseOutboxLease", s.ReleaseOutboxLease(t.Context(), destB, "w1"))
		}
		ds, err := s.FinishOutbox(t.Context(), destB, f.owner, f.now, fenced)
		wantErr(t, "FinishOutbox with "+f.name, err, storage.ErrPrecondition)
		if got := snapshot(t, s); len(ds) != 0 || got != before {
			t.Errorf("FinishOutbox with %s: got notices %+v and %q, want none and %q", f.name, ds, got, before)
		}
	}

	// Seq never goes back, even once the queue is empty.
	mustLease(t, s, destB, "w1", now)
	finish(t, s, destB, "w1", now, storage.OutboxOutcome{Seq: q[2].Seq, Delivered: true}, storage.OutboxOutcome{Seq: q[3].Seq, Delivered: true})
	if got := outbox(t, s, destB); len(got) != 0 {
		t.Fatalf("outbox after delivering everything: got %d envelopes, want none", len(got))
	}
	same(t, fmt.Sprintf("OutboxStats with %s empty", destB), []storage.OutboxStat{{Destination: destC, Depth: 1, Oldest: baseTime()}}, stats(t, s))
	later := outboundSend(a, "k2", remote(destB, "bob", "6"))
	later.ServerTime = baseTime().Add(time.Hour)
	sendOK(t, s, later)
	if got := outbox(t, s, destB); len(got) != 1 || got[0].Seq <= max(q[3].Seq, seqC) {
		t.Errorf("seq of a later send: got %+v, want more than %d", got, max(q[3].Seq, seqC))
	}
	want := []storage.OutboxStat{{Destination: destB, Depth: 1, Oldest: later.ServerTime}, {Destination: destC, Depth: 1, Oldest: baseTime()}}
	got := stats(t, s)
	mustSame(t, "OutboxStats", want, got)
	checkTime(t, "Oldest", got[0].Oldest, later.ServerTime)
}

func testDeadLetters(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	a, _ := mustDevice(t, s, "alice")
	gone, _ := mustDevice(t, s, "alice")
	other, _ := mustDevice(t, s, "alice")
	// Five dead letters, alternating destinations; the last two were sent
	// by a device deleted before they were given up.
	byA := outboundSend(a, "k1", remote(destB, "bob", "0"), remote(destC, "bob", "1"), remote(destB, "bob", "2"))
	byGone := outboundSend(gone, "k2", remote(destC, "bob", "3"), remote(destB, "bob", "4"))
	sendOK(t, s, byA, byGone)
	ids := []valise.EnvelopeID{byA.Envelopes[0].ID, byA.Envelopes[1].ID, byA.Envelopes[2].ID, byGone.Envelopes[0].ID, byGone.Envelopes[1].ID}
	must(t, "DeleteDevice", s.DeleteDevice(t.Context(), "alice", gone.ID, nil))
	now := baseTime()
	mustLease(t, s, destB, "w1", now)
	mustLease(t, s, destC, "w1", now)
	var notices []storage.Delivery
	for i, d := range []valise.NodeName{destB, destC, destB, destC, destB} {
		e := outbox(t, s, d)[0]
		if e.ID != ids[i] {
			t.Fatalf("outbox of %s: got %s first, want %s", d, e.ID, ids[i])
		}
		notices = append(notices, finish(t, s, d, "w1", now.Add(time.Duration(i)*time.Second),
			storage.OutboxOutcome{Seq: e.Seq, DeadLetter: valise.FailureExpired})...)
	}
	if len(notices) != 3 || len(readAll(t, s, a)) != 3 {
		t.Errorf("notices: got %+v, want 3, all for the device that still exists", notices)
	}
	if got := readAll(t, s, other); len(got) != 0 {
		t.Errorf("another device of the sender: got %d notices, want none", len(got))
	}
	same(t, "InboxDepth (no notice for a deleted device)", int64(3), depth(t, s))

	all := deadLetters(t, s, "")
	var seqs []int64
	for _, dl := range all {
		seqs = append(seqs, dl.Seq)
	}
	mustSame(t, "dead letters in the order given up", ids, deadLetterIDs(all))
	if seqs[0] != 1 || !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != len(seqs) {
		t.Errorf("dead letter seqs: got %v, want increasing from 1", seqs)
	}
	tests := []struct {
		name  string
		dest  valise.NodeName
		after int64
		limit int
		want  []valise.EnvelopeID
	}{
		{"first page", "", 0, 2, ids[:2]},
		{"next page", "", seqs[1], 2, ids[2:4]},
		{"last page", "", seqs[3], 2, ids[4:]},
		{"past the end", "", seqs[4], 2, nil},
		{"one destination", destB, 0, 10, []valise.EnvelopeID{ids[0], ids[2], ids[4]}},
		{"one destination paged", destB, seqs[0], 1, []valise.EnvelopeID{ids[2]}},
		{"other destination", destC, 0, 10, []valise.EnvelopeID{ids[1], ids[3]}},
		{"unknown destination", "d.example", 0, 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := noErr(s.ListDeadLetters(t.Context(), tt.dest, tt.after, tt.limit))(t, "ListDeadLetters")
			same(t, fmt.Sprintf("ListDeadLetters(%q, %d, %d)", tt.dest, tt.after, tt.limit), tt.want, deadLetterIDs(got))
		})
	}
}

func testDeliveryState(t *testing.T, open opener) {
	s := open(t)
	failing := storage.DeliveryState{LastSuccess: baseTime(), LastError: "connection refused",
		LastErrorAt: baseTime().Add(time.Minute), Failures: 3, NextAttempt: baseTime().Add(5 * time.Minute)}
	recovered := storage.DeliveryState{LastSuccess: baseTime().Add(time.Hour)} // zero times stay zero
	steps := []struct {
		set  *storage.DeliveryState
		dest valise.NodeName
		want storage.DeliveryState
	}{
		{nil, destB, storage.DeliveryState{}}, // never recorded: the zero state
		{&failing, destB, failing},
		{&recovered, destB, recovered}, // replaced: nothing of the old state is left
		{nil, destC, storage.DeliveryState{}},
	}
	for i, st := range steps {
		if st.set != nil {
			must(t, fmt.Sprintf("step %d: SetDeliveryState", i), s.SetDeliveryState(t.Context(), st.dest, *st.set))
		}
		got := noErr(s.GetDeliveryState(t.Context(), st.dest))(t, fmt.Sprintf("step %d: GetDeliveryState", i))
		same(t, fmt.Sprintf("step %d: delivery state of %s", i, st.dest), st.want, got)
		if i == 1 {
			checkTime(t, "NextAttempt", got.NextAttempt, failing.NextAttempt)
		}
	}
}

func testPruneFederation(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	a, _ := mustDevice(t, s, "alice")
	cutoff := baseTime()
	old, kept := inbound(destB, a, "old"), inbound(destB, a, "kept")
	txOld := &storage.InboundTransaction{Origin: destB, ID: "old", Received: cutoff.Add(-time.Microsecond), Envelopes: []storage.InboundEnvelope{old}}
	txKept := &storage.InboundTransaction{Origin: destB, ID: "kept", Received: cutoff, Envelopes: []storage.InboundEnvelope{kept}}
	receive(t, s, txOld)
	receive(t, s, txKept)
	op := outboundSend(a, "k", remote(destC, "bob", "1"), remote(destC, "bob", "2"))
	sendOK(t, s, op)
	if ok, err := s.AcquireOutboxLease(t.Context(), destC, "w1", cutoff.Add(-time.Hour), cutoff.Add(time.Hour)); err != nil || !ok {
		t.Fatalf("AcquireOutboxLease: got %v, %v; want true, nil", ok, err)
	}
	q := outbox(t, s, destC)
	finish(t, s, destC, "w1", cutoff.Add(-time.Hour), storage.OutboxOutcome{Seq: q[0].Seq, DeadLetter: valise.FailureExpired})
	finish(t, s, destC, "w1", cutoff, storage.OutboxOutcome{Seq: q[1].Seq, DeadLetter: valise.FailureExpired})

	n, err := s.PruneFederation(t.Context(), cutoff)
	if err != nil || n != 3 {
		t.Errorf("PruneFederation: got %d, %v; want 3 (a received record, a transaction, a dead letter), nil", n, err)
	}
	if dls := deadLetters(t, s, ""); len(dls) != 1 || dls[0].ID != q[1].ID {
		t.Errorf("dead letters after pruning: got %+v, want only the later one", dls)
	}
	if depth(t, s) != 4 {
		t.Errorf("InboxDepth after pruning: got %d, want 4 (pruning never touches inboxes)", depth(t, s))
	}
	// A pruned transaction and envelope are new again; kept ones are not.
	txOld.Received = cutoff
	checkResult(t, "redelivery of a pruned transaction", receive(t, s, txOld), false, storage.InboundAccepted)
	checkResult(t, "redelivery of a kept transaction", receive(t, s, txKept), true, storage.InboundAccepted)
	again := &storage.InboundTransaction{Origin: destB, ID: "again", Received: cutoff, Envelopes: []storage.InboundEnvelope{kept}}
	checkResult(t, "kept envelope in a new transaction", receive(t, s, again), false, storage.InboundDuplicate)
	if n, err := s.PruneFederation(t.Context(), cutoff); err != nil || n != 0 {
		t.Errorf("PruneFederation again: got %d, %v; want 0, nil", n, err)
	}
}

func testSigningKeys(t *testing.T, open opener) {
	s := open(t)
	pinned := func(node valise.NodeName) []storage.SigningKey {
		t.Helper()
		return noErr(s.PinnedSigningKeys(t.Context(), node))(t, fmt.Sprintf("PinnedSigningKeys(%s)", node))
	}
	key := func(id string, from time.Duration) storage.SigningKey {
		return storage.SigningKey{KeyID: id, PublicKey: bytes.Repeat([]byte(id[:1]), 32),
			ValidFrom: baseTime().Add(from), ValidUntil: baseTime().Add(from + 24*time.Hour)}
	}
	if keys := pinned(destB); len(keys) != 0 {
		t.Errorf("PinnedSigningKeys of an unknown node: got %+v, want none", keys)
	}
	k2, k1, k0 := key("k2", time.Hour), key("k1", 0), key("a0", time.Hour)
	must(t, "PinSigningKeys", s.PinSigningKeys(t.Context(), destB, []storage.SigningKey{k2, k1, k0}))
	got := pinned(destB)
	mustSame(t, "pinned keys by ValidFrom then KeyID", []storage.SigningKey{k1, k0, k2}, got)
	checkTime(t, "ValidFrom", got[0].ValidFrom, k1.ValidFrom)
	checkTime(t, "ValidUntil", got[0].ValidUntil, k1.ValidUntil)

	// Pinning a pinned key again is not an error; new keys are added.
	k3 := key("k3", 2*time.Hour)
	must(t, "PinSigningKeys with a key pinned already", s.PinSigningKeys(t.Context(), destB, []storage.SigningKey{k1, k3}))
	// Another public key under a pinned id: a conflict, nothing written.
	k4, forged := key("k4", 3*time.Hour), k1
	forged.PublicKey = bytes.Repeat([]byte{0xff}, 32)
	err := s.PinSigningKeys(t.Context(), destB, []storage.SigningKey{k4, forged})
	wantErr(t, "PinSigningKeys with another public key", err, storage.ErrConflict)
	same(t, "pinned keys after a conflict", []storage.SigningKey{k1, k0, k2, k3}, pinned(destB))
	// Key ids are per node.
	must(t, "PinSigningKeys of another node", s.PinSigningKeys(t.Context(), destC, []storage.SigningKey{forged}))
	same(t, "pinned keys of another node", []storage.SigningKey{forged}, pinned(destC))
}

func testFederationContext(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	a, _ := mustDevice(t, s, "alice")
	sendOK(t, s, outboundSend(a, "k", remote(destB, "bob", "1")))
	mustLease(t, s, destB, "w1", baseTime())
	seq := outbox(t, s, destB)[0].Seq
	before := snapshot(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tx := &storage.InboundTransaction{Origin: destB, ID: "txn", Received: baseTime(), Envelopes: []storage.InboundEnvelope{inbound(destB, a, "x")}}
	tests := []struct {
		name string
		call func() error
	}{
		{"OutboxStats", func() error { _, err := s.OutboxStats(ctx); return err }},
		{"AcquireOutboxLease", func() error {
			_, err := s.AcquireOutboxLease(ctx, destC, "w1", baseTime(), baseTime().Add(time.Hour))
			return err
		}},
		{"ReleaseOutboxLease", func() error { return s.ReleaseOutboxLease(ctx, destB, "w1") }},
		{"ReadOutbox", func() error { _, err := s.ReadOutbox(ctx, destB, 10, 1000, nil); return err }},
		{"FinishOutbox", func() error {
			_, err := s.FinishOutbox(ctx, destB, "w1", baseTime(), []storage.OutboxOutcome{{Seq: seq, DeadLetter: valise.FailureInvalid}})
			return err
		}},
		{"ListDeadLetters", func() error { _, err := s.ListDeadLetters(ctx, "", 0, 10); return err }},
		{"GetDeliveryState", func() error { _, err := s.GetDeliveryState(ctx, destB); return err }},
		{"SetDeliveryState", func() error { return s.SetDeliveryState(ctx, destB, storage.DeliveryState{Failures: 1}) }},
		{"ReceiveTransaction", func() error { _, err := s.ReceiveTransaction(ctx, tx); return err }},
		{"PruneFederation", func() error { _, err := s.PruneFederation(ctx, baseTime()); return err }},
		{"PinnedSigningKeys", func() error { _, err := s.PinnedSigningKeys(ctx, destB); return err }},
		{"PinSigningKeys", func() error {
			return s.PinSigningKeys(ctx, destB, []storage.SigningKey{{KeyID: "k", PublicKey: make([]byte, 32), ValidFrom: baseTime(), ValidUntil: baseTime()}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil {
				t.Errorf("%s with a cancelled context: got nil error, want an error", tt.name)
			}
		})
	}
	// Nothing the cancelled calls tried was written.
	if got := snapshot(t, s); got != before {
		t.Errorf("after cancelled calls: got %q, want %q", got, before)
	}
	if ok, err := s.AcquireOutboxLease(t.Context(), destB, "w2", baseTime(), baseTime().Add(time.Hour)); err != nil || ok {
		t.Errorf("AcquireOutboxLease by another owner: got %v, %v; want w1 to hold it still", ok, err)
	}
	if ok, err := s.AcquireOutboxLease(t.Context(), destC, "w2", baseTime(), baseTime().Add(time.Hour)); err != nil || !ok {
		t.Errorf("AcquireOutboxLease(%s): got %v, %v; want the lease free", destC, ok, err)
	}
	if st, err := s.GetDeliveryState(t.Context(), destB); err != nil || st.Failures != 0 {
		t.Errorf("GetDeliveryState: got %+v, %v; want the zero state", st, err)
	}
	if keys, err := s.PinnedSigningKeys(t.Context(), destB); err != nil || len(keys) != 0 {
		t.Errorf("PinnedSigningKeys: got %+v, %v; want none", keys, err)
	}
	checkResult(t, "ReceiveTransaction after a cancelled one", receive(t, s, tx), false, storage.InboundAccepted)
}
