package client

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestDirectoryTTL: with Config.DirectoryTTL, Send asks the node for a
// user's keys once per TTL and, once claims are refused as rate limited,
// stops claiming; pins are still checked against the cached keys, and a
// changed key is refused once the TTL has passed.
func TestDirectoryTTL(t *testing.T) {
	n := startFakeNode(t)
	clock := newFakeClock()
	alice := login(t, n, "alice", func(c *Config) { c.DirectoryTTL = time.Minute; c.Now = clock.Now })
	bob := login(t, n, "bob", nil)
	var lookups atomic.Int64
	n.mu.Lock()
	n.onGetKeys = func() { lookups.Add(1) }
	n.exhaustClaims = true
	n.mu.Unlock()
	claims := func() int {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.claimCalls
	}
	for i := range 5 {
		if _, err := alice.Send(t.Context(), "bob", []byte("hi"), SendOptions{}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	// Two users looked up (bob, and alice for her other devices) once.
	if got := lookups.Load(); got != 2 {
		t.Errorf("%d key lookups for 5 sends, want 2", got)
	}
	if got := claims(); got != 1 {
		t.Errorf("%d claims for 5 sends after the first was refused, want 1", got)
	}
	msgs, warns := receiveAll(t, bob)
	if len(msgs) != 5 || len(warns) != 0 {
		t.Errorf("bob got %d messages and warnings %v, want 5 and none", len(msgs), warns)
	}
	lookups.Store(0) // bob's, for alice's key

	replaceKeys(t, n, bob.DeviceID())
	// Within the TTL the cached (pinned) keys are used.
	if _, err := alice.Send(t.Context(), "bob", []byte("cached"), SendOptions{}); err != nil {
		t.Fatalf("send within the TTL: %v", err)
	}
	clock.Advance(time.Minute)
	_, err := alice.Send(t.Context(), "bob", []byte("changed"), SendOptions{})
	var changed *ChangedKeysError
	if !errors.As(err, &changed) {
		t.Fatalf("send after the TTL to a changed key: %v, want a ChangedKeysError", err)
	}
	if got := lookups.Load(); got != 2 {
		t.Errorf("%d key lookups after the TTL, want 2", got)
	}
	// After the pause (no retry delay answered: the TTL) claims resume.
	n.mu.Lock()
	n.exhaustClaims = false
	n.mu.Unlock()
	before := claims()
	if _, err := alice.Send(t.Context(), "bob", []byte("again"), SendOptions{AcceptChangedKeys: true}); err != nil {
		t.Fatal(err)
	}
	if claims() != before+1 {
		t.Errorf("claims after the pause: %d, want %d", claims(), before+1)
	}
}

// TestDirectoryTTLBounds: a TTL out of range is refused.
func TestDirectoryTTLBounds(t *testing.T) {
	for _, ttl := range []time.Duration{-time.Second, MaxDirectoryTTL + time.Second} {
		cfg := Config{StateDir: t.TempDir(), DirectoryTTL: ttl}
		if _, err := cfg.withDefaults(); err == nil {
			t.Errorf("DirectoryTTL %v accepted", ttl)
		}
	}
}
