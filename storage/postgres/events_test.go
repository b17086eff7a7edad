package postgres_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/postgres"
)

// eventWait bounds the wait for one event.
const eventWait = 10 * time.Second

// listenEvents runs s.ListenEvents until t ends and returns its events,
// once the listener is listening (its first EventResync was consumed).
func listenEvents(t *testing.T, s *postgres.Store) <-chan storage.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan storage.Event, 1024)
	done := make(chan error, 1)
	go func() {
		done <- s.ListenEvents(ctx, func(e storage.Event) { ch <- e })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ListenEvents returned %v after its context ended, want nil", err)
			}
		case <-time.After(eventWait):
			t.Error("ListenEvents did not return after its context ended")
		}
	})
	if e := nextEvent(t, ch); e.Kind != storage.EventResync {
		t.Fatalf("first event %+v, want a resync", e)
	}
	return ch
}

func nextEvent(t *testing.T, ch <-chan storage.Event) storage.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(eventWait):
		t.Fatal("no event within", eventWait)
		return storage.Event{}
	}
}

// eventsUntil returns the events before the first one equal to last, in
// the order they came.
func eventsUntil(t *testing.T, ch <-chan storage.Event, last storage.Event) []storage.Event {
	t.Helper()
	var got []storage.Event
	for {
		e := nextEvent(t, ch)
		if e == last {
			return got
		}
		got = append(got, e)
	}
}

func inboxEvent(d storage.Device) storage.Event {
	return storage.Event{Kind: storage.EventInbox, User: d.User, Device: d.ID}
}

func sortEvents(es []storage.Event) {
	slices.SortFunc(es, func(a, b storage.Event) int {
		return strings.Compare(a.User+" "+string(a.Device), b.User+" "+string(b.Device))
	})
}

// TestReplicasEvents checks that each store of a database hears what
// either commits, and only what commits.
func TestReplicasEvents(t *testing.T) {
	rs := replicas(t)
	ds := setUp(t, rs[0], "alice", "bob")
	a, b := ds[0], ds[1]
	b2 := storage.Device{User: "bob", ID: valise.NewDeviceID()}
	if err := rs[0].CreateDevice(t.Context(), b2, []byte("token-b2")); err != nil {
		t.Fatal(err)
	}
	// A deferred trigger fails at commit, after pg_notify ran, every
	// transaction that stores the ciphertext "boom".
	if _, err := rs[0].Pool().Exec(t.Context(), `
		CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'boom'; END $$;
		CREATE CONSTRAINT TRIGGER boom AFTER INSERT ON inbox DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW WHEN (NEW.ciphertext = 'boom') EXECUTE FUNCTION boom()`); err != nil {
		t.Fatal(err)
	}
	listeners := []<-chan storage.Event{listenEvents(t, rs[0]), listenEvents(t, rs[1])}
	const sd = valise.DeviceID("DVSENDERSENDERSEND")

	// One batch: a send to a and b (twice to b), a send refused for an
	// unknown device, an ack of b2.
	bad := send(sd, "bad", a)
	bad.Envelopes[0].RecipientDevice = valise.NewDeviceID()
	res, err := rs[0].CommitBatch(t.Context(), &storage.Batch{
		Sends: []storage.SendOp{send(sd, "1", a, b, b), bad},
		Acks:  []storage.AckOp{{User: b2.User, Device: b2.ID, Cursor: 5}},
	})
	if err != nil || res.Sends[0].Err != nil || res.Sends[1].Err == nil {
		t.Fatalf("CommitBatch: %v, %+v", err, res)
	}
	// A batch that fails at commit, and one of acks only: no events.
	boom := send(sd, "boom", b2)
	boom.Envelopes[0].Ciphertext = []byte("boom")
	if _, err := rs[1].CommitBatch(t.Context(), &storage.Batch{Sends: []storage.SendOp{boom}}); err == nil {
		t.Fatal("the batch the trigger fails committed")
	}
	if _, err := rs[1].CommitBatch(t.Context(), &storage.Batch{Acks: []storage.AckOp{{User: a.User, Device: a.ID, Cursor: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := rs[1].DeleteDevice(t.Context(), b2.User, valise.NewDeviceID(), nil); err == nil {
		t.Fatal("deleting an unknown device succeeded")
	}
	// Revocations, through the other store.
	if err := rs[1].DeleteDevice(t.Context(), b2.User, b2.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := rs[1].SetUserActive(t.Context(), "alice", false, nil); err != nil {
		t.Fatal(err)
	}

	revokeB2 := storage.Event{Kind: storage.EventRevoke, User: b2.User, Device: b2.ID}
	for i, ch := range listeners {
		got := eventsUntil(t, ch, revokeB2)
		sortEvents(got)
		want := []storage.Event{inboxEvent(a), inboxEvent(b)}
		for j := range want {
			want[j].Local = i == 0 // store 0 committed them
		}
		if !slices.Equal(got, want) {
			t.Errorf("store %d: events before the revocation %+v, want %+v", i, got, want)
		}
		if e, want := nextEvent(t, ch), (storage.Event{Kind: storage.EventRevoke, User: "alice"}); e != want {
			t.Errorf("store %d: event %+v after the revocation, want %+v", i, e, want)
		}
	}
}

// TestEventsReconnect checks that the listener comes back after its
// connection is killed, and says so with a resync.
func TestEventsReconnect(t *testing.T) {
	rs := replicas(t)
	a := setUp(t, rs[0], "alice")[0]
	ch := listenEvents(t, rs[1])
	tag, err := rs[0].Pool().Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'valise-events'`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("terminate the listener: %v, %d rows", err, tag.RowsAffected())
	}
	if e := nextEvent(t, ch); e.Kind != storage.EventResync {
		t.Fatalf("event %+v after the listener's connection died, want a resync", e)
	}
	if _, err := rs[0].CommitBatch(t.Context(), &storage.Batch{Sends: []storage.SendOp{send("DVSENDERSENDERSEND", "1", a)}}); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, ch); e != inboxEvent(a) {
		t.Fatalf("event %+v after reconnecting, want %+v", e, inboxEvent(a))
	}
}
