package storagetest

import (
	"context"
	"testing"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

func testContext(t *testing.T, open opener) {
	s := open(t)
	mustUser(t, s, "alice", true)
	d, hash := mustDevice(t, s, "alice")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	u := storage.User{Localpart: "bob", Active: true, CreatedAt: baseTime(), UpdatedAt: baseTime()}
	tests := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return s.Ping(ctx) }},
		{"CreateUser", func() error { return s.CreateUser(ctx, u, auditRecord("create_user", "bob")) }},
		{"GetUser", func() error { _, err := s.GetUser(ctx, "alice"); return err }},
		{"ListUsers", func() error { _, err := s.ListUsers(ctx, "", 10); return err }},
		{"SetUserActive", func() error { return s.SetUserActive(ctx, "alice", false, nil) }},
		{"CreateDevice", func() error {
			return s.CreateDevice(ctx, storage.Device{User: "alice", ID: valise.NewDeviceID(), CreatedAt: baseTime()}, tokenHash())
		}},
		{"Authenticate", func() error { _, err := s.Authenticate(ctx, hash); return err }},
		{"PublishKeys", func() error {
			_, err := s.PublishKeys(ctx, "alice", d.ID, storage.PublishKeys{IdentityKey: identityKey(d)}, 10)
			return err
		}},
		{"ClaimOneTimeKey", func() error { _, _, err := s.ClaimOneTimeKey(ctx, "alice", d.ID); return err }},
		{"CommitBatch", func() error {
			_, err := s.CommitBatch(ctx, &storage.Batch{Sends: []storage.SendOp{newSend("DVSENDERSENDERSEND", "k", d)}})
			return err
		}},
		{"ReadInbox", func() error { _, err := s.ReadInbox(ctx, "alice", d.ID, 0, 10); return err }},
		{"AppendAudit", func() error { _, err := s.AppendAudit(ctx, *auditRecord("x", "y")); return err }},
		{"ListAudit", func() error { _, err := s.ListAudit(ctx, 0, 10); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil {
				t.Errorf("%s with a cancelled context: got nil error, want an error", tt.name)
			}
		})
	}
	// Nothing the cancelled calls tried was written.
	_, err := s.GetUser(t.Context(), "bob")
	wantErr(t, "GetUser(bob)", err, storage.ErrNotFound)
	if u, err := s.GetUser(t.Context(), "alice"); err != nil || !u.Active {
		t.Errorf("GetUser(alice): got %+v, %v; want still active", u, err)
	}
	if n := depth(t, s); n != 0 {
		t.Errorf("InboxDepth: got %d, want 0", n)
	}
	if evs := auditEvents(t, s); len(evs) != 0 {
		t.Errorf("audit: got %d events, want 0", len(evs))
	}
}
