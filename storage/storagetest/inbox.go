package storagetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// sender is the remote sender of the suite's envelopes; senders need not
// be local users.
func sender() valise.UserID { return valise.UserID{Localpart: "carol", Node: "ministry-b.example"} }

// newSend returns a send from sender device sd with key to each device of
// to, in order, with fresh envelope ids.
func newSend(sd valise.DeviceID, key string, to ...storage.Device) storage.SendOp {
	op := storage.SendOp{Sender: sender(), SenderDevice: sd, IdempotencyKey: key, ServerTime: baseTime()}
	for i, d := range to {
		op.Envelopes = append(op.Envelopes, storage.NewEnvelope{
			ID:              valise.NewEnvelopeID(baseTime()),
			Recipient:       d.User,
			RecipientDevice: d.ID,
			Ciphertext:      []byte(fmt.Sprintf("ct-%s-%d", key, i)),
		})
	}
	return op
}

// commit commits b and fails the test on a batch error.
func commit(t *testing.T, s storage.Store, b *storage.Batch) *storage.BatchResult {
	t.Helper()
	res, err := s.CommitBatch(t.Context(), b)
	if err != nil {
		t.Fatalf("CommitBatch: %v", err)
	}
	if len(res.Sends) != len(b.Sends) || len(res.Acks) != len(b.Acks) {
		t.Fatalf("CommitBatch: got %d send and %d ack results, want %d and %d", len(res.Sends), len(res.Acks), len(b.Sends), len(b.Acks))
	}
	return res
}

// sendTo commits one send with one envelope per entry of to.
func sendTo(t *testing.T, s storage.Store, to []storage.Device) storage.SendResult {
	t.Helper()
	res := commit(t, s, &storage.Batch{Sends: []storage.SendOp{newSend("DVSENDERSENDERSEND", string(valise.NewEnvelopeID(time.Now())), to...)}})
	if err := res.Sends[0].Err; err != nil {
		t.Fatalf("send: %v", err)
	}
	return res.Sends[0]
}

// readAll returns the whole inbox of d.
func readAll(t *testing.T, s storage.Store, d storage.Device) []valise.Envelope {
	t.Helper()
	envs, err := s.ReadInbox(t.Context(), d.User, d.ID, 0, 100000)
	if err != nil {
		t.Fatalf("ReadInbox(%s): %v", d.ID, err)
	}
	return envs
}

func cursors(envs []valise.Envelope) []uint64 {
	var cs []uint64
	for _, e := range envs {
		cs = append(cs, e.Cursor)
	}
	return cs
}

func depth(t *testing.T, s storage.Store) int64 {
	t.Helper()
	n, err := s.InboxDepth(t.Context())
	if err != nil {
		t.Fatalf("InboxDepth: %v", err)
	}
	return n
}

