package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

// fakeClock is a settable clock for the limiter. The limiter reads it under
// its own lock; tests advance it from one goroutine.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(r Rate) (*Keyed, *fakeClock) {
	c := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	return NewKeyed(r, c.now), c
}

func TestLimiterBurstThenRefuse(t *testing.T) {
	k, _ := newTestLimiter(Rate{Burst: 3, PerSecond: 2})
	for i := range 3 {
		if ok, d := k.Allow("dev"); !ok {
			t.Fatalf("allow #%d = false, %v; want true within the burst", i+1, d)
		}
	}
	ok, d := k.Allow("dev")
	if ok {
		t.Fatalf("allow past the burst = true, want false")
	}
	if d <= 0 || d > 500*time.Millisecond {
		t.Errorf("retry delay = %v, want in (0, 500ms] at 2 per second", d)
	}
}

func TestLimiterRefusalDoesNotConsume(t *testing.T) {
	k, clock := newTestLimiter(Rate{Burst: 1, PerSecond: 1})
	if ok, _ := k.Allow("dev"); !ok {
		t.Fatal("first allow = false, want true")
	}
	_, first := k.Allow("dev")
	for range 5 {
		if ok, d := k.Allow("dev"); ok || d != first {
			t.Fatalf("repeated refusal = %v, %v; want false, %v (refusals must not queue)", ok, d, first)
		}
	}
	clock.advance(first)
	if ok, d := k.Allow("dev"); !ok {
		t.Fatalf("allow after waiting the retry delay = false, %v; want true", d)
	}
	if ok, _ := k.Allow("dev"); ok {
		t.Fatal("allow right after the refilled token was taken = true, want false")
	}
}

func TestLimiterRefills(t *testing.T) {
	k, clock := newTestLimiter(Rate{Burst: 2, PerSecond: 1})
	k.Allow("dev")
	k.Allow("dev")
	if ok, _ := k.Allow("dev"); ok {
		t.Fatal("allow past the burst = true, want false")
	}
	clock.advance(10 * time.Second)
	for i := range 2 {
		if ok, d := k.Allow("dev"); !ok {
			t.Fatalf("allow #%d after a full refill = false, %v; want true", i+1, d)
		}
	}
	if ok, _ := k.Allow("dev"); ok {
		t.Fatal("refill went past the burst")
	}
}

func TestLimiterPeekDoesNotConsume(t *testing.T) {
	k, _ := newTestLimiter(Rate{Burst: 1, PerSecond: 1})
	for range 3 {
		if ok, d := k.Peek("dev"); !ok || d != 0 {
			t.Fatalf("peek with a token left = %v, %v; want true, 0", ok, d)
		}
	}
	if ok, _ := k.Allow("dev"); !ok {
		t.Fatal("allow after peeks = false, want true: peek took the token")
	}
	ok, d := k.Peek("dev")
	if ok || d <= 0 {
		t.Errorf("peek with no token = %v, %v; want false and a positive delay", ok, d)
	}
	if _, d2 := k.Allow("dev"); d2 != d {
		t.Errorf("allow delay after peek = %v, want %v (peek must not reserve)", d2, d)
	}
}

func TestLimiterKeysIndependent(t *testing.T) {
	k, _ := newTestLimiter(Rate{Burst: 1, PerSecond: 1})
	if ok, _ := k.Allow("a"); !ok {
		t.Fatal(`allow("a") = false, want true`)
	}
	if ok, _ := k.Allow("a"); ok {
		t.Fatal(`second allow("a") = true, want false`)
	}
	if ok, _ := k.Allow("b"); !ok {
		t.Error(`allow("b") after "a" ran out = false, want true`)
	}
}

func TestLimiterDisabled(t *testing.T) {
	k, _ := newTestLimiter(Rate{Burst: 0, PerSecond: 0})
	for range 100 {
		if ok, d := k.Allow("dev"); !ok || d != 0 {
			t.Fatalf("allow with Burst 0 = %v, %v; want true, 0", ok, d)
		}
	}
	if len(k.m) != 0 {
		t.Errorf("a disabled limiter holds %d buckets, want 0", len(k.m))
	}
}

func TestLimiterZeroRateRefusesAfterBurst(t *testing.T) {
	k, _ := newTestLimiter(Rate{Burst: 1, PerSecond: 0})
	if ok, _ := k.Allow("dev"); !ok {
		t.Fatal("first allow = false, want true")
	}
	if ok, d := k.Allow("dev"); ok || d <= 0 {
		t.Errorf("allow past the burst at rate 0 = %v, %v; want false and a positive delay", ok, d)
	}
}

func TestLimiterSweepsIdleBuckets(t *testing.T) {
	// Burst 100 at 1/s: a bucket is full again after 100s idle.
	k, clock := newTestLimiter(Rate{Burst: 100, PerSecond: 1})
	k.Allow("idle")
	clock.advance(61 * time.Second)
	k.Allow("busy") // sweeps; "idle" is not full yet
	if _, ok := k.m["idle"]; !ok {
		t.Fatal("a bucket idle for less than its refill time was dropped")
	}
	clock.advance(61 * time.Second)
	k.Allow("busy") // sweeps; "idle" has been idle 122s
	if _, ok := k.m["idle"]; ok {
		t.Error("a bucket idle past its refill time was kept")
	}
	if got, want := len(k.m), 1; got != want {
		t.Errorf("limiter holds %d buckets, want %d", got, want)
	}
}

func TestLimiterSweptBucketIsFull(t *testing.T) {
	k, clock := newTestLimiter(Rate{Burst: 2, PerSecond: 1})
	k.Allow("dev")
	k.Allow("dev")
	clock.advance(2 * time.Minute)
	k.Allow("other") // sweeps "dev"
	for i := range 2 {
		if ok, _ := k.Allow("dev"); !ok {
			t.Fatalf("allow #%d after the bucket was swept = false, want true", i+1)
		}
	}
}

// TestLimiterBoundsKeys checks that a flood of distinct keys cannot grow a
// limiter past MaxKeys: once full, new keys share one bucket, and idle
// buckets are swept so new keys get their own again.
func TestLimiterBoundsKeys(t *testing.T) {
	k, clock := newTestLimiter(Rate{Burst: 2, PerSecond: 1})
	for i := range MaxKeys {
		if ok, _ := k.Allow(fmt.Sprint("key", i)); !ok {
			t.Fatalf("key %d refused while the limiter had room", i)
		}
	}
	if ok, _ := k.Allow("new-1"); !ok {
		t.Fatal("the shared bucket refused its first token")
	}
	if ok, d := k.Allow("new-2"); ok || d <= 0 {
		t.Fatalf("a second new key while full = %v, %v; want refused with a delay", ok, d)
	}
	if n := len(k.m); n != MaxKeys {
		t.Fatalf("limiter holds %d keys, want %d", n, MaxKeys)
	}
	clock.advance(time.Minute) // every bucket is idle and full again
	if ok, _ := k.Allow("new-3"); !ok {
		t.Fatal("a new key after the sweep was refused")
	}
	if n := len(k.m); n != 1 {
		t.Fatalf("after the sweep the limiter holds %d keys, want 1", n)
	}
}
