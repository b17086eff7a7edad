package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/valise-im/valise"
)

// countingRemote is a Remote that counts claims and allows every node.
type countingRemote struct{ claims int }

func (r *countingRemote) CheckDestination(valise.NodeName) error { return nil }
func (r *countingRemote) Queued([]valise.NodeName)               {}
func (r *countingRemote) Retry(valise.NodeName)                  {}
func (r *countingRemote) DeviceKeys(context.Context, valise.UserID) ([]valise.DeviceKeys, error) {
	return nil, nil
}
func (r *countingRemote) ClaimOneTimeKey(context.Context, valise.UserID, valise.DeviceID, valise.UserID, valise.DeviceID) (valise.PreKey, bool, error) {
	r.claims++
	return valise.PreKey{KeyID: 9}, false, nil
}

// claimStore answers every local claim with a key.
type claimStore struct{ memInbox }

func (c *claimStore) ClaimOneTimeKey(context.Context, string, valise.DeviceID) (valise.PreKey, bool, error) {
	return valise.PreKey{KeyID: 1}, false, nil
}

// idFor makes the i-th well-formed device id.
func idFor(i int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b := make([]byte, 16)
	for j := 15; j >= 0; j-- {
		b[j] = alphabet[i%32]
		i /= 32
	}
	return "DV" + string(b)
}

// TestRemoteClaimFloodIsolated: a device claiming from made-up devices of
// another node is stopped by its own remote budget, and cannot exhaust
// the claim limiter other devices use for local claims.
func TestRemoteClaimFloodIsolated(t *testing.T) {
	r := &countingRemote{}
	n := NewNode(Config{Node: "localhost", Password: cheap, Remote: r}, &claimStore{}, nil, slog.New(slog.DiscardHandler))
	mallory := Caller{User: "mallory", Device: devA}
	start := time.Now()
	for i := range 120_000 {
		_, _, _ = n.ClaimOneTimeKey(t.Context(), mallory, "x@peer.example", idFor(i))
	}
	// The bucket refills while the loop runs.
	rate := DefaultConfig().Limits.RemoteLookup
	if want := rate.Burst + int(time.Since(start).Seconds()*rate.PerSecond) + 1; r.claims > want {
		t.Errorf("%d claims reached the other node, want at most %d (the remote lookup budget)", r.claims, want)
	}
	alice := Caller{User: "alice", Device: devB}
	for _, d := range []string{idFor(1), idFor(2), idFor(3)} {
		if _, _, err := n.ClaimOneTimeKey(t.Context(), alice, "bob", d); err != nil {
			t.Errorf("an honest local claim after the flood: %v", err)
		}
	}
}