func testInbox(t *testing.T, open opener) {
	t.Run("SendRead", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		mustUser(t, s, "bob", true)
		a, _ := mustDevice(t, s, "alice")
		b, _ := mustDevice(t, s, "bob")
		op := newSend("DVSENDERSENDERSEND", "k1", a, b, a)
		res := commit(t, s, &storage.Batch{Sends: []storage.SendOp{op}}).Sends[0]
		if res.Err != nil || res.Replayed {
			t.Fatalf("send: got err %v, replayed %v", res.Err, res.Replayed)
		}
		var wantIDs []valise.EnvelopeID
		for _, e := range op.Envelopes {
			wantIDs = append(wantIDs, e.ID)
		}
		if diff := cmp.Diff(wantIDs, res.IDs); diff != "" {
			t.Errorf("IDs (-want +got):\n%s", diff)
		}
		wantDel := []storage.Delivery{{User: "alice", Device: a.ID, Cursor: 1}, {User: "bob", Device: b.ID, Cursor: 1}, {User: "alice", Device: a.ID, Cursor: 2}}
		if diff := cmp.Diff(wantDel, res.Deliveries); diff != "" {
			t.Errorf("Deliveries (-want +got):\n%s", diff)
		}
		got := readAll(t, s, a)
		if len(got) != 2 {
			t.Fatalf("ReadInbox(alice): got %d envelopes, want 2", len(got))
		}
		for i, j := range []int{0, 2} {
			e, ne := got[i], op.Envelopes[j]
			if e.ID != ne.ID || e.Cursor != uint64(i+1) || e.Sender != sender() || e.SenderDevice != op.SenderDevice ||
				e.Recipient.Localpart != "alice" || e.RecipientDevice != a.ID || !bytes.Equal(e.Ciphertext, ne.Ciphertext) {
				t.Errorf("envelope %d: got %+v, want id %s cursor %d ciphertext %q", i, e, ne.ID, i+1, ne.Ciphertext)
			}
			checkTime(t, "ServerTime", e.ServerTime, baseTime())
		}
		if n := depth(t, s); n != 3 {
			t.Errorf("InboxDepth: got %d, want 3", n)
		}
	})

	t.Run("CursorsAndPaging", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		a, _ := mustDevice(t, s, "alice")
		for range 3 {
			sendTo(t, s, []storage.Device{a, a})
		}
		if diff := cmp.Diff([]uint64{1, 2, 3, 4, 5, 6}, cursors(readAll(t, s, a))); diff != "" {
			t.Errorf("cursors (-want +got):\n%s", diff)
		}
		tests := []struct {
			name  string
			after uint64
			limit int
			want  []uint64
		}{
			{"first page", 0, 4, []uint64{1, 2, 3, 4}},
			{"next page", 4, 4, []uint64{5, 6}},
			{"past the end", 6, 4, nil},
			{"far past the end", 100, 4, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				envs, err := s.ReadInbox(t.Context(), "alice", a.ID, tt.after, tt.limit)
				if err != nil {
					t.Fatalf("ReadInbox: %v", err)
				}
				if diff := cmp.Diff(tt.want, cursors(envs)); diff != "" {
					t.Errorf("ReadInbox(%d, %d) cursors (-want +got):\n%s", tt.after, tt.limit, diff)
				}
			})
		}
		envs, err := s.ReadInbox(t.Context(), "alice", valise.NewDeviceID(), 0, 10)
		if err != nil || len(envs) != 0 {
			t.Errorf("ReadInbox(unknown device): got %d envelopes, %v; want none", len(envs), err)
		}
	})

	t.Run("IdempotentReplay", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		a, _ := mustDevice(t, s, "alice")
		const dev1, dev2 = valise.DeviceID("DVSENDERSENDER0001"), valise.DeviceID("DVSENDERSENDER0002")
		first := newSend(dev1, "same", a, a)
		r1 := commit(t, s, &storage.Batch{Sends: []storage.SendOp{first}}).Sends[0]
		if r1.Err != nil || r1.Replayed {
			t.Fatalf("first send: err %v, replayed %v", r1.Err, r1.Replayed)
		}
		otherUser := newSend(dev1, "same", a)
		otherUser.Sender.Localpart = "dave"
		res := commit(t, s, &storage.Batch{Sends: []storage.SendOp{
			newSend(dev1, "same", a, a), // a retry with fresh ids
			newSend(dev2, "same", a),    // another device, same key
			otherUser,                   // another sender user, same device id and key
		}})
		retry := res.Sends[0]
		if retry.Err != nil || !retry.Replayed || len(retry.Deliveries) != 0 {
			t.Errorf("retry: got err %v, replayed %v, %d deliveries; want a replay with none", retry.Err, retry.Replayed, len(retry.Deliveries))
		}
		if diff := cmp.Diff(r1.IDs, retry.IDs); diff != "" {
			t.Errorf("retry IDs (-first +retry):\n%s", diff)
		}
		for i, r := range res.Sends[1:] {
			if r.Err != nil || r.Replayed || len(r.Deliveries) != 1 {
				t.Errorf("independent send %d: got err %v, replayed %v, %d deliveries; want a new send", i, r.Err, r.Replayed, len(r.Deliveries))
			}
		}
		if diff := cmp.Diff([]uint64{1, 2, 3, 4}, cursors(readAll(t, s, a))); diff != "" {
			t.Errorf("cursors (-want +got):\n%s", diff)
		}

		// Two sends with one key in one batch: the second replays the first.
		res = commit(t, s, &storage.Batch{Sends: []storage.SendOp{newSend(dev1, "batch", a), newSend(dev1, "batch", a)}})
		if r := res.Sends[1]; r.Err != nil || !r.Replayed || !cmp.Equal(r.IDs, res.Sends[0].IDs) {
			t.Errorf("second send in batch: got %+v, want a replay of %v", r, res.Sends[0].IDs)
		}
		if n := depth(t, s); n != 5 {
			t.Errorf("InboxDepth: got %d, want 5", n)
		}
	})

	t.Run("PruneIdempotency", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		a, _ := mustDevice(t, s, "alice")
		const sd = valise.DeviceID("DVSENDERSENDERSEND")
		cutoff := baseTime()
		at := func(key string, t time.Time) storage.SendOp {
			op := newSend(sd, key, a)
			op.ServerTime = t
			return op
		}
		sends := []storage.SendOp{
			at("old1", cutoff.Add(-48*time.Hour)),
			at("old2", cutoff.Add(-time.Microsecond)),
			at("at-cutoff", cutoff),
			at("new", cutoff.Add(time.Hour)),
			at("", cutoff.Add(-48*time.Hour)), // no key, no record
			at("failed", cutoff.Add(-48*time.Hour)),
		}
		sends[5].Envelopes[0].RecipientDevice = valise.NewDeviceID() // refused: no record
		first := commit(t, s, &storage.Batch{Sends: sends})
		if err := first.Sends[5].Err; valise.KindOf(err) != valise.KindNotFound {
			t.Fatalf("send to a missing device: got err %v, want NotFound", err)
		}

		n, err := s.PruneIdempotency(t.Context(), cutoff)
		if err != nil {
			t.Fatalf("PruneIdempotency: %v", err)
		}
		if n != 2 {
			t.Errorf("PruneIdempotency: got %d deleted, want 2 (old1, old2)", n)
		}
		if got := depth(t, s); got != 5 {
			t.Errorf("InboxDepth after pruning: got %d, want 5 (pruning never touches inboxes)", got)
		}
		n, err = s.PruneIdempotency(t.Context(), cutoff)
		if err != nil || n != 0 {
			t.Errorf("PruneIdempotency again: got %d, %v; want 0, nil", n, err)
		}

		// A replay of a pruned key is a new send; a kept key still replays.
		retries := []storage.SendOp{at("old1", cutoff), at("old2", cutoff), at("at-cutoff", cutoff), at("new", cutoff)}
		res := commit(t, s, &storage.Batch{Sends: retries})
		for i, pruned := range []bool{true, true, false, false} {
			r := res.Sends[i]
			switch {
			case r.Err != nil:
				t.Errorf("retry of %q: got err %v", retries[i].IdempotencyKey, r.Err)
			case pruned && (r.Replayed || len(r.Deliveries) != 1 || !cmp.Equal(r.IDs, []valise.EnvelopeID{retries[i].Envelopes[0].ID})):
				t.Errorf("retry of pruned %q: got %+v, want a new send with the retry's id", retries[i].IdempotencyKey, r)
			case !pruned && (!r.Replayed || len(r.Deliveries) != 0 || !cmp.Equal(r.IDs, first.Sends[i].IDs)):
				t.Errorf("retry of kept %q: got %+v, want a replay of %v", retries[i].IdempotencyKey, r, first.Sends[i].IDs)
			}
		}
		if got := depth(t, s); got != 7 {
			t.Errorf("InboxDepth after retries: got %d, want 7", got)
		}
		// The new send recorded its key anew: it replays, and is pruned by
		// its own creation time.
		if r := commit(t, s, &storage.Batch{Sends: []storage.SendOp{at("old1", cutoff)}}).Sends[0]; !r.Replayed || !cmp.Equal(r.IDs, res.Sends[0].IDs) {
			t.Errorf("second retry of pruned \"old1\": got %+v, want a replay of %v", r, res.Sends[0].IDs)
		}
		n, err = s.PruneIdempotency(t.Context(), cutoff.Add(2*time.Hour))
		if err != nil || n != 4 {
			t.Errorf("PruneIdempotency(everything): got %d, %v; want 4, nil", n, err)
		}
	})

	t.Run("SendAllOrNothing", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		mustUser(t, s, "gone", false)
		mustUser(t, s, "left", true)
		a, _ := mustDevice(t, s, "alice")
		left, _ := mustDevice(t, s, "left")
		if err := s.SetUserActive(t.Context(), "left", false, nil); err != nil {
			t.Fatalf("SetUserActive: %v", err)
		}
		missing := storage.Device{User: "alice", ID: valise.NewDeviceID()}
		sd := valise.DeviceID("DVSENDERSENDERSEND")
		b := &storage.Batch{Sends: []storage.SendOp{
			newSend(sd, "ok1", a),
			newSend(sd, "unknown-device", a, missing),
			newSend(sd, "unknown-user", a, storage.Device{User: "nobody", ID: valise.NewDeviceID()}),
			newSend(sd, "deactivated", a, storage.Device{User: "gone", ID: valise.NewDeviceID()}),
			newSend(sd, "deactivated-after", a, left),
			newSend(sd, "ok2", a),
		}}
		res := commit(t, s, b)
		wantKinds := []valise.Kind{-1, valise.KindNotFound, valise.KindNotFound, valise.KindPermission, valise.KindPermission, -1}
		for i, k := range wantKinds {
			r := res.Sends[i]
			if k == -1 {
				if r.Err != nil || len(r.Deliveries) != 1 {
					t.Errorf("send %d: got err %v, %d deliveries; want success", i, r.Err, len(r.Deliveries))
				}
				continue
			}
			if r.Err == nil || valise.KindOf(r.Err) != k || len(r.Deliveries) != 0 {
				t.Errorf("send %d: got err %v (kind %v), %d deliveries; want kind %v and none", i, r.Err, valise.KindOf(r.Err), len(r.Deliveries), k)
			}
		}
		got := readAll(t, s, a)
		if len(got) != 2 || got[0].ID != b.Sends[0].Envelopes[0].ID || got[1].ID != b.Sends[5].Envelopes[0].ID || got[1].Cursor != 2 {
			t.Errorf("alice's inbox: got %+v, want only the two good sends at cursors 1, 2", got)
		}
		if n := depth(t, s); n != 2 {
			t.Errorf("InboxDepth: got %d, want 2", n)
		}
		// A failed send recorded no idempotency key: its retry is new.
		retry := newSend(sd, "unknown-device", a)
		if r := commit(t, s, &storage.Batch{Sends: []storage.SendOp{retry}}).Sends[0]; r.Err != nil || r.Replayed {
			t.Errorf("retry of failed send: got err %v, replayed %v; want a new send", r.Err, r.Replayed)
		}
	})

	t.Run("Acks", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		a, _ := mustDevice(t, s, "alice")
		other, _ := mustDevice(t, s, "alice")
		sendTo(t, s, []storage.Device{a, a, a, a, a, other})
		steps := []struct {
			name    string
			ack     storage.AckOp
			deleted int
			left    []uint64
		}{
			{"ack 0", storage.AckOp{User: "alice", Device: a.ID, Cursor: 0}, 0, []uint64{1, 2, 3, 4, 5}},
			{"ack 2", storage.AckOp{User: "alice", Device: a.ID, Cursor: 2}, 2, []uint64{3, 4, 5}},
			{"ack 2 again", storage.AckOp{User: "alice", Device: a.ID, Cursor: 2}, 0, []uint64{3, 4, 5}},
			{"ack 1 behind", storage.AckOp{User: "alice", Device: a.ID, Cursor: 1}, 0, []uint64{3, 4, 5}},
			{"unknown device", storage.AckOp{User: "alice", Device: valise.NewDeviceID(), Cursor: 9}, 0, []uint64{3, 4, 5}},
			{"unknown user", storage.AckOp{User: "nobody", Device: a.ID, Cursor: 9}, 0, []uint64{3, 4, 5}},
			{"beyond the end", storage.AckOp{User: "alice", Device: a.ID, Cursor: 100}, 3, nil},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				res := commit(t, s, &storage.Batch{Acks: []storage.AckOp{st.ack}})
				if res.Acks[0] != st.deleted {
					t.Errorf("deleted: got %d, want %d", res.Acks[0], st.deleted)
				}
				if diff := cmp.Diff(st.left, cursors(readAll(t, s, a))); diff != "" {
					t.Errorf("inbox cursors (-want +got):\n%s", diff)
				}
			})
		}
		if len(readAll(t, s, other)) != 1 {
			t.Errorf("acks of one device touched another device's inbox")
		}
		// Cursors keep counting after the inbox empties.
		if d := sendTo(t, s, []storage.Device{a}).Deliveries; len(d) != 1 || d[0].Cursor != 6 {
			t.Errorf("send after acks: got deliveries %+v, want cursor 6", d)
		}
		// Sends and acks in one batch.
		res := commit(t, s, &storage.Batch{
			Sends: []storage.SendOp{newSend("DVSENDERSENDERSEND", "mixed", other)},
			Acks:  []storage.AckOp{{User: "alice", Device: a.ID, Cursor: 6}},
		})
		if res.Sends[0].Err != nil || res.Acks[0] != 1 {
			t.Errorf("mixed batch: got send err %v, ack deleted %d; want nil, 1", res.Sends[0].Err, res.Acks[0])
		}
		if n := depth(t, s); n != 2 {
			t.Errorf("InboxDepth: got %d, want 2", n)
		}
		// An ack never deletes what its own batch stores: the device has
		// not seen it yet.
		res = commit(t, s, &storage.Batch{
			Sends: []storage.SendOp{newSend("DVSENDERSENDERSEND", "unseen", a)},
			Acks:  []storage.AckOp{{User: "alice", Device: a.ID, Cursor: 1 << 62}},
		})
		if res.Sends[0].Err != nil || res.Acks[0] != 0 {
			t.Errorf("ack past the end with a send: got send err %v, ack deleted %d; want nil, 0", res.Sends[0].Err, res.Acks[0])
		}
		if got := cursors(readAll(t, s, a)); len(got) != 1 || got[0] != 7 {
			t.Errorf("after an ack past the end in the same batch as a send: inbox %v, want [7]", got)
		}
	})

	t.Run("BinaryCiphertext", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		a, _ := mustDevice(t, s, "alice")
		all := make([]byte, 0, 512)
		for i := range 512 {
			all = append(all, byte(i))
		}
		big := bytes.Repeat([]byte{0, 0xff, 0x00, 0x27, 0x5c}, valise.DefaultMaxCiphertext/5)
		cts := [][]byte{all, {0}, big}
		op := newSend("DVSENDERSENDERSEND", "bin", a, a, a)
		var in [][]byte
		for i, ct := range cts {
			buf := bytes.Clone(ct)
			op.Envelopes[i].Ciphertext = buf
			in = append(in, buf)
		}
		commit(t, s, &storage.Batch{Sends: []storage.SendOp{op}})
		for _, buf := range in {
			clear(buf) // the store must not have kept the caller's slices
		}
		got := readAll(t, s, a)
		if len(got) != len(cts) {
			t.Fatalf("ReadInbox: got %d envelopes, want %d", len(got), len(cts))
		}
		for i, e := range got {
			if !bytes.Equal(e.Ciphertext, cts[i]) {
				t.Errorf("ciphertext %d: got %d bytes that differ from the %d sent", i, len(e.Ciphertext), len(cts[i]))
			}
		}
	})

	t.Run("EmptyBatch", func(t *testing.T) {
		s := open(t)
		res := commit(t, s, &storage.Batch{})
		if len(res.Sends) != 0 || len(res.Acks) != 0 {
			t.Errorf("empty batch: got %+v, want no results", res)
		}
		if n := depth(t, s); n != 0 {
			t.Errorf("InboxDepth: got %d, want 0", n)
		}
	})
}
