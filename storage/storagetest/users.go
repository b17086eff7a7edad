package storagetest

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valise-im/valise/storage"
)

func testUsers(t *testing.T, open opener) {
	t.Run("CreateGet", func(t *testing.T) {
		s := open(t)
		want := storage.User{
			Localpart:    "alice",
			PasswordHash: "$argon2id$hash",
			Active:       true,
			CreatedAt:    baseTime(),
			UpdatedAt:    baseTime().Add(time.Second),
		}
		if err := s.CreateUser(t.Context(), want, auditRecord("create_user", "alice")); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		got, err := s.GetUser(t.Context(), "alice")
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		if got.Localpart != want.Localpart || got.PasswordHash != want.PasswordHash || got.Active != want.Active {
			t.Errorf("GetUser: got %+v, want %+v", got, want)
		}
		checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
		checkTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
		if evs := auditEvents(t, s); len(evs) != 1 || evs[0].Action != "create_user" || evs[0].Target != "alice" {
			t.Errorf("audit after CreateUser: got %+v, want one create_user event", evs)
		}

		mustUser(t, s, "bob", false)
		got, err = s.GetUser(t.Context(), "bob")
		if err != nil {
			t.Fatalf("GetUser(bob): %v", err)
		}
		if got.Active {
			t.Errorf("GetUser(bob).Active: got true, want false")
		}
	})

	t.Run("GetUnknown", func(t *testing.T) {
		s := open(t)
		_, err := s.GetUser(t.Context(), "nobody")
		wantErr(t, "GetUser(nobody)", err, storage.ErrNotFound)
	})

	t.Run("CreateDuplicateRollsBack", func(t *testing.T) {
		s := open(t)
		orig := mustUser(t, s, "alice", true)
		dup := storage.User{Localpart: "alice", PasswordHash: "other", Active: false, CreatedAt: baseTime(), UpdatedAt: baseTime()}
		err := s.CreateUser(t.Context(), dup, auditRecord("create_user", "alice"))
		wantErr(t, "CreateUser duplicate", err, storage.ErrConflict)
		got, err := s.GetUser(t.Context(), "alice")
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		if got.PasswordHash != orig.PasswordHash || got.Active != orig.Active {
			t.Errorf("user after failed duplicate: got %+v, want %+v", got, orig)
		}
		if evs := auditEvents(t, s); len(evs) != 0 {
			t.Errorf("audit after failed CreateUser: got %d events, want 0", len(evs))
		}
	})

	t.Run("ListUsersPaging", func(t *testing.T) {
		s := open(t)
		for _, lp := range []string{"dave", "alice", "erin", "carol", "bob"} {
			mustUser(t, s, lp, lp != "carol")
		}
		tests := []struct {
			name  string
			after string
			limit int
			want  []string
		}{
			{"first page", "", 2, []string{"alice", "bob"}},
			{"second page", "bob", 2, []string{"carol", "dave"}},
			{"last page", "dave", 2, []string{"erin"}},
			{"past the end", "erin", 2, nil},
			{"after a missing name", "b", 2, []string{"bob", "carol"}},
			{"all", "", 100, []string{"alice", "bob", "carol", "dave", "erin"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				users, err := s.ListUsers(t.Context(), tt.after, tt.limit)
				if err != nil {
					t.Fatalf("ListUsers: %v", err)
				}
				var got []string
				for _, u := range users {
					got = append(got, u.Localpart)
					checkTime(t, u.Localpart+" CreatedAt", u.CreatedAt, baseTime())
					if u.Active != (u.Localpart != "carol") {
						t.Errorf("%s.Active: got %v", u.Localpart, u.Active)
					}
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ListUsers(%q, %d) (-want +got):\n%s", tt.after, tt.limit, diff)
				}
			})
		}
	})

	t.Run("ListUsersByteOrder", func(t *testing.T) {
		// Localparts sort bytewise, as Go compares strings, so that keyset
		// pages agree with the after argument ('-' < '.' < digits < '_' < letters).
		s := open(t)
		names := []string{"ab", "a_c", "a.b", "a-z", "a9", "b"}
		for _, lp := range names {
			mustUser(t, s, lp, true)
		}
		want := slices.Clone(names)
		slices.Sort(want)
		var got []string
		for after := ""; ; {
			users, err := s.ListUsers(t.Context(), after, 2)
			if err != nil {
				t.Fatalf("ListUsers: %v", err)
			}
			if len(users) == 0 {
				break
			}
			for _, u := range users {
				got = append(got, u.Localpart)
			}
			after = users[len(users)-1].Localpart
			if len(got) > len(names) {
				t.Fatalf("ListUsers pages never end: got %q", got)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("paged ListUsers (-want +got):\n%s", diff)
		}
	})

	t.Run("SetUserActive", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		tests := []struct {
			name    string
			user    string
			active  bool
			wantErr error
		}{
			{"deactivate", "alice", false, nil},
			{"deactivate again", "alice", false, nil},
			{"reactivate", "alice", true, nil},
			{"unknown user", "nobody", false, storage.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := len(auditEvents(t, s))
				err := s.SetUserActive(t.Context(), tt.user, tt.active, auditRecord("set_active", tt.user))
				wantErr(t, "SetUserActive", err, tt.wantErr)
				wantAudit := before + 1
				if tt.wantErr != nil {
					wantAudit = before
				}
				if got := len(auditEvents(t, s)); got != wantAudit {
					t.Errorf("audit events: got %d, want %d", got, wantAudit)
				}
				if tt.wantErr != nil {
					return
				}
				u, err := s.GetUser(t.Context(), tt.user)
				if err != nil {
					t.Fatalf("GetUser: %v", err)
				}
				if u.Active != tt.active {
					t.Errorf("Active: got %v, want %v", u.Active, tt.active)
				}
				if u.UpdatedAt.Before(u.CreatedAt) {
					t.Errorf("UpdatedAt %v is before CreatedAt %v", u.UpdatedAt, u.CreatedAt)
				}
			})
		}
	})

	t.Run("SetPasswordHash", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		if err := s.SetPasswordHash(t.Context(), "alice", "new-hash", auditRecord("set_password", "alice")); err != nil {
			t.Fatalf("SetPasswordHash: %v", err)
		}
		u, err := s.GetUser(t.Context(), "alice")
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		if u.PasswordHash != "new-hash" {
			t.Errorf("PasswordHash: got %q, want %q", u.PasswordHash, "new-hash")
		}
		checkTime(t, "CreatedAt", u.CreatedAt, baseTime())
		if u.UpdatedAt.Before(u.CreatedAt) || u.UpdatedAt.Location() != time.UTC {
			t.Errorf("UpdatedAt: got %v, want a UTC time not before %v", u.UpdatedAt, u.CreatedAt)
		}
		if evs := auditEvents(t, s); len(evs) != 1 || evs[0].Action != "set_password" {
			t.Errorf("audit: got %+v, want one set_password event", evs)
		}

		err = s.SetPasswordHash(t.Context(), "nobody", "x", auditRecord("set_password", "nobody"))
		wantErr(t, "SetPasswordHash(nobody)", err, storage.ErrNotFound)
		if evs := auditEvents(t, s); len(evs) != 1 {
			t.Errorf("audit after failed SetPasswordHash: got %d events, want 1", len(evs))
		}
		if err := s.SetPasswordHash(t.Context(), "alice", "newer", nil); err != nil {
			t.Errorf("SetPasswordHash without audit: %v", err)
		}
	})
}
