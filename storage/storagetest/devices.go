package storagetest

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

func testDevices(t *testing.T, open opener) {
	t.Run("CreateGetAuthenticate", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		want, hash := mustDevice(t, s, "alice")
		got, err := s.GetDevice(t.Context(), "alice", want.ID)
		if err != nil {
			t.Fatalf("GetDevice: %v", err)
		}
		checkDevice(t, "GetDevice", got, want)
		got, err = s.Authenticate(t.Context(), hash)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		checkDevice(t, "Authenticate", got, want)
	})

	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		d, _ := mustDevice(t, s, "alice")
		_, err := s.GetDevice(t.Context(), "alice", valise.NewDeviceID())
		wantErr(t, "GetDevice(unknown id)", err, storage.ErrNotFound)
		_, err = s.GetDevice(t.Context(), "bob", d.ID)
		wantErr(t, "GetDevice(other user)", err, storage.ErrNotFound)
		_, err = s.Authenticate(t.Context(), tokenHash())
		wantErr(t, "Authenticate(unknown)", err, storage.ErrNotFound)
		err = s.DeleteDevice(t.Context(), "alice", valise.NewDeviceID(), auditRecord("delete_device", "alice"))
		wantErr(t, "DeleteDevice(unknown)", err, storage.ErrNotFound)
		if evs := auditEvents(t, s); len(evs) != 0 {
			t.Errorf("audit after failed DeleteDevice: got %d events, want 0", len(evs))
		}
	})

	t.Run("CreateErrors", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		mustUser(t, s, "bob", true)
		mustUser(t, s, "gone", false)
		taken, takenHash := mustDevice(t, s, "alice")
		tests := []struct {
			name string
			d    storage.Device
			hash []byte
			want error
		}{
			{"unknown user", storage.Device{User: "nobody", ID: valise.NewDeviceID()}, tokenHash(), storage.ErrNotFound},
			{"deactivated user", storage.Device{User: "gone", ID: valise.NewDeviceID()}, tokenHash(), storage.ErrPrecondition},
			{"duplicate id", storage.Device{User: "alice", ID: taken.ID}, tokenHash(), storage.ErrConflict},
			{"duplicate token hash", storage.Device{User: "alice", ID: valise.NewDeviceID()}, takenHash, storage.ErrConflict},
			{"duplicate token hash of another user", storage.Device{User: "bob", ID: valise.NewDeviceID()}, takenHash, storage.ErrConflict},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.d.CreatedAt = baseTime()
				err := s.CreateDevice(t.Context(), tt.d, tt.hash)
				wantErr(t, "CreateDevice", err, tt.want)
				if tt.d.ID == taken.ID {
					return
				}
				_, err = s.GetDevice(t.Context(), tt.d.User, tt.d.ID)
				wantErr(t, "GetDevice after failed create", err, storage.ErrNotFound)
			})
		}
		got, err := s.Authenticate(t.Context(), takenHash)
		if err != nil {
			t.Fatalf("Authenticate(taken): %v", err)
		}
		checkDevice(t, "Authenticate after conflicts", got, taken)
	})

	t.Run("ListDevicesPaging", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		mustUser(t, s, "bob", true)
		var ids []string
		for range 5 {
			d, _ := mustDevice(t, s, "alice")
			ids = append(ids, string(d.ID))
		}
		mustDevice(t, s, "bob")
		slices.Sort(ids)
		var got []string
		after := valise.DeviceID("")
		for page := 0; page < 10; page++ {
			devs, err := s.ListDevices(t.Context(), "alice", after, 2)
			if err != nil {
				t.Fatalf("ListDevices: %v", err)
			}
			if len(devs) > 2 {
				t.Fatalf("ListDevices(limit 2): got %d devices", len(devs))
			}
			if len(devs) == 0 {
				break
			}
			for _, d := range devs {
				if d.User != "alice" {
					t.Errorf("ListDevices(alice): got a device of %q", d.User)
				}
				checkTime(t, "CreatedAt", d.CreatedAt, baseTime())
				got = append(got, string(d.ID))
			}
			after = devs[len(devs)-1].ID
		}
		if diff := cmp.Diff(ids, got); diff != "" {
			t.Errorf("paged ListDevices (-want +got):\n%s", diff)
		}
		devs, err := s.ListDevices(t.Context(), "nobody", "", 10)
		if err != nil || len(devs) != 0 {
			t.Errorf("ListDevices(nobody): got %v, %v; want no devices, no error", devs, err)
		}
	})

	t.Run("DeleteDevice", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		d, hash := mustDevice(t, s, "alice")
		keep, keepHash := mustDevice(t, s, "alice")
		publishFull(t, s, d, 3)
		publishFull(t, s, keep, 3)
		sendTo(t, s, []storage.Device{d, d, keep})

		if err := s.DeleteDevice(t.Context(), "alice", d.ID, auditRecord("delete_device", string(d.ID))); err != nil {
			t.Fatalf("DeleteDevice: %v", err)
		}
		checkDeviceGone(t, s, d, hash)
		if _, err := s.Authenticate(t.Context(), keepHash); err != nil {
			t.Errorf("Authenticate(other device): %v", err)
		}
		if n, err := s.InboxDepth(t.Context()); err != nil || n != 1 {
			t.Errorf("InboxDepth: got %d, %v; want 1", n, err)
		}
		if evs := auditEvents(t, s); len(evs) != 1 || evs[0].Action != "delete_device" {
			t.Errorf("audit: got %+v, want one delete_device event", evs)
		}
		err := s.DeleteDevice(t.Context(), "alice", d.ID, nil)
		wantErr(t, "DeleteDevice again", err, storage.ErrNotFound)
	})

	t.Run("DeactivateDeletesDevices", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		mustUser(t, s, "bob", true)
		d1, h1 := mustDevice(t, s, "alice")
		d2, h2 := mustDevice(t, s, "alice")
		b, bh := mustDevice(t, s, "bob")
		for _, d := range []storage.Device{d1, d2, b} {
			publishFull(t, s, d, 2)
		}
		sendTo(t, s, []storage.Device{d1, d2, d2, b})

		if err := s.SetUserActive(t.Context(), "alice", false, auditRecord("deactivate", "alice")); err != nil {
			t.Fatalf("SetUserActive(false): %v", err)
		}
		checkDeviceGone(t, s, d1, h1)
		checkDeviceGone(t, s, d2, h2)
		if devs, err := s.ListDevices(t.Context(), "alice", "", 10); err != nil || len(devs) != 0 {
			t.Errorf("ListDevices(alice): got %v, %v; want none", devs, err)
		}
		if got, err := s.Authenticate(t.Context(), bh); err != nil || got.ID != b.ID {
			t.Errorf("Authenticate(bob): got %+v, %v; want bob's device", got, err)
		}
		if n, err := s.InboxDepth(t.Context()); err != nil || n != 1 {
			t.Errorf("InboxDepth: got %d, %v; want 1 (bob's)", n, err)
		}
		err := s.CreateDevice(t.Context(), storage.Device{User: "alice", ID: valise.NewDeviceID(), CreatedAt: baseTime()}, tokenHash())
		wantErr(t, "CreateDevice for deactivated user", err, storage.ErrPrecondition)

		if err := s.SetUserActive(t.Context(), "alice", true, nil); err != nil {
			t.Fatalf("SetUserActive(true): %v", err)
		}
		mustDevice(t, s, "alice")
		if evs := auditEvents(t, s); len(evs) != 1 || evs[0].Action != "deactivate" {
			t.Errorf("audit: got %+v, want one deactivate event", evs)
		}
	})
}

