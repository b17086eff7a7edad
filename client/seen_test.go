package client

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// keepAll is a seen horizon that forgets nothing by age.
func keepAll(time.Time) time.Time { return time.Time{} }

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// TestSeenForgetsByAgeOnly checks that ids are kept until they are older
// than the horizon, whatever their number below the bound, and forgotten
// after, across reloads.
func TestSeenForgetsByAgeOnly(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	const window = 22 * 24 * time.Hour
	horizon := func(now time.Time) time.Time { return now.Add(-window) }
	load := func() *seenSet {
		t.Helper()
		s, err := loadSeen(dir, 1000, clock.Now, horizon)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := load()
	old := []string{"old1", "old2"}
	if err := s.add(old...); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * 24 * time.Hour)
	var recent []string
	for i := range 500 { // many more ids than before: none pushes the old ones out
		recent = append(recent, fmt.Sprintf("recent%d", i))
	}
	if err := s.add(recent...); err != nil {
		t.Fatal(err)
	}
	clock.Advance(window - 10*24*time.Hour - time.Minute) // old ids: just inside the window
	s = load()
	for _, id := range append(old, recent...) {
		if !s.has(id) {
			t.Fatalf("%s forgotten within the window", id)
		}
	}
	clock.Advance(2 * time.Minute) // old ids: just past the window
	s = load()
	for _, id := range old {
		if s.has(id) {
			t.Errorf("%s still remembered past the window", id)
		}
	}
	for _, id := range recent {
		if !s.has(id) {
			t.Fatalf("%s forgotten within the window", id)
		}
	}
	if s.forgotten != 0 {
		t.Errorf("forgetting by age set forgotten = %d, want 0 (only the bound sets it)", s.forgotten)
	}
	// A long Receive forgets too, without a reload.
	clock.Advance(window)
	if err := s.add("new"); err != nil {
		t.Fatal(err)
	}
	if s.has("recent0") || !s.has("new") {
		t.Errorf("after the window, in a running Receive: has(recent0)=%v has(new)=%v; want false, true", s.has("recent0"), s.has("new"))
	}
}

