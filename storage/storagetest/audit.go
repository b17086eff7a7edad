package storagetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valise-im/valise/storage"
)

func testAudit(t *testing.T, open opener) {
	t.Run("AppendChain", func(t *testing.T) {
		s := open(t)
		var prev []byte
		for i := int64(1); i <= 3; i++ {
			r := storage.AuditRecord{
				// Nanoseconds: the store truncates to microseconds.
				Time:   baseTime().Add(time.Duration(i)*time.Minute + 789*time.Nanosecond),
				Actor:  "admin",
				Action: "test",
				Target: "alice",
				Detail: "step \x00 ünïcode",
			}
			ev, err := s.AppendAudit(t.Context(), r)
			if err != nil {
				t.Fatalf("AppendAudit: %v", err)
			}
			if ev.Seq != i {
				t.Errorf("Seq: got %d, want %d", ev.Seq, i)
			}
			if !bytes.Equal(ev.PrevHash, prev) {
				t.Errorf("event %d PrevHash: got %x, want %x", i, ev.PrevHash, prev)
			}
			checkTime(t, "Time", ev.Time, r.Time.Truncate(time.Microsecond))
			if ev.Actor != r.Actor || ev.Action != r.Action || ev.Target != r.Target || ev.Detail != r.Detail {
				t.Errorf("event %d: got %+v, want %+v", i, ev.AuditRecord, r)
			}
			prev = ev.Hash
		}
		evs := auditEvents(t, s)
		if len(evs) != 3 {
			t.Fatalf("ListAudit: got %d events, want 3", len(evs))
		}
		if bad := storage.VerifyAuditChain(nil, evs); bad != 0 {
			t.Errorf("VerifyAuditChain: broken at %d", bad)
		}
		if !bytes.Equal(evs[2].Hash, prev) {
			t.Errorf("ListAudit last hash: got %x, want %x", evs[2].Hash, prev)
		}
		for _, ev := range evs {
			if ev.Time.Location() != time.UTC {
				t.Errorf("event %d Time location: got %v, want UTC", ev.Seq, ev.Time.Location())
			}
		}
	})

	t.Run("CompositeWrites", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		if _, err := s.AppendAudit(ctx, *auditRecord("login", "root")); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
		u := storage.User{Localpart: "alice", PasswordHash: "h", Active: true, CreatedAt: baseTime(), UpdatedAt: baseTime()}
		if err := s.CreateUser(ctx, u, auditRecord("create_user", "alice")); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		d, _ := mustDevice(t, s, "alice")
		steps := []struct {
			name string
			do   func(a *storage.AuditRecord) error
			ok   bool
		}{
			{"CreateUser conflict", func(a *storage.AuditRecord) error { return s.CreateUser(ctx, u, a) }, false},
			{"SetPasswordHash", func(a *storage.AuditRecord) error { return s.SetPasswordHash(ctx, "alice", "h2", a) }, true},
			{"SetPasswordHash unknown", func(a *storage.AuditRecord) error { return s.SetPasswordHash(ctx, "nobody", "h2", a) }, false},
			{"DeleteDevice", func(a *storage.AuditRecord) error { return s.DeleteDevice(ctx, "alice", d.ID, a) }, true},
			{"DeleteDevice unknown", func(a *storage.AuditRecord) error { return s.DeleteDevice(ctx, "alice", d.ID, a) }, false},
			{"SetUserActive", func(a *storage.AuditRecord) error { return s.SetUserActive(ctx, "alice", false, a) }, true},
			{"SetUserActive unknown", func(a *storage.AuditRecord) error { return s.SetUserActive(ctx, "nobody", false, a) }, false},
		}
		want := []string{"login", "create_user"}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				err := st.do(auditRecord(st.name, "alice"))
				if st.ok != (err == nil) {
					t.Errorf("got error %v, want success %v", err, st.ok)
				}
				if err == nil {
					want = append(want, st.name)
				}
				evs := auditEvents(t, s)
				var got []string
				for _, ev := range evs {
					got = append(got, ev.Action)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("audit actions (-want +got):\n%s", diff)
				}
				if bad := storage.VerifyAuditChain(nil, evs); bad != 0 {
					t.Errorf("VerifyAuditChain: broken at %d", bad)
				}
			})
		}
	})

	t.Run("ListPaging", func(t *testing.T) {
		s := open(t)
		for range 5 {
			if _, err := s.AppendAudit(t.Context(), *auditRecord("a", "t")); err != nil {
				t.Fatalf("AppendAudit: %v", err)
			}
		}
		tests := []struct {
			name  string
			after int64
			limit int
			want  []int64
		}{
			{"first page", 0, 2, []int64{1, 2}},
			{"middle page", 2, 2, []int64{3, 4}},
			{"last page", 4, 2, []int64{5}},
			{"past the end", 5, 2, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				evs, err := s.ListAudit(t.Context(), tt.after, tt.limit)
				if err != nil {
					t.Fatalf("ListAudit: %v", err)
				}
				var got []int64
				for _, ev := range evs {
					got = append(got, ev.Seq)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ListAudit(%d, %d) seqs (-want +got):\n%s", tt.after, tt.limit, diff)
				}
				if len(evs) > 0 && tt.after > 0 {
					prev, err := s.ListAudit(t.Context(), tt.after-1, 1)
					if err != nil || len(prev) != 1 {
						t.Fatalf("ListAudit(%d, 1): %v, %v", tt.after-1, prev, err)
					}
					if bad := storage.VerifyAuditChain(prev[0].Hash, evs); bad != 0 {
						t.Errorf("VerifyAuditChain of the page: broken at %d", bad)
					}
				}
			})
		}
	})
}