// checkDevice compares a device read back with the one created.
func checkDevice(t *testing.T, what string, got, want storage.Device) {
	t.Helper()
	if got.User != want.User || got.ID != want.ID || got.DisplayName != want.DisplayName || got.HasKeys != want.HasKeys {
		t.Errorf("%s: got %+v, want %+v", what, got, want)
	}
	checkTime(t, what+" CreatedAt", got.CreatedAt, want.CreatedAt)
}

// checkDeviceGone checks that d, its token, keys and inbox are gone.
func checkDeviceGone(t *testing.T, s storage.Store, d storage.Device, hash []byte) {
	t.Helper()
	_, err := s.GetDevice(t.Context(), d.User, d.ID)
	wantErr(t, "GetDevice of deleted device", err, storage.ErrNotFound)
	_, err = s.Authenticate(t.Context(), hash)
	wantErr(t, "Authenticate of deleted device", err, storage.ErrNotFound)
	_, err = s.CountOneTimeKeys(t.Context(), d.User, d.ID)
	wantErr(t, "CountOneTimeKeys of deleted device", err, storage.ErrNotFound)
	_, _, err = s.ClaimOneTimeKey(t.Context(), d.User, d.ID)
	wantErr(t, "ClaimOneTimeKey of deleted device", err, storage.ErrNotFound)
	keys, err := s.GetDeviceKeys(t.Context(), d.User)
	if err != nil {
		t.Fatalf("GetDeviceKeys: %v", err)
	}
	for _, k := range keys {
		if k.Device == d.ID {
			t.Errorf("GetDeviceKeys still lists deleted device %s", d.ID)
		}
	}
	envs, err := s.ReadInbox(t.Context(), d.User, d.ID, 0, 100)
	if err != nil || len(envs) != 0 {
		t.Errorf("ReadInbox of deleted device: got %d envelopes, %v; want none", len(envs), err)
	}
}
