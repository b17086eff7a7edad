package storagetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// peerBundle is a PEM-looking CA bundle; the store keeps it as opaque bytes.
func peerBundle(name string) []byte {
	return []byte("-----BEGIN CERTIFICATE-----\n" + name + "\x00\xff\n-----END CERTIFICATE-----\n")
}

// mustPeer adds an unblocked peer and returns it as given.
func mustPeer(t *testing.T, s storage.Store, name valise.NodeName) storage.Peer {
	t.Helper()
	p := storage.Peer{
		Name:      name,
		Address:   string(name) + ":7443",
		CABundle:  peerBundle(string(name)),
		CreatedAt: baseTime(),
		UpdatedAt: baseTime(),
	}
	if err := s.AddPeer(t.Context(), p, nil); err != nil {
		t.Fatalf("AddPeer(%q): %v", name, err)
	}
	return p
}

func testPeers(t *testing.T, open opener) {
	t.Run("AddGet", func(t *testing.T) {
		s := open(t)
		want := storage.Peer{
			Name:      "b.example",
			Address:   "b.example:7443",
			CABundle:  peerBundle("b"),
			Blocked:   false,
			CreatedAt: baseTime(),
			UpdatedAt: baseTime().Add(time.Second),
		}
		if err := s.AddPeer(t.Context(), want, auditRecord("peer.add", "b.example")); err != nil {
			t.Fatalf("AddPeer: %v", err)
		}
		got, err := s.GetPeer(t.Context(), "b.example")
		if err != nil {
			t.Fatalf("GetPeer: %v", err)
		}
		if got.Name != want.Name || got.Address != want.Address || got.Blocked != want.Blocked {
			t.Errorf("GetPeer: got %+v, want %+v", got, want)
		}
		if !bytes.Equal(got.CABundle, want.CABundle) {
			t.Errorf("CABundle: got %q, want %q", got.CABundle, want.CABundle)
		}
		checkTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
		checkTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
		if evs := auditEvents(t, s); len(evs) != 1 || evs[0].Action != "peer.add" || evs[0].Target != "b.example" {
			t.Errorf("audit after AddPeer: got %+v, want one peer.add event", evs)
		}

		// A peer added blocked, with zero times, gets UTC times now.
		before := time.Now().Add(-time.Second)
		if err := s.AddPeer(t.Context(), storage.Peer{Name: "c.example", Address: "c.example:1", CABundle: peerBundle("c"), Blocked: true}, nil); err != nil {
			t.Fatalf("AddPeer(c): %v", err)
		}
		got, err = s.GetPeer(t.Context(), "c.example")
		if err != nil {
			t.Fatalf("GetPeer(c): %v", err)
		}
		if !got.Blocked {
			t.Errorf("GetPeer(c).Blocked: got false, want true")
		}
		if got.CreatedAt.Before(before) || got.CreatedAt.Location() != time.UTC || !got.UpdatedAt.Equal(got.CreatedAt) {
			t.Errorf("zero times: got created %v updated %v, want a UTC time after %v, both equal", got.CreatedAt, got.UpdatedAt, before)
		}
	})

	t.Run("GetUnknown", func(t *testing.T) {
		s := open(t)
		_, err := s.GetPeer(t.Context(), "nobody.example")
		wantErr(t, "GetPeer(nobody)", err, storage.ErrNotFound)
	})

	t.Run("AddDuplicateRollsBack", func(t *testing.T) {
		s := open(t)
		orig := mustPeer(t, s, "b.example")
		dup := storage.Peer{Name: "b.example", Address: "other:1", CABundle: peerBundle("other"), Blocked: true, CreatedAt: baseTime()}
		err := s.AddPeer(t.Context(), dup, auditRecord("peer.add", "b.example"))
		wantErr(t, "AddPeer duplicate", err, storage.ErrConflict)
		got, err := s.GetPeer(t.Context(), "b.example")
		if err != nil {
			t.Fatalf("GetPeer: %v", err)
		}
		if got.Address != orig.Address || got.Blocked != orig.Blocked || !bytes.Equal(got.CABundle, orig.CABundle) {
			t.Errorf("peer after failed duplicate: got %+v, want %+v", got, orig)
		}
		if evs := auditEvents(t, s); len(evs) != 0 {
			t.Errorf("audit after failed AddPeer: got %d events, want 0", len(evs))
		}
	})

	t.Run("ListPeersPaging", func(t *testing.T) {
		s := open(t)
		for _, n := range []valise.NodeName{"d.example", "a.example", "e.example", "c.example", "b.example", "a-b.example", "a9.example"} {
			mustPeer(t, s, n)
		}
		tests := []struct {
			name  string
			after valise.NodeName
			limit int
			want  []valise.NodeName
		}{
			// Bytewise: '-' < '.' < digits < letters.
			{"first page", "", 3, []valise.NodeName{"a-b.example", "a.example", "a9.example"}},
			{"second page", "a9.example", 2, []valise.NodeName{"b.example", "c.example"}},
			{"last page", "c.example", 5, []valise.NodeName{"d.example", "e.example"}},
			{"past the end", "e.example", 2, nil},
			{"after a missing name", "b", 2, []valise.NodeName{"b.example", "c.example"}},
			{"zero limit", "", 0, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				peers, err := s.ListPeers(t.Context(), tt.after, tt.limit)
				if err != nil {
					t.Fatalf("ListPeers: %v", err)
				}
				var got []valise.NodeName
				for _, p := range peers {
					got = append(got, p.Name)
					checkTime(t, string(p.Name)+" CreatedAt", p.CreatedAt, baseTime())
					checkTime(t, string(p.Name)+" UpdatedAt", p.UpdatedAt, baseTime())
					if want := peerBundle(string(p.Name)); !bytes.Equal(p.CABundle, want) {
						t.Errorf("%s CABundle: got %q, want %q", p.Name, p.CABundle, want)
					}
					if p.Address != string(p.Name)+":7443" {
						t.Errorf("%s Address: got %q", p.Name, p.Address)
					}
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ListPeers(%q, %d) (-want +got):\n%s", tt.after, tt.limit, diff)
				}
			})
		}
	})

	t.Run("SetPeerBlocked", func(t *testing.T) {
		s := open(t)
		mustPeer(t, s, "b.example")
		tests := []struct {
			name    string
			peer    valise.NodeName
			blocked bool
			wantErr error
		}{
			{"block", "b.example", true, nil},
			{"block again", "b.example", true, nil},
			{"unblock", "b.example", false, nil},
			{"unknown peer", "nobody.example", true, storage.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := len(auditEvents(t, s))
				err := s.SetPeerBlocked(t.Context(), tt.peer, tt.blocked, auditRecord("peer.block", string(tt.peer)))
				wantErr(t, "SetPeerBlocked", err, tt.wantErr)
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
				p, err := s.GetPeer(t.Context(), tt.peer)
				if err != nil {
					t.Fatalf("GetPeer: %v", err)
				}
				if p.Blocked != tt.blocked {
					t.Errorf("Blocked: got %v, want %v", p.Blocked, tt.blocked)
				}
				checkTime(t, "CreatedAt", p.CreatedAt, baseTime())
				if p.UpdatedAt.Before(p.CreatedAt) || p.UpdatedAt.Location() != time.UTC {
					t.Errorf("UpdatedAt: got %v, want a UTC time not before %v", p.UpdatedAt, p.CreatedAt)
				}
				if !bytes.Equal(p.CABundle, peerBundle("b.example")) {
					t.Errorf("CABundle changed: got %q", p.CABundle)
				}
			})
		}
		if err := s.SetPeerBlocked(t.Context(), "b.example", true, nil); err != nil {
			t.Errorf("SetPeerBlocked without audit: %v", err)
		}
	})

	t.Run("UpdatePeer", func(t *testing.T) {
		s := open(t)
		old := mustPeer(t, s, "b.example")
		if err := s.SetPeerBlocked(t.Context(), "b.example", true, nil); err != nil {
			t.Fatal(err)
		}
		upd := storage.Peer{Name: "b.example", Address: "10.0.0.2:7444", CABundle: peerBundle("b2"), UpdatedAt: baseTime().Add(time.Hour)}
		if err := s.UpdatePeer(t.Context(), upd, auditRecord("peer.update", "b.example")); err != nil {
			t.Fatalf("UpdatePeer: %v", err)
		}
		got, err := s.GetPeer(t.Context(), "b.example")
		if err != nil {
			t.Fatal(err)
		}
		if got.Address != upd.Address || !bytes.Equal(got.CABundle, upd.CABundle) || !got.Blocked {
			t.Errorf("after UpdatePeer: got %+v; want the new address and bundle, still blocked", got)
		}
		checkTime(t, "CreatedAt", got.CreatedAt, old.CreatedAt)
		checkTime(t, "UpdatedAt", got.UpdatedAt, upd.UpdatedAt)
		if evs := auditEvents(t, s); len(evs) != 1 || evs[0].Action != "peer.update" {
			t.Errorf("audit after UpdatePeer: got %+v, want one peer.update event", evs)
		}
		err = s.UpdatePeer(t.Context(), storage.Peer{Name: "c.example", Address: "c:1", CABundle: peerBundle("c")}, auditRecord("peer.update", "c.example"))
		wantErr(t, "UpdatePeer of an unknown peer", err, storage.ErrNotFound)
		if evs := auditEvents(t, s); len(evs) != 1 {
			t.Errorf("audit after a failed UpdatePeer: got %d events, want 1", len(evs))
		}
	})

	t.Run("RemovePeer", func(t *testing.T) {
		s := open(t)
		mustPeer(t, s, "b.example")
		mustPeer(t, s, "c.example")
		if err := s.RemovePeer(t.Context(), "b.example", auditRecord("peer.remove", "b.example")); err != nil {
			t.Fatalf("RemovePeer: %v", err)
		}
		_, err := s.GetPeer(t.Context(), "b.example")
		wantErr(t, "GetPeer after RemovePeer", err, storage.ErrNotFound)
		if evs := auditEvents(t, s); len(evs) != 1 || evs[0].Action != "peer.remove" || evs[0].Target != "b.example" {
			t.Errorf("audit after RemovePeer: got %+v, want one peer.remove event", evs)
		}
		err = s.RemovePeer(t.Context(), "b.example", auditRecord("peer.remove", "b.example"))
		wantErr(t, "RemovePeer again", err, storage.ErrNotFound)
		err = s.SetPeerBlocked(t.Context(), "b.example", true, auditRecord("peer.block", "b.example"))
		wantErr(t, "SetPeerBlocked after RemovePeer", err, storage.ErrNotFound)
		if evs := auditEvents(t, s); len(evs) != 1 {
			t.Errorf("audit after failed RemovePeer: got %d events, want 1", len(evs))
		}
		peers, err := s.ListPeers(t.Context(), "", 10)
		if err != nil {
			t.Fatalf("ListPeers: %v", err)
		}
		if len(peers) != 1 || peers[0].Name != "c.example" {
			t.Errorf("ListPeers after RemovePeer: got %+v, want only c.example", peers)
		}
		// The name is free again.
		mustPeer(t, s, "b.example")
	})
}
