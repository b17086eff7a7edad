package client

import (
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// tooFast is the node's answer to a call over a rate or concurrency limit,
// asking to retry after d.
func tooFast(t *testing.T, d time.Duration) error {
	t.Helper()
	st, err := status.New(codes.ResourceExhausted, "too many key lookups").
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// TestRetryWhenAskedSoon checks that a lookup the node refuses as too
// fast, asking to retry within maxRetryAfter, is repeated after that
// delay, and that one asked to wait longer fails at once with the node's
// answer.
func TestRetryWhenAskedSoon(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	login(t, n, "bob", nil)
	var lookups atomic.Int64
	n.mu.Lock()
	n.onGetKeys = func() { lookups.Add(1) }
	n.keysRefusals = []error{tooFast(t, 50*time.Millisecond), tooFast(t, 50*time.Millisecond)}
	n.mu.Unlock()
	if _, err := alice.Devices(t.Context(), "bob"); err != nil {
		t.Fatalf("Devices after two refusals asking to retry in 50ms: %v", err)
	}
	if got := lookups.Load(); got != 3 {
		t.Errorf("%d lookups, want 3 (two refused, one answered)", got)
	}

	lookups.Store(0)
	n.mu.Lock()
	n.keysRefusals = []error{tooFast(t, 10*time.Minute)}
	n.mu.Unlock()
	_, err := alice.Devices(t.Context(), "bob")
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Devices refused with a 10 minute retry delay = %v, want ResourceExhausted", err)
	}
	if got := lookups.Load(); got != 1 {
		t.Errorf("%d lookups, want 1: a long retry delay is the caller's to honour", got)
	}
}
