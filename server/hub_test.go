package server

import (
	"slices"
	"sync"
	"testing"

	"github.com/valise-im/valise"
)

const (
	devA valise.DeviceID = "DVAAAAAAAAAAAAAAAA"
	devB valise.DeviceID = "DVBBBBBBBBBBBBBBBB"
)

// ready reports whether a receive from ch would not block.
func ready(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestHubNotifyCoalesces(t *testing.T) {
	h := newHub()
	s, unsubscribe := h.subscribe("alice", devA)
	t.Cleanup(unsubscribe)
	if ready(s.wake) {
		t.Fatal("a new subscription is already woken")
	}
	h.notify("alice", devA)
	h.notify("alice", devA)
	h.notify("alice", devA)
	if !ready(s.wake) {
		t.Fatal("notify did not wake the subscriber")
	}
	if ready(s.wake) {
		t.Error("three notifies woke the subscriber twice, want once")
	}
}

func TestHubNotifyTargetsOneDevice(t *testing.T) {
	h := newHub()
	a1, u1 := h.subscribe("alice", devA)
	a2, u2 := h.subscribe("alice", devA)
	b, u3 := h.subscribe("alice", devB)
	other, u4 := h.subscribe("bob", devA)
	t.Cleanup(func() { u1(); u2(); u3(); u4() })

	h.notify("alice", devA)
	if !ready(a1.wake) || !ready(a2.wake) {
		t.Error("notify did not wake every stream of the device")
	}
	if ready(b.wake) {
		t.Error("notify woke another device of the same user")
	}
	if ready(other.wake) {
		t.Error("notify woke the same device id of another user")
	}
}

func TestHubUnsubscribe(t *testing.T) {
	h := newHub()
	s, unsubscribe := h.subscribe("alice", devA)
	if got := h.streams(); got != 1 {
		t.Fatalf("streams() = %d, want 1", got)
	}
	unsubscribe()
	unsubscribe() // a second call is harmless
	if got := h.streams(); got != 0 {
		t.Errorf("streams() after unsubscribe = %d, want 0", got)
	}
	if got := len(h.subs); got != 0 {
		t.Errorf("hub keeps %d empty device entries, want 0", got)
	}
	h.notify("alice", devA)
	if ready(s.wake) {
		t.Error("notify woke an unsubscribed stream")
	}
}

func TestHubRevokeDevice(t *testing.T) {
	h := newHub()
	a, u1 := h.subscribe("alice", devA)
	b, u2 := h.subscribe("alice", devB)
	other, u3 := h.subscribe("bob", devA)
	t.Cleanup(func() { u1(); u2(); u3() })

	h.revoke("alice", devA)
	h.revoke("alice", devA) // a second revoke does not close twice
	if !ready(a.revoked) {
		t.Error("revoke did not end the device's stream")
	}
	if ready(b.revoked) {
		t.Error("revoking one device ended another device of the user")
	}
	if ready(other.revoked) {
		t.Error("revoking alice's device ended bob's stream with the same device id")
	}
}

func TestHubRevokeUser(t *testing.T) {
	h := newHub()
	a, u1 := h.subscribe("alice", devA)
	b, u2 := h.subscribe("alice", devB)
	other, u3 := h.subscribe("alicia", devA)
	t.Cleanup(func() { u1(); u2(); u3() })

	h.revoke("alice", "")
	if !ready(a.revoked) || !ready(b.revoked) {
		t.Error("a user-wide revoke did not end every stream of the user")
	}
	if ready(other.revoked) {
		t.Error("a user-wide revoke ended another user's stream")
	}
}

func TestHubStreams(t *testing.T) {
	h := newHub()
	var unsubs []func()
	for _, sub := range []struct {
		user string
		dev  valise.DeviceID
	}{{"alice", devA}, {"alice", devA}, {"alice", devB}, {"bob", devA}} {
		_, u := h.subscribe(sub.user, sub.dev)
		unsubs = append(unsubs, u)
	}
	if got, want := h.streams(), 4; got != want {
		t.Errorf("streams() = %d, want %d", got, want)
	}
	unsubs[0]()
	if got, want := h.streams(), 3; got != want {
		t.Errorf("streams() after one unsubscribe = %d, want %d", got, want)
	}
	h.revoke("alice", "")
	if got, want := h.streams(), 3; got != want {
		t.Errorf("streams() after revoke = %d, want %d (a revoked stream counts until it unsubscribes)", got, want)
	}
	for _, u := range unsubs[1:] {
		u()
	}
	if got := h.streams(); got != 0 {
		t.Errorf("streams() after every unsubscribe = %d, want 0", got)
	}
}

// TestHubConcurrent runs every operation at once; it finds data races under
// -race.
func TestHubConcurrent(t *testing.T) {
	h := newHub()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			dev := []valise.DeviceID{devA, devB}[i%2]
			for range 200 {
				s, unsubscribe := h.subscribe("alice", dev)
				h.notify("alice", dev)
				if i == 0 {
					h.revoke("alice", "")
				}
				ready(s.wake)
				h.streams()
				unsubscribe()
			}
		})
	}
	wg.Wait()
	if got := h.streams(); got != 0 {
		t.Errorf("streams() after every goroutine unsubscribed = %d, want 0", got)
	}
}

func TestHubNotifyAll(t *testing.T) {
	h := newHub()
	a, u1 := h.subscribe("alice", devA)
	b, u2 := h.subscribe("bob", devB)
	t.Cleanup(func() { u1(); u2() })
	h.notifyAll()
	h.notifyAll()
	if !ready(a.wake) || !ready(b.wake) {
		t.Error("notifyAll did not wake every stream")
	}
	if ready(a.wake) || ready(b.wake) {
		t.Error("two notifyAll woke a stream twice, want once")
	}
}

func TestHubDevices(t *testing.T) {
	h := newHub()
	_, u1 := h.subscribe("alice", devA)
	_, u2 := h.subscribe("alice", devA)
	_, u3 := h.subscribe("bob", devA)
	t.Cleanup(func() { u1(); u2(); u3() })
	got := h.devices()
	if len(got) != 2 || !slices.Contains(got, devKey{"alice", devA}) || !slices.Contains(got, devKey{"bob", devA}) {
		t.Errorf("devices() = %v, want alice's and bob's %s", got, devA)
	}
}
