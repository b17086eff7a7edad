package client

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/valise-im/valise/client/e2ee"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// TestReceiveBatches sends more messages than one batch holds, waiting
// in the inbox together, and a replay of a one-time-key envelope in the
// same batch as the original: every message is handed over once, in
// order, the replay is dropped, and the state is saved.
func TestReceiveBatches(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	if _, err := alice.Send(t.Context(), "bob", []byte("m000"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	orig := n.byID[bob.DeviceID()].inbox[0]
	n.mu.Unlock()
	// The first envelope is sealed to a one-time prekey (claims are not
	// exhausted): its replay, right behind it, must not open.
	n.inject(bob.DeviceID(), &clientv1.StreamInboxResponse{EnvelopeId: "replay", SenderUser: orig.SenderUser, SenderDeviceId: orig.SenderDeviceId, ServerTime: timestamppb.Now(), Ciphertext: orig.Ciphertext})
	opens := func(sec *secrets) error {
		_, err := e2ee.Open(orig.Ciphertext, e2ee.Address{User: "bob@localhost", Device: bob.DeviceID()},
			e2ee.Address{User: orig.SenderUser, Device: orig.SenderDeviceId}, secretKeys{sec, alice.identity.Public()})
		return err
	}
	if _, sec := loadState(t, bob); opens(sec) != nil {
		t.Fatalf("the first envelope does not open with bob's one-time prekeys: %v", opens(sec))
	}
	const total = 2*maxBatch + 7
	want := "m000"
	for i := 1; i < total; i++ {
		body := fmt.Sprintf("m%03d", i)
		if _, err := alice.Send(t.Context(), "bob", []byte(body), SendOptions{}); err != nil {
			t.Fatal(err)
		}
		want += "," + body
	}
	var lookups atomic.Int64
	n.mu.Lock()
	n.onGetKeys = func() { lookups.Add(1) }
	n.mu.Unlock()
	msgs, warns := receiveAll(t, bob)
	// Alice's device is looked up once, then pinned.
	if got := lookups.Load(); got != 1 {
		t.Errorf("bob looked alice's keys up %d times for %d messages, want 1", got, total)
	}
	if got := bodies(msgs); got != want {
		t.Errorf("bob got %q,\nwant %q", got, want)
	}
	if len(warns) != 1 || (warns[0].Kind != WarnRejected && warns[0].Kind != WarnReplay) || warns[0].Envelope != "replay" {
		t.Errorf("warnings = %v, want one for the replay", warns)
	}
	if h, _ := bob.History(""); len(h) != total {
		t.Errorf("history has %d messages, want %d", len(h), total)
	}
	if n.inboxLen(bob.DeviceID()) != 0 {
		t.Error("the inbox was not acknowledged")
	}
	st, sec := loadState(t, bob)
	if st.Cursor != st.Acked || st.Cursor == 0 {
		t.Errorf("cursor %d, acked %d; want both at the last envelope", st.Cursor, st.Acked)
	}
	if opens(sec) == nil {
		t.Error("the first envelope still opens: its one-time prekey was kept")
	}
	// Nothing more arrives.
	if msgs, _ := receiveAll(t, bob); len(msgs) != 0 {
		t.Errorf("a second receive got %q", bodies(msgs))
	}
}

// secretKeys opens with the one-time prekeys of sec only.
type secretKeys struct {
	sec    *secrets
	sender []byte
}

func (k secretKeys) PreKey(kind e2ee.PreKeyKind, id uint32) ([]byte, error) {
	if kind == e2ee.OneTime && k.sec.OneTimeKeys[id] != nil {
		return k.sec.OneTimeKeys[id], nil
	}
	return nil, e2ee.ErrUnknownPreKey
}

func (k secretKeys) IdentityKey(e2ee.Address) ([]byte, error) { return k.sender, nil }

// TestReceiveCrashAfterHistory simulates a crash in the middle of batched
// Receives of large messages: the history was written, but neither the
// seen ids, nor the state (cursor, used one-time prekeys), nor the
// acknowledgement. The next Receive gets the same envelopes again; it
// must recover every id of the stored batch from the history, so that no
// message is stored or handed over twice.
func TestReceiveCrashAfterHistory(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	dir := bob.cfg.StateDir
	saved := map[string][]byte{}
	for _, name := range []string{stateFile, secretsFile, seenFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		saved[name] = b
	}
	body := bytes.Repeat([]byte("x"), maxTextFor("bob@localhost"))
	for i := range maxBatch {
		copy(body, fmt.Sprintf("m%03d", i))
		if _, err := alice.Send(t.Context(), "bob", body, SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	n.mu.Lock()
	inbox := slices.Clone(n.byID[bob.DeviceID()].inbox)
	n.mu.Unlock()
	if msgs, _ := receiveAll(t, bob); len(msgs) != maxBatch {
		t.Fatalf("bob got %d messages, want %d", len(msgs), maxBatch)
	}
	fi, err := os.Stat(filepath.Join(dir, historyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 8<<20 {
		t.Fatalf("history of %d bytes; the test needs messages much larger than the 1 MiB once read back", fi.Size())
	}

	// The crash: only the history survives; the node still has it all.
	for name, b := range saved {
		if b == nil {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n.mu.Lock()
	n.byID[bob.DeviceID()].inbox = inbox
	n.mu.Unlock()

	msgs, warns := receiveAll(t, bob)
	if len(msgs) != 0 {
		t.Errorf("after the crash bob got %d messages again", len(msgs))
	}
	for _, w := range warns {
		if w.Kind != WarnReplay {
			t.Errorf("warning %v, want only replays", w)
		}
	}
	if h, _ := bob.History(""); len(h) != maxBatch {
		t.Errorf("history has %d messages, want %d", len(h), maxBatch)
	}
	if n.inboxLen(bob.DeviceID()) != 0 {
		t.Error("the redelivered envelopes were not acknowledged")
	}
}

// TestReceiveResumeFromHistory follows the recipe of Receive's doc: after
// a handler error, the messages stored but not handled are taken from the
// history after the last one handled, then Receive hands over the rest;
// every message is processed exactly once.
func TestReceiveResumeFromHistory(t *testing.T) {
	n := startFakeNode(t)
	alice := login(t, n, "alice", nil)
	bob := login(t, n, "bob", nil)
	const total = 20
	want := ""
	for i := range total {
		body := fmt.Sprintf("m%03d", i)
		if _, err := alice.Send(t.Context(), "bob", []byte(body), SendOptions{}); err != nil {
			t.Fatal(err)
		}
		want += "," + body
	}
	var processed []Message
	stop := errors.New("handler gave up")
	err := bob.Receive(t.Context(), ReceiveOptions{Idle: 300 * time.Millisecond}, func(m Message) error {
		if len(processed) == 3 {
			return stop
		}
		processed = append(processed, m)
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("receive: %v, want the handler's error", err)
	}
	last := processed[len(processed)-1].ID
	h, err := bob.History("")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(h, func(m Message) bool { return m.ID == last })
	for _, m := range h[i+1:] {
		if m.Envelope != "" {
			processed = append(processed, m)
		}
	}
	msgs, _ := receiveAll(t, bob)
	processed = append(processed, msgs...)
	if got := "," + bodies(processed); got != want {
		t.Errorf("processed %q,\nwant %q", got, want)
	}
}
