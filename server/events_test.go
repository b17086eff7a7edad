package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// eventStore is a memInbox shared with other replicas: the test plays
// their commits by adding envelopes behind the node's back and sending
// the events the store would report.
type eventStore struct {
	*memInbox
	events chan storage.Event
}

func (s *eventStore) ListenEvents(ctx context.Context, f func(storage.Event)) error {
	for {
		select {
		case e := <-s.events:
			f(e)
		case <-ctx.Done():
			return nil
		}
	}
}

// commitElsewhere adds an envelope as another replica's commit would.
func (s *eventStore) commitElsewhere() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.envs = append(s.envs, valise.Envelope{Cursor: s.next})
}

// openStream opens a stream for c and waits until it waits for news.
func openStream(t *testing.T, n *Node, c Caller) (<-chan valise.Envelope, <-chan error) {
	t.Helper()
	got, done := streamInto(t, n, c)
	for n.hub.streams() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return got, done
}

func wantEnvelope(t *testing.T, got <-chan valise.Envelope, cursor uint64) {
	t.Helper()
	select {
	case e := <-got:
		if e.Cursor != cursor {
			t.Fatalf("streamed cursor %d, want %d", e.Cursor, cursor)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("envelope %d was not streamed", cursor)
	}
}

func wantUnauthenticated(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		var e *valise.Error
		if !errors.As(err, &e) || e.Kind != valise.KindUnauthenticated {
			t.Fatalf("stream = %v, want Unauthenticated", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the stream of a revoked device stayed open")
	}
}

func TestEventInboxWakesStream(t *testing.T) {
	store := &eventStore{memInbox: &memInbox{}, events: make(chan storage.Event)}
	n := newTestNode(t, store)
	got, _ := openStream(t, n, Caller{User: "bob", Device: devB})
	store.commitElsewhere()
	store.events <- storage.Event{Kind: storage.EventInbox, User: "bob", Device: devA}
	store.events <- storage.Event{Kind: storage.EventInbox, User: "alice", Device: devB}
	select {
	case e := <-got:
		t.Fatalf("an event for another device woke the stream (cursor %d)", e.Cursor)
	case <-time.After(100 * time.Millisecond):
	}
	store.events <- storage.Event{Kind: storage.EventInbox, User: "bob", Device: devB}
	wantEnvelope(t, got, 1)
}

func TestEventRevokeEndsStreams(t *testing.T) {
	store := &eventStore{memInbox: &memInbox{}, events: make(chan storage.Event)}
	n := newTestNode(t, store)
	_, doneA := openStream(t, n, Caller{User: "bob", Device: devA})
	_, doneB := openStream(t, n, Caller{User: "bob", Device: devB})
	store.events <- storage.Event{Kind: storage.EventRevoke, User: "bob", Device: devA}
	wantUnauthenticated(t, doneA)
	select {
	case err := <-doneB:
		t.Fatalf("revoking one device ended another: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	store.events <- storage.Event{Kind: storage.EventRevoke, User: "bob"}
	wantUnauthenticated(t, doneB)
}

// TestEventResync checks that after events may have been lost every
// stream re-reads its inbox, and the streams of devices deleted meanwhile
// end.
func TestEventResync(t *testing.T) {
	store := &eventStore{memInbox: &memInbox{}, events: make(chan storage.Event)}
	n := newTestNode(t, store)
	got, done := openStream(t, n, Caller{User: "bob", Device: devB})
	store.commitElsewhere()
	store.events <- storage.Event{Kind: storage.EventResync}
	wantEnvelope(t, got, 1)

	store.mu.Lock()
	store.deleted = true
	store.mu.Unlock()
	store.events <- storage.Event{Kind: storage.EventResync}
	wantUnauthenticated(t, done)
}
