package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valise-im/valise/storage"
)

// pruneStore is a storage.Store that records PruneIdempotency calls on
// calls (and PruneFederation calls on fedCalls, if set) and answers each
// with deleted and err. Other methods are not implemented.
type pruneStore struct {
	storage.Store
	calls    chan time.Time
	fedCalls chan time.Time
	deleted  int64
	err      error
}

// Ping answers: the fake database is always up.
func (s *pruneStore) Ping(context.Context) error { return nil }

func (p *pruneStore) PruneFederation(_ context.Context, before time.Time) (int64, error) {
	if p.fedCalls != nil {
		p.fedCalls <- before
	}
	return p.deleted, p.err
}

func (p *pruneStore) PruneIdempotency(_ context.Context, before time.Time) (int64, error) {
	p.calls <- before
	return p.deleted, p.err
}

func (p *pruneStore) InboxDepth(context.Context) (int64, error) { return 0, nil }

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newPruneNode(t *testing.T, store *pruneStore, retention time.Duration) (*Node, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	n := NewNode(Config{Node: "localhost", Password: cheap, IdempotencyRetention: retention}, store, nil,
		slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	n.now = func() time.Time { return now }
	return n, &logs
}

// TestRunPrunesAtStartAndStops checks that Run prunes once as it starts,
// with the cutoff now - retention, and returns when its context ends.
func TestRunPrunesAtStartAndStops(t *testing.T) {
	store := &pruneStore{calls: make(chan time.Time, 1), fedCalls: make(chan time.Time, 1), deleted: 7}
	n, logs := newPruneNode(t, store, 48*time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	if got, want := <-store.calls, n.now().Add(-48*time.Hour); !got.Equal(want) {
		t.Errorf("PruneIdempotency cutoff: got %v, want %v", got, want)
	}
	if got, want := <-store.fedCalls, n.now().Add(-DefaultConfig().FederationRetention); !got.Equal(want) {
		t.Errorf("PruneFederation cutoff: got %v, want %v", got, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
	if got := logs.String(); !strings.Contains(got, "idempotency records pruned") || !strings.Contains(got, "deleted=7") {
		t.Errorf("logs lack the pruned count:\n%s", got)
	}
}

// TestPrunerRepeatsAndSurvivesErrors checks that a failed pass is logged
// as a warning and the next pass still runs.
func TestPrunerRepeatsAndSurvivesErrors(t *testing.T) {
	store := &pruneStore{calls: make(chan time.Time), err: errors.New("database on fire")}
	n, logs := newPruneNode(t, store, 0)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { n.runPruner(ctx, time.Millisecond); close(done) }()
	for range 3 {
		if got, want := <-store.calls, n.now().Add(-DefaultConfig().IdempotencyRetention); !got.Equal(want) {
			t.Errorf("PruneIdempotency cutoff with the default retention: got %v, want %v", got, want)
		}
	}
	cancel()
	// The pruner may be in a pass already; let it finish.
	go func() {
		for range store.calls {
		}
	}()
	<-done
	close(store.calls)
	if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "idempotency pruning failed") {
		t.Errorf("logs lack the failure warning:\n%s", got)
	}
}

func TestDefaultIdempotencyRetention(t *testing.T) {
	if got, want := DefaultConfig().IdempotencyRetention, 30*24*time.Hour; got != want {
		t.Errorf("DefaultConfig().IdempotencyRetention = %v, want %v", got, want)
	}
	if got := withDefaults(Config{IdempotencyRetention: -time.Hour}).IdempotencyRetention; got != DefaultConfig().IdempotencyRetention {
		t.Errorf("withDefaults(negative retention) = %v, want the default", got)
	}
}