// TestSeenReadsOldFormat checks that a seen file of bare ids (written
// before times were kept) loads, counts its ids as seen at load, and is
// rewritten so that every id is still a line of its own.
func TestSeenReadsOldFormat(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, seenFile), []byte("aa\nbb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	horizon := func(now time.Time) time.Time { return now.Add(-time.Hour) }
	s, err := loadSeen(dir, 1000, clock.Now, horizon)
	if err != nil {
		t.Fatal(err)
	}
	if !s.has("aa") || !s.has("bb") {
		t.Fatal("ids of an old seen file were lost")
	}
	b, err := os.ReadFile(filepath.Join(dir, seenFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{fmt.Sprintf("@%d", clock.Now().Unix()), "aa", "bb"}
	if !equalSlices(lines, want) {
		t.Errorf("rewritten seen file: got %q, want %q", lines, want)
	}
	clock.Advance(59 * time.Minute)
	if s, _ = loadSeen(dir, 1000, clock.Now, horizon); !s.has("aa") {
		t.Error("old ids forgotten before the window from their load")
	}
	clock.Advance(2 * time.Minute)
	if s, _ = loadSeen(dir, 1000, clock.Now, horizon); s.has("aa") {
		t.Error("old ids remembered past the window from their load")
	}
}

// TestSeenBoundRemembersForgottenTime checks that ids dropped by the
// bound leave their time behind, durably.
func TestSeenBoundRemembersForgottenTime(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	s, err := loadSeen(dir, 10, clock.Now, keepAll)
	if err != nil {
		t.Fatal(err)
	}
	sent := clock.Now()
	if err := s.add("first"); err != nil {
		t.Fatal(err)
	}
	if s.forgottenBefore(sent) {
		t.Fatal("forgottenBefore true before anything was dropped")
	}
	clock.Advance(time.Hour)
	for range 25 {
		if err := s.add(randomID()); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*seenSet{s, mustLoadSeen(t, dir, 10, clock.Now)} {
		if s.has("first") || len(s.order) != 10 {
			t.Errorf("after a flood: has(first)=%v, %d ids; want false, 10", s.has("first"), len(s.order))
		}
		if !s.forgottenBefore(sent) {
			t.Error("a message as old as a dropped id is not suspect")
		}
		if s.forgottenBefore(clock.Now().Add(2 * senderSkew)) {
			t.Error("a message newer than every dropped id is suspect")
		}
	}
}

func mustLoadSeen(t *testing.T, dir string, limit int, now func() time.Time) *seenSet {
	t.Helper()
	s, err := loadSeen(dir, limit, now, keepAll)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFloodDoesNotReopenReplay checks that a flood of more message ids
// than the bound does not let a replay of an envelope sealed to a signed
// prekey through once its id was dropped, while a message sent after the
// flood still arrives.
func TestFloodDoesNotReopenReplay(t *testing.T) {
	n := startFakeNode(t)
	clock := &fakeClock{now: time.Now()}
	alice := login(t, n, "alice", func(c *Config) { c.Now = clock.Now })
	bob := login(t, n, "bob", func(c *Config) { c.Now = clock.Now })
	n.mu.Lock()
	n.exhaustClaims = true // seal to the signed prekey: a replay still opens
	n.mu.Unlock()
	if _, err := alice.Send(t.Context(), "bob", []byte("one"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	orig := n.byID[bob.DeviceID()].inbox[0]
	n.mu.Unlock()
	if msgs, _ := receiveAll(t, bob); bodies(msgs) != "one" {
		t.Fatalf("bob got %q, want one", bodies(msgs))
	}

	// The flood: more ids than the bound, seen after "one".
	clock.Advance(time.Minute)
	var b strings.Builder
	fmt.Fprintf(&b, "@%d\n", clock.Now().Unix())
	for range maxSeen + 1 {
		b.WriteString(randomID())
		b.WriteByte('\n')
	}
	if err := appendSync(bob.cfg.StateDir, seenFile, []byte(b.String())); err != nil {
		t.Fatal(err)
	}

	clock.Advance(3 * senderSkew)
	n.inject(bob.DeviceID(), &clientv1.StreamInboxResponse{EnvelopeId: "replay", SenderUser: orig.SenderUser, SenderDeviceId: orig.SenderDeviceId, ServerTime: timestamppb.Now(), Ciphertext: orig.Ciphertext})
	if _, err := alice.Send(t.Context(), "bob", []byte("two"), SendOptions{}); err != nil {
		t.Fatal(err)
	}
	msgs, warns := receiveAll(t, bob)
	if got := bodies(msgs); got != "two" {
		t.Errorf("bob got %q, want only two (the replay refused)", got)
	}
	if len(warns) != 1 || warns[0].Kind != WarnReplay || warns[0].Envelope != "replay" || warns[0].Err != errReplaySuspect {
		t.Errorf("warnings = %v, want one replay-suspect warning for the replay", warns)
	}
}

// TestSeenHorizonKeepsIdsWhileSignedPreKeyHeld checks that ids are kept
// at least for rotation + grace + a day, and, when a signed prekey was
// not rotated (a device offline for long), since that prekey was created:
// it still opens replays of every envelope sealed to it.
func TestSeenHorizonKeepsIdsWhileSignedPreKeyHeld(t *testing.T) {
	n := startFakeNode(t)
	clock := newFakeClock()
	bob := login(t, n, "bob", func(c *Config) { c.Now = clock.Now })
	_, sec := loadState(t, bob)
	created := sec.SignedPreKeys[0].Created
	window := bob.cfg.SignedPreKeyRotation + bob.cfg.SignedPreKeyGrace + seenMargin
	if got, want := bob.seenHorizon(clock.Now()), clock.Now().Add(-window); !got.Equal(want) {
		t.Errorf("horizon with a fresh signed prekey: got %v, want %v", got, want)
	}
	later := clock.Now().Add(60 * 24 * time.Hour)
	if got, want := bob.seenHorizon(later), created.Add(-seenMargin); !got.Equal(want) {
		t.Errorf("horizon 60 days on, prekey never rotated: got %v, want %v (its creation less a day)", got, want)
	}
}
