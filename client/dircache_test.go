package client

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
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

// ttlClients starts a node with alice, whose Send caches directories for
// a minute of a clock that does not move, and bob.
func ttlClients(t *testing.T) (*fakeNode, *Client, *Client) {
	t.Helper()
	n := startFakeNode(t)
	clock := newFakeClock()
	alice := login(t, n, "alice", func(c *Config) { c.DirectoryTTL = time.Minute; c.Now = clock.Now })
	return n, alice, login(t, n, "bob", nil)
}

// verifyUser verifies user's current devices from c.
func verifyUser(t *testing.T, c *Client, user string) {
	t.Helper()
	fp, err := c.Fingerprint(t.Context(), user)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(t.Context(), user, fp); err != nil {
		t.Fatal(err)
	}
}

// bobTrust returns alice's trust in each of bob's devices as the node
// shows them now.
func bobTrust(t *testing.T, alice *Client) map[string]Trust {
	t.Helper()
	devs, err := alice.Devices(t.Context(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Trust{}
	for _, d := range devs {
		out[d.ID] = d.Trust
	}
	return out
}

// TestDirectoryTTLVerifyChangedKey: a key verified after it changed is
// used at once by Send within the TTL; the cached older key neither fails
// the send as changed nor, with AcceptChangedKeys, replaces the verified
// pin.
func TestDirectoryTTLVerifyChangedKey(t *testing.T) {
	for _, accept := range []bool{false, true} {
		n, alice, bob := ttlClients(t)
		if _, err := alice.Send(t.Context(), "bob", []byte("pin"), SendOptions{}); err != nil {
			t.Fatal(err)
		}
		replaceKeys(t, n, bob.DeviceID())
		verifyUser(t, alice, "bob")
		res, err := alice.Send(t.Context(), "bob", []byte("after verify"), SendOptions{AcceptChangedKeys: accept})
		if err != nil {
			t.Fatalf("accept=%v: send after verifying the new key: %v", accept, err)
		}
		if len(res.Warnings) != 0 {
			t.Errorf("accept=%v: warnings %v, want none", accept, res.Warnings)
		}
		if got := bobTrust(t, alice)[bob.DeviceID()]; got != TrustVerified {
			t.Errorf("accept=%v: bob's device is %v after the send, want verified", accept, got)
		}
	}
}

// TestDirectoryTTLPinsChangedElsewhere: another process on the same state
// directory verifies a changed key; this client's cached directory, which
// shows the old key, is asked again rather than reported as a change or
// accepted over the verified pin.
func TestDirectoryTTLPinsChangedElsewhere(t *testing.T) {
	n := startFakeNode(t)
	clock := newFakeClock()
	var cfg Config
	alice := login(t, n, "alice", func(c *Config) { c.DirectoryTTL = time.Minute; c.Now = clock.Now; cfg = *c })
	bob := login(t, n, "bob", nil)
	if _, err := alice.Send(t.Context(), "bob", []byte("pin"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	other, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	replaceKeys(t, n, bob.DeviceID())
	verifyUser(t, other, "bob")
	var lookups atomic.Int64
	n.mu.Lock()
	n.onGetKeys = func() { lookups.Add(1) }
	n.mu.Unlock()
	res, err := alice.Send(t.Context(), "bob", []byte("after verify"), SendOptions{AcceptChangedKeys: true})
	if err != nil {
		t.Fatalf("send after another process verified the new key: %v", err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v, want none", res.Warnings)
	}
	if got := bobTrust(t, alice)[bob.DeviceID()]; got != TrustVerified {
		t.Errorf("bob's device is %v after the send, want verified", got)
	}
	// Bob's directory asked again (once for the send, once for Devices);
	// alice's own cached one agreed with her pins.
	if got := lookups.Load(); got != 2 {
		t.Errorf("%d key lookups, want 2", got)
	}
}

// TestDirectoryTTLVerifyDropsGoneDevice: a device gone when the user is
// verified is not pinned again from a directory cached before.
func TestDirectoryTTLVerifyDropsGoneDevice(t *testing.T) {
	n, alice, bob := ttlClients(t)
	bob2 := login(t, n, "bob", nil)
	if _, err := alice.Send(t.Context(), "bob", []byte("pin"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := bob2.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	verifyUser(t, alice, "bob")
	res, err := alice.Send(t.Context(), "bob", []byte("after verify"), SendOptions{})
	if err != nil {
		t.Fatalf("send after verifying bob without his gone device: %v", err)
	}
	if len(res.Warnings) != 0 || len(res.Devices) != 1 || res.Devices[0] != "bob@localhost/"+bob.DeviceID() {
		t.Errorf("sent to %v with warnings %v, want bob's remaining device and none", res.Devices, res.Warnings)
	}
	st, _ := loadState(t, alice)
	if p := st.Pins["bob@localhost"]; len(p) != 1 || p[bob.DeviceID()] == nil || !p[bob.DeviceID()].Verified {
		t.Errorf("alice's pins of bob: %v, want his remaining device, verified", p)
	}
}

// TestDirectoryTTLFailedSendForgets: a send that fails before reaching
// the node (a cached device revoked, a cached prekey that does not
// verify) forgets the cached directories, so the next send asks again.
func TestDirectoryTTLFailedSendForgets(t *testing.T) {
	t.Run("revoked", func(t *testing.T) {
		n, alice, bob := ttlClients(t)
		bob2 := login(t, n, "bob", nil)
		if _, err := alice.Send(t.Context(), "bob", []byte("both"), SendOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := bob2.Logout(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.Send(t.Context(), "bob", []byte("claim fails"), SendOptions{}); err == nil {
			t.Fatal("send to a cached revoked device succeeded; the test needs it to fail")
		}
		res, err := alice.Send(t.Context(), "bob", []byte("again"), SendOptions{})
		if err != nil {
			t.Fatalf("send after a failed one, within the TTL: %v", err)
		}
		if len(res.Devices) != 1 || res.Devices[0] != "bob@localhost/"+bob.DeviceID() {
			t.Errorf("sent to %v, want bob's remaining device", res.Devices)
		}
	})
	t.Run("bad keys", func(t *testing.T) {
		n, alice, bob := ttlClients(t)
		n.mu.Lock()
		d := n.byID[bob.DeviceID()]
		good := d.signed
		d.signed = &clientv1.PreKey{KeyId: good.KeyId, PublicKey: good.PublicKey, Signature: make([]byte, len(good.Signature))}
		n.mu.Unlock()
		if _, err := alice.Send(t.Context(), "bob", []byte("bad"), SendOptions{}); err == nil {
			t.Fatal("send to a device whose signed prekey does not verify succeeded")
		}
		n.mu.Lock()
		d.signed = good
		n.mu.Unlock()
		if _, err := alice.Send(t.Context(), "bob", []byte("fixed"), SendOptions{}); err != nil {
			t.Fatalf("send after the keys were fixed, within the TTL: %v", err)
		}
	})
}
