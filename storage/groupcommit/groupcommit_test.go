package groupcommit

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

// fakeCommitter records batches; each commit waits for a token on gate.
type fakeCommitter struct {
	mu      sync.Mutex
	batches []*storage.Batch
	gate    chan struct{}
	entered chan struct{}
	err     error
}

func (f *fakeCommitter) CommitBatch(ctx context.Context, b *storage.Batch) (*storage.BatchResult, error) {
	f.entered <- struct{}{}
	<-f.gate
	f.mu.Lock()
	f.batches = append(f.batches, b)
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	res := &storage.BatchResult{Sends: make([]storage.SendResult, len(b.Sends)), Acks: make([]int, len(b.Acks))}
	for i, s := range b.Sends {
		res.Sends[i].IDs = []valise.EnvelopeID{valise.EnvelopeID(s.IdempotencyKey)}
	}
	for i, a := range b.Acks {
		res.Acks[i] = int(a.Cursor)
	}
	return res, nil
}

func newFake() *fakeCommitter {
	return &fakeCommitter{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func start(t *testing.T, c Committer, cfg Config) *Writer {
	t.Helper()
	w := New(c, cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func sendOp(key string, envelopes int) *storage.SendOp {
	return &storage.SendOp{IdempotencyKey: key, Envelopes: make([]storage.NewEnvelope, envelopes)}
}

// TestCoalesces checks that work arriving during a commit goes into the
// next commit together, and every caller gets its own result.
func TestCoalesces(t *testing.T) {
	f := newFake()
	w := start(t, f, Config{})
	results := make(chan string, 20)
	go func() {
		r, err := w.Send(t.Context(), sendOp("first", 1))
		if err != nil {
			t.Error(err)
		}
		results <- string(r.IDs[0])
	}()
	<-f.entered // the first commit is in flight
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := string(rune('a' + i))
			r, err := w.Send(t.Context(), sendOp(key, 2))
			if err != nil || string(r.IDs[0]) != key {
				t.Errorf("send %s: %v %v", key, r.IDs, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, err := w.Ack(t.Context(), &storage.AckOp{Cursor: 7})
		if err != nil || n != 7 {
			t.Errorf("ack = %d, %v", n, err)
		}
	}()
	// Wait until all eleven are queued behind the blocked commit.
	for len(w.reqs) < 11 {
		time.Sleep(time.Millisecond)
	}
	f.gate <- struct{}{}
	<-f.entered
	f.gate <- struct{}{}
	wg.Wait()
	if got := <-results; got != "first" {
		t.Fatalf("first result = %q", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) != 2 || len(f.batches[1].Sends) != 10 || len(f.batches[1].Acks) != 1 {
		t.Fatalf("batches: %d, second has %d sends and %d acks; want 2 batches, 10 sends and 1 ack in the second", len(f.batches), len(f.batches[len(f.batches)-1].Sends), len(f.batches[len(f.batches)-1].Acks))
	}
}

// TestBoundsBatch checks that a commit never takes more than MaxEnvelopes
// (unless one send alone is larger).
func TestBoundsBatch(t *testing.T) {
	f := newFake()
	w := start(t, f, Config{MaxEnvelopes: 5})
	go w.Send(t.Context(), sendOp("block", 1))
	<-f.entered
	var wg sync.WaitGroup
	for _, n := range []int{3, 3, 9} {
		wg.Add(1)
		go func() { defer wg.Done(); w.Send(t.Context(), sendOp("x", n)) }()
	}
	for len(w.reqs) < 3 {
		time.Sleep(time.Millisecond)
	}
	go func() {
		for range 10 {
			select {
			case f.gate <- struct{}{}:
			case <-time.After(5 * time.Second):
				return
			}
		}
	}()
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, b := range f.batches {
		total := 0
		for _, s := range b.Sends {
			total += len(s.Envelopes)
		}
		if total > 5 && len(b.Sends) > 1 {
			t.Errorf("batch %d has %d envelopes in %d sends, over the bound of 5", i, total, len(b.Sends))
		}
	}
}

// TestCommitErrorReachesEveryone checks that a failed commit fails every
// op in it.
func TestCommitErrorReachesEveryone(t *testing.T) {
	f := newFake()
	f.err = errors.New("disk on fire")
	w := start(t, f, Config{})
	go func() {
		for range 2 {
			<-f.entered
			f.gate <- struct{}{}
		}
	}()
	if _, err := w.Send(t.Context(), sendOp("a", 1)); !errors.Is(err, f.err) {
		t.Fatalf("send error = %v, want the commit's", err)
	}
	if _, err := w.Ack(t.Context(), &storage.AckOp{Cursor: 1}); !errors.Is(err, f.err) {
		t.Fatalf("ack error = %v, want the commit's", err)
	}
}

// TestClosed checks that work after Run returned fails with ErrClosed.
func TestClosed(t *testing.T) {
	w := New(newFake(), Config{}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Send(t.Context(), sendOp("a", 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after stop = %v, want ErrClosed", err)
	}
}

// TestCallerContext checks that a caller whose context ends stops waiting.
func TestCallerContext(t *testing.T) {
	f := newFake()
	w := start(t, f, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-f.entered; cancel() }()
	if _, err := w.Send(ctx, sendOp("a", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("send = %v, want context.Canceled", err)
	}
	f.gate <- struct{}{} // let the commit finish so the writer stops cleanly
}

// TestCommittedRunsWhenCallerLeft checks that the Committed hook sees a
// send that committed after its caller stopped waiting: follow-up work
// (waking inbox streams) must not depend on the caller.
func TestCommittedRunsWhenCallerLeft(t *testing.T) {
	f := newFake()
	seen := make(chan string, 1)
	w := start(t, f, Config{Committed: func(b *storage.Batch, res *storage.BatchResult) {
		for i, s := range res.Sends {
			if b.Sends[i].IdempotencyKey != "left" {
				t.Errorf("Committed paired result %d with send %q", i, b.Sends[i].IdempotencyKey)
			}
			seen <- string(s.IDs[0])
		}
	}})
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-f.entered; cancel() }()
	if _, err := w.Send(ctx, sendOp("left", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("send = %v, want context.Canceled", err)
	}
	f.gate <- struct{}{}
	select {
	case id := <-seen:
		if id != "left" {
			t.Fatalf("Committed saw %q, want left", id)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Committed was not called for a send whose caller left")
	}
}
