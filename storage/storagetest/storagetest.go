// Package storagetest is the contract suite every storage.Store backend must
// pass. Backends (storage/sqlite, storage/postgres) call Run from their own
// tests with a function that opens a fresh store; the suite holds no SQL and
// knows no backend.
//
// Only tests import this package.
package storagetest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// opener opens a fresh, empty, migrated store.
type opener = func(t *testing.T) storage.Store

// Run runs the contract suite against the backend that open opens. Each
// subtest calls open once and expects a fresh, empty, migrated store; open
// registers the store's cleanup with t.Cleanup. That cleanup must tolerate a
// store the test closed already (the lifecycle test closes it).
//
// Subtests do not run in parallel with each other; some run many goroutines
// against one store.
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, open) })
	t.Run("Users", func(t *testing.T) { testUsers(t, open) })
	t.Run("Devices", func(t *testing.T) { testDevices(t, open) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, open) })
	t.Run("Inbox", func(t *testing.T) { testInbox(t, open) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, open) })
	t.Run("Peers", func(t *testing.T) { testPeers(t, open) })
	t.Run("Federation", func(t *testing.T) { testFederation(t, open) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, open) })
	t.Run("Context", func(t *testing.T) { testContext(t, open) })
}

func testLifecycle(t *testing.T, open opener) {
	t.Run("PingThenClose", func(t *testing.T) {
		s := open(t)
		if err := s.Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.Ping(t.Context()); err == nil {
			t.Errorf("Ping after Close: got nil error, want an error")
		}
		if _, err := s.GetUser(t.Context(), "alice"); err == nil {
			t.Errorf("GetUser after Close: got nil error, want an error")
		}
	})
}

// baseTime is a time with microsecond precision, outside UTC, so that
// round trips prove conversion to UTC.
func baseTime() time.Time {
	return time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.FixedZone("UTC+5:30", 5*3600+1800))
}

// checkTime reports an error unless got is the instant want and in UTC.
func checkTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
	if got.Location() != time.UTC {
		t.Errorf("%s: got location %v, want UTC", what, got.Location())
	}
}

// wantErr reports an error unless errors.Is(err, want); want nil means no
// error.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("%s: got error %v, want none", what, err)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: got error %v, want %v", what, err, want)
	}
}

// mustUser creates an active or inactive user and returns it as given.
func mustUser(t *testing.T, s storage.Store, localpart string, active bool) storage.User {
	t.Helper()
	u := storage.User{
		Localpart:    localpart,
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
		Active:       active,
		CreatedAt:    baseTime(),
		UpdatedAt:    baseTime(),
	}
	if err := s.CreateUser(t.Context(), u, nil); err != nil {
		t.Fatalf("CreateUser(%q): %v", localpart, err)
	}
	return u
}

// mustDevice creates a device with a fresh id and token for user and
// returns it with its token hash.
func mustDevice(t *testing.T, s storage.Store, user string) (storage.Device, []byte) {
	t.Helper()
	return mustDeviceID(t, s, user, valise.NewDeviceID())
}

func mustDeviceID(t *testing.T, s storage.Store, user string, id valise.DeviceID) (storage.Device, []byte) {
	t.Helper()
	d := storage.Device{User: user, ID: id, DisplayName: "laptop " + string(id), CreatedAt: baseTime()}
	hash := tokenHash()
	if err := s.CreateDevice(t.Context(), d, hash); err != nil {
		t.Fatalf("CreateDevice(%q, %q): %v", user, id, err)
	}
	return d, hash
}

// tokenHash returns the SHA-256 of a fresh random token.
func tokenHash() []byte {
	var tok [32]byte
	_, _ = rand.Read(tok[:])
	h := sha256.Sum256(tok[:])
	return h[:]
}

// preKey returns a prekey whose bytes are derived from id and tag.
func preKey(id uint32, tag string) valise.PreKey {
	return valise.PreKey{
		KeyID:     id,
		PublicKey: []byte(fmt.Sprintf("pub-%s-%d", tag, id)),
		Signature: []byte(fmt.Sprintf("sig-%s-%d", tag, id)),
	}
}

func samePreKey(a, b valise.PreKey) bool {
	return a.KeyID == b.KeyID && bytes.Equal(a.PublicKey, b.PublicKey) && bytes.Equal(a.Signature, b.Signature)
}

// auditEvents returns every audit event of s.
func auditEvents(t *testing.T, s storage.Store) []storage.AuditEvent {
	t.Helper()
	evs, err := s.ListAudit(t.Context(), 0, 10000)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	return evs
}

func auditRecord(action, target string) *storage.AuditRecord {
	return &storage.AuditRecord{Time: baseTime(), Actor: "admin", Action: action, Target: target, Detail: "by test"}
}
