package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// sendTo sends one envelope per body to bob's devB and fails the test on
// an error.
func sendTo(t *testing.T, n *Node, key string, bodies ...string) {
	t.Helper()
	var envs []OutgoingEnvelope
	for _, b := range bodies {
		envs = append(envs, OutgoingEnvelope{RecipientUser: "bob", RecipientDevice: string(devB), Ciphertext: []byte(b)})
	}
	if _, err := n.Send(t.Context(), Caller{User: "alice", Device: devA}, key, envs); err != nil {
		t.Fatalf("send %s: %v", key, err)
	}
}

// recvBodies reads want envelopes from got and checks their cursors
// follow after and their bodies are want.
func recvBodies(t *testing.T, got <-chan valise.Envelope, after uint64, want ...string) []valise.Envelope {
	t.Helper()
	var out []valise.Envelope
	for i, w := range want {
		select {
		case e := <-got:
			if e.Cursor != after+uint64(i)+1 || string(e.Ciphertext) != w {
				t.Fatalf("envelope %d: cursor %d body %q, want cursor %d body %q", i, e.Cursor, e.Ciphertext, after+uint64(i)+1, w)
			}
			out = append(out, e)
		case <-time.After(3 * time.Second):
			t.Fatalf("envelope %d (%q) did not arrive", i, w)
		}
	}
	return out
}

func (m *memInbox) readCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads
}

// waitCaughtUp waits until the stream of n has read storage and is
// waiting for pushes.
func waitCaughtUp(t *testing.T, n *Node, store *memInbox, reads int) {
	t.Helper()
	for n.hub.streams() == 0 || store.readCount() < reads {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
}

// TestStreamDeliversPushesFromMemory checks that once a stream has caught
// up, committed envelopes reach it from memory, without reading storage,
// and that what it delivers from memory equals what storage holds.
func TestStreamDeliversPushesFromMemory(t *testing.T) {
	store := &memInbox{}
	n := newTestNode(t, store)
	got, _ := streamInto(t, n, Caller{User: "bob", Device: devB})
	waitCaughtUp(t, n, store, 1)
	for i := range 20 {
		sendTo(t, n, fmt.Sprint("k", i), fmt.Sprint("m", i))
	}
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprint("m", i))
	}
	pushed := recvBodies(t, got, 0, want...)
	if r := store.readCount(); r != 1 {
		t.Errorf("the stream read storage %d times, want once (before catching up)", r)
	}
	stored, err := store.ReadInbox(t.Context(), "bob", devB, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stored, pushed); diff != "" {
		t.Errorf("pushed envelopes differ from the stored ones (-stored +pushed):\n%s", diff)
	}
}

// TestStreamReadsStorageAfterUnpushedWrite checks that an envelope written
// without a push (another replica's commit, a federation delivery, a
// notice) makes the stream read storage, in order, and that pushes after
// it are still delivered exactly once.
func TestStreamReadsStorageAfterUnpushedWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		tell func(n *Node) // how the node learns of the unpushed write
	}{
		{"rung", func(n *Node) { n.Delivered([]storage.Delivery{{User: "bob", Device: devB, Cursor: 2}}) }},
		{"silent", func(*Node) {}}, // only the next push's cursor gap tells
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &memInbox{}
			n := newTestNode(t, store)
			got, _ := streamInto(t, n, Caller{User: "bob", Device: devB})
			waitCaughtUp(t, n, store, 1)
			sendTo(t, n, "k1", "m1")
			recvBodies(t, got, 0, "m1")
			// Written behind the node's back: cursor 2.
			store.mu.Lock()
			store.next++
			store.envs = append(store.envs, valise.Envelope{Cursor: store.next, Ciphertext: []byte("unpushed")})
			store.mu.Unlock()
			tc.tell(n)
			sendTo(t, n, "k3", "m3")
			sendTo(t, n, "k4", "m4")
			recvBodies(t, got, 1, "unpushed", "m3", "m4")
			select {
			case e := <-got:
				t.Fatalf("extra envelope %d %q", e.Cursor, e.Ciphertext)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}

// TestStreamOverrunReadsStorage checks that a stream whose client does
// not keep up, so that more is pushed than a subscription holds, falls
// back to storage and still delivers everything once, in order.
func TestStreamOverrunReadsStorage(t *testing.T) {
	store := &memInbox{}
	n := newTestNode(t, store)
	release := make(chan struct{})
	got := make(chan valise.Envelope, 4*maxPushedEnvelopes)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	first := true
	go n.StreamInbox(ctx, Caller{User: "bob", Device: devB}, 0, func(e valise.Envelope) error {
		if first { // the client stalls on the first envelope
			first = false
			<-release
		}
		got <- e
		return nil
	})
	waitCaughtUp(t, n, store, 1)
	total := 2*maxPushedEnvelopes + 10
	var want []string
	for i := range total {
		want = append(want, fmt.Sprint("m", i))
	}
	for i := 0; i < total; i += 100 {
		sendTo(t, n, fmt.Sprint("k", i), want[i:min(i+100, total)]...)
	}
	close(release)
	recvBodies(t, got, 0, want...)
	if store.readCount() < 2 {
		t.Errorf("the stream read storage %d times; an overrun must make it read again", store.readCount())
	}
	select {
	case e := <-got:
		t.Fatalf("extra envelope %d %q", e.Cursor, e.Ciphertext)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestStreamWokenAfterCommitWithLostAnswer checks that a send whose commit
// happened but answered an error (a lost answer to COMMIT) still reaches
// an open stream: the sender's retry is a replay that writes nothing, so
// only the failed commit itself can wake the stream.
func TestStreamWokenAfterCommitWithLostAnswer(t *testing.T) {
	store := &memInbox{}
	n := newTestNode(t, store)
	got, _ := streamInto(t, n, Caller{User: "bob", Device: devB})
	waitCaughtUp(t, n, store, 1)
	store.mu.Lock()
	store.lostAnswer = true
	store.mu.Unlock()
	_, err := n.Send(t.Context(), Caller{User: "alice", Device: devA}, "k1",
		[]OutgoingEnvelope{{RecipientUser: "bob", RecipientDevice: string(devB), Ciphertext: []byte("m1")}})
	if err == nil {
		t.Fatal("the send of a commit that answered an error succeeded")
	}
	recvBodies(t, got, 0, "m1")
}
