package client

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise/client/e2ee"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// A message from a new sender whose key the node's directory cannot serve
// right now (the node is down, or the user interrupts) stays in the inbox:
// it is neither dropped nor acknowledged.
func TestReceiveKeepsEnvelopeWhenKeyDirectoryFails(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	if _, err := alice.Send(t.Context(), "bob", []byte("hi"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.keysDown = true
	n.mu.Unlock()
	var warns []Warning
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	err := bob.Receive(ctx, ReceiveOptions{Idle: 5 * time.Second, OnWarning: func(w Warning) { warns = append(warns, w) }},
		func(Message) error { t.Error("a message was handled"); return nil })
	if err == nil {
		t.Error("receive succeeded with the key directory down")
	}
	if len(warns) != 0 {
		t.Errorf("warnings %v; the envelope was dropped", warns)
	}
	if n.inboxLen(bob.DeviceID()) != 1 {
		t.Fatal("the envelope was acknowledged without being stored")
	}
	n.mu.Lock()
	n.keysDown = false
	n.mu.Unlock()
	msgs, warns := receiveAll(t, bob)
	if bodies(msgs) != "hi" || len(warns) != 0 {
		t.Errorf("after the node came back: messages %q, warnings %v", bodies(msgs), warns)
	}
}

// A one-time prekey is deleted once an envelope sealed to it decrypted,
// even if the envelope is then rejected (here: a bad signature).
func TestOneTimeKeyDeletedWhenEnvelopeDecryptsButIsRejected(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	n.mu.Lock()
	bd := n.byID[bob.DeviceID()]
	otk := bd.otks[0]
	bd.otks = bd.otks[1:]
	n.mu.Unlock()
	evil, _ := e2ee.NewIdentityKey()
	payload, _ := encodePayload("bob@localhost", []byte("forged"))
	ct, err := e2ee.Seal(evil, e2ee.Message{
		Sender:    e2ee.Address{User: "alice@localhost", Device: alice.DeviceID()},
		Recipient: e2ee.Address{User: "bob@localhost", Device: bob.DeviceID()},
		Time:      time.Now(), Body: payload,
	}, e2ee.RecipientKey{Kind: e2ee.OneTime, ID: otk.KeyId, Public: otk.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	n.inject(bob.DeviceID(), &clientv1.StreamInboxResponse{EnvelopeId: "forged", SenderUser: "alice@localhost", SenderDeviceId: alice.DeviceID(), ServerTime: timestamppb.Now(), Ciphertext: ct})
	msgs, warns := receiveAll(t, bob)
	if len(msgs) != 0 || len(warns) != 1 || warns[0].Kind != WarnRejected || !errors.Is(warns[0].Err, e2ee.ErrSignature) {
		t.Fatalf("messages %q, warnings %v; want one rejection for a bad signature", bodies(msgs), warns)
	}
	if _, sec := loadState(t, bob); sec.OneTimeKeys[otk.KeyId] != nil {
		t.Error("the one-time prekey that decrypted the envelope was kept")
	}
}

// Receive never replaces a pin set meanwhile (by a Send or a Verify in
// another process) with the key it looked up before.
func TestReceiveDoesNotOverwriteConcurrentPin(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	if _, err := alice.Send(t.Context(), "bob", []byte("hi"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	other, _ := e2ee.NewIdentityKey()
	n.mu.Lock()
	n.onGetKeys = func() {
		n.mu.Lock()
		n.onGetKeys = nil
		n.mu.Unlock()
		// While Bob looks alice's key up, another process verifies alice
		// with another key.
		err := bob.store.update(func(st *state, _ *secrets) error {
			verifyPins(st, "alice@localhost", map[string][]byte{alice.DeviceID(): other.Public()}, time.Now())
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
	n.mu.Unlock()
	msgs, warns := receiveAll(t, bob)
	if len(msgs) != 0 {
		t.Errorf("accepted %q against a key that is no longer pinned", bodies(msgs))
	}
	if len(warns) != 2 || warns[0].Kind != WarnChangedKey || !errors.Is(warns[1].Err, ErrIdentityChanged) {
		t.Errorf("warnings = %v, want WarnChangedKey then a rejection", warns)
	}
	st, _ := loadState(t, bob)
	if p := st.Pins["alice@localhost"][alice.DeviceID()]; p == nil || !p.Verified || !bytes.Equal(p.IdentityKey, other.Public()) {
		t.Errorf("the verified pin was replaced: %+v", p)
	}
}

// A directory entry whose identity key is not an Ed25519 public key is
// ignored: it is never pinned.
func TestDirectoryIgnoresMalformedIdentityKey(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	n.mu.Lock()
	n.identityChange[alice.DeviceID()] = bytes.Repeat([]byte{7}, 4096)
	n.mu.Unlock()
	if _, err := bob.Send(t.Context(), "alice", []byte("hi"), SendOptions{}); err == nil {
		t.Fatal("sent to a device with a malformed identity key")
	}
	if st, _ := loadState(t, bob); st.Pins["alice@localhost"] != nil {
		t.Errorf("pinned a malformed identity key: %v", st.Pins["alice@localhost"])
	}
}

func TestLoginRefusesBadDeviceID(t *testing.T) {
	n := startFakeNode(t)
	n.addUser("alice", "pw")
	bad := "../../not a device"
	n.mu.Lock()
	n.loginDeviceID = &bad
	n.mu.Unlock()
	c, err := Login(t.Context(), testConfig(t, n), "alice@localhost", "pw", "test")
	if err == nil {
		c.Close()
		t.Fatal("login accepted a malformed device id from the node")
	}
	if !strings.Contains(err.Error(), "device id") {
		t.Errorf("err = %v", err)
	}
}

// KDF parameters that a sealed file would be refused with later are
// refused up front, before any secret is sealed with them.
func TestConfigRefusesKDFThatCannotBeOpened(t *testing.T) {
	for _, k := range []KDFParams{
		{Time: maxKDFTime + 1},
		{MemoryKiB: maxKDFMemoryKiB + 1},
		{Threads: maxKDFThreads + 1},
		{MemoryKiB: 8, Threads: 4},
	} {
		if _, err := (Config{StateDir: t.TempDir(), KDF: k}).withDefaults(); err == nil {
			t.Errorf("KDF %+v accepted", k)
		}
	}
	if _, err := (Config{StateDir: t.TempDir(), KDF: fastKDF}).withDefaults(); err != nil {
		t.Errorf("fast KDF refused: %v", err)
	}
}
