package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// memInbox is a storage.Store with just enough of an inbox for the stream
// and send paths: one device's envelopes in memory. CommitBatch waits on
// gate when it is set. Other methods are not implemented.
type memInbox struct {
	storage.Store
	mu      sync.Mutex
	envs    []valise.Envelope
	next    uint64
	deleted bool
	gate    chan struct{}
	entered chan struct{}
	reads   int // ReadInbox calls
	// lostAnswer makes the next CommitBatch commit and then fail, as a
	// commit whose answer was lost does.
	lostAnswer bool
}

func (m *memInbox) CommitBatch(ctx context.Context, b *storage.Batch) (*storage.BatchResult, error) {
	if m.gate != nil {
		m.entered <- struct{}{}
		<-m.gate
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	res := &storage.BatchResult{Sends: make([]storage.SendResult, len(b.Sends)), Acks: make([]int, len(b.Acks))}
	for i, op := range b.Sends {
		for _, e := range op.Envelopes {
			m.next++
			m.envs = append(m.envs, valise.Envelope{ID: e.ID, Cursor: m.next, Sender: op.Sender, SenderDevice: op.SenderDevice,
				Recipient: valise.UserID{Localpart: e.Recipient}, RecipientDevice: e.RecipientDevice, ServerTime: op.ServerTime, Ciphertext: e.Ciphertext})
			res.Sends[i].IDs = append(res.Sends[i].IDs, e.ID)
			res.Sends[i].Deliveries = append(res.Sends[i].Deliveries, storage.Delivery{User: e.Recipient, Device: e.RecipientDevice, Cursor: m.next})
		}
	}
	if m.lostAnswer {
		m.lostAnswer = false
		return nil, errors.New("memInbox: connection lost during COMMIT")
	}
	return res, nil
}

func (m *memInbox) ReadInbox(_ context.Context, _ string, _ valise.DeviceID, after uint64, limit int) ([]valise.Envelope, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	var out []valise.Envelope
	for _, e := range m.envs {
		if e.Cursor > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (m *memInbox) GetDevice(_ context.Context, user string, id valise.DeviceID) (storage.Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.deleted {
		return storage.Device{}, storage.ErrNotFound
	}
	return storage.Device{User: user, ID: id}, nil
}

func (m *memInbox) InboxDepth(context.Context) (int64, error) { return 0, nil }

func (m *memInbox) PruneIdempotency(context.Context, time.Time) (int64, error) { return 0, nil }

func (m *memInbox) PruneFederation(context.Context, time.Time) (int64, error) { return 0, nil }

// Ping answers: the in-memory database is always up.
func (s *memInbox) Ping(context.Context) error { return nil }

func newTestNode(t *testing.T, store storage.Store) *Node {
	t.Helper()
	n := NewNode(Config{Node: "localhost", Password: cheap}, store, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// streamInto runs StreamInbox for caller c and forwards what it delivers.
func streamInto(t *testing.T, n *Node, c Caller) (<-chan valise.Envelope, <-chan error) {
	t.Helper()
	got := make(chan valise.Envelope, 10)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		done <- n.StreamInbox(ctx, c, 0, func(e valise.Envelope) error { got <- e; return nil })
	}()
	return got, done
}

// TestSendWakesStreamWhenSenderGivesUp checks that an envelope committed
// after its sender's context ended still reaches an open stream at once,
// not only when the next envelope for the device happens to wake it.
func TestSendWakesStreamWhenSenderGivesUp(t *testing.T) {
	store := &memInbox{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	n := newTestNode(t, store)
	bob := Caller{User: "bob", Device: devB}
	got, _ := streamInto(t, n, bob)
	// Let the stream reach its wait: it reads an empty inbox first.
	for n.hub.streams() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	sendErr := make(chan error, 1)
	go func() {
		_, err := n.Send(ctx, Caller{User: "alice", Device: devA}, "k1",
			[]OutgoingEnvelope{{RecipientUser: "bob", RecipientDevice: string(devB), Ciphertext: []byte("x")}})
		sendErr <- err
	}()
	<-store.entered // the send is committing
	cancel()        // the sender gives up (deadline, disconnect)
	if err := <-sendErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("send = %v, want context.Canceled", err)
	}
	close(store.gate) // the commit succeeds after all
	select {
	case e := <-got:
		if e.Cursor != 1 {
			t.Fatalf("streamed cursor %d, want 1", e.Cursor)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a committed envelope was not pushed to the open stream")
	}
}

// TestStreamOfRevokedDeviceEnds checks that a stream whose device was
// revoked between the token check and the subscription ends at once
// instead of staying open forever.
func TestStreamOfRevokedDeviceEnds(t *testing.T) {
	store := &memInbox{deleted: true}
	n := newTestNode(t, store)
	_, done := streamInto(t, n, Caller{User: "bob", Device: devB})
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

// TestStreamStopsBetweenPages checks that StopStreams ends a stream that
// is working through a long backlog without waiting for its end.
func TestStreamStopsBetweenPages(t *testing.T) {
	store := &memInbox{}
	for i := range 3 * inboxPage {
		store.envs = append(store.envs, valise.Envelope{Cursor: uint64(i + 1)})
	}
	n := newTestNode(t, store)
	n.StopStreams()
	delivered := 0
	err := n.StreamInbox(t.Context(), Caller{User: "bob", Device: devB}, 0, func(valise.Envelope) error {
		delivered++
		return nil
	})
	var e *valise.Error
	if !errors.As(err, &e) || e.Kind != valise.KindUnavailable {
		t.Fatalf("stream = %v, want Unavailable", err)
	}
	if delivered > inboxPage {
		t.Fatalf("a stopped stream delivered %d envelopes, want at most one page", delivered)
	}
}
