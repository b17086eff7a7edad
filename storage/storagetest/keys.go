package storagetest

import (
	"bytes"
	"sync"
	"testing"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// identityKey returns the identity key the suite publishes for d.
func identityKey(d storage.Device) []byte { return []byte("identity-" + string(d.ID)) }

// publishFull publishes an identity key, signed prekey 1 and one-time keys
// 1..n for d.
func publishFull(t *testing.T, s storage.Store, d storage.Device, n int) {
	t.Helper()
	k := storage.PublishKeys{IdentityKey: identityKey(d), SignedPreKey: preKey(1, "spk"+string(d.ID))}
	for i := 1; i <= n; i++ {
		k.OneTimeKeys = append(k.OneTimeKeys, preKey(uint32(i), "otk"+string(d.ID)))
	}
	got, err := s.PublishKeys(t.Context(), d.User, d.ID, k, valise.DefaultMaxOneTimeKeysStored)
	if err != nil {
		t.Fatalf("PublishKeys(%s): %v", d.ID, err)
	}
	if got != n {
		t.Fatalf("PublishKeys(%s): got count %d, want %d", d.ID, got, n)
	}
}

func otks(tag string, ids ...uint32) []valise.PreKey {
	var ks []valise.PreKey
	for _, id := range ids {
		ks = append(ks, preKey(id, tag))
	}
	return ks
}

func testKeys(t *testing.T, open opener) {
	t.Run("Publish", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		d, _ := mustDevice(t, s, "alice")
		ik := identityKey(d)
		const max = 7
		steps := []struct {
			name      string
			k         storage.PublishKeys
			wantErr   error
			wantCount int // after the step, whether it failed or not
		}{
			{"first without identity key", storage.PublishKeys{OneTimeKeys: otks("a", 1)}, storage.ErrPrecondition, 0},
			{"first", storage.PublishKeys{IdentityKey: ik, SignedPreKey: preKey(1, "spk"), OneTimeKeys: otks("a", 1, 2, 3)}, nil, 3},
			{"more without identity key", storage.PublishKeys{OneTimeKeys: otks("a", 4)}, nil, 4},
			{"same identity key", storage.PublishKeys{IdentityKey: ik, OneTimeKeys: otks("a", 5)}, nil, 5},
			{"identity key change", storage.PublishKeys{IdentityKey: []byte("other"), OneTimeKeys: otks("a", 6)}, storage.ErrConflict, 5},
			{"key id in stock", storage.PublishKeys{OneTimeKeys: otks("b", 6, 2)}, storage.ErrConflict, 5},
			{"key id twice in one upload", storage.PublishKeys{OneTimeKeys: otks("b", 7, 7)}, storage.ErrConflict, 5},
			{"over maxStored", storage.PublishKeys{OneTimeKeys: otks("a", 6, 7, 8)}, storage.ErrPrecondition, 5},
			{"up to maxStored", storage.PublishKeys{OneTimeKeys: otks("a", 6, 7)}, nil, 7},
			{"no one-time keys at the limit", storage.PublishKeys{SignedPreKey: preKey(2, "spk")}, nil, 7},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				n, err := s.PublishKeys(t.Context(), "alice", d.ID, st.k, max)
				wantErr(t, "PublishKeys", err, st.wantErr)
				if err == nil && n != st.wantCount {
					t.Errorf("PublishKeys count: got %d, want %d", n, st.wantCount)
				}
				got, err := s.CountOneTimeKeys(t.Context(), "alice", d.ID)
				if err != nil {
					t.Fatalf("CountOneTimeKeys: %v", err)
				}
				if got != st.wantCount {
					t.Errorf("CountOneTimeKeys: got %d, want %d", got, st.wantCount)
				}
			})
		}
		keys, err := s.GetDeviceKeys(t.Context(), "alice")
		if err != nil || len(keys) != 1 {
			t.Fatalf("GetDeviceKeys: got %v, %v; want one device", keys, err)
		}
		if !bytes.Equal(keys[0].IdentityKey, ik) || !samePreKey(keys[0].SignedPreKey, preKey(2, "spk")) {
			t.Errorf("GetDeviceKeys: got %+v, want identity %q and signed prekey 2", keys[0], ik)
		}
		// Claim key 1, then publishing key id 1 again is a conflict.
		if k, fb, err := s.ClaimOneTimeKey(t.Context(), "alice", d.ID); err != nil || fb || k.KeyID != 1 {
			t.Fatalf("ClaimOneTimeKey: got %+v, %v, %v; want key 1", k, fb, err)
		}
		_, err = s.PublishKeys(t.Context(), "alice", d.ID, storage.PublishKeys{OneTimeKeys: otks("c", 1)}, max)
		wantErr(t, "PublishKeys(claimed key id)", err, storage.ErrConflict)
	})

	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		bare, _ := mustDevice(t, s, "alice")
		id := valise.NewDeviceID()
		_, err := s.PublishKeys(t.Context(), "alice", id, storage.PublishKeys{IdentityKey: []byte("ik")}, 10)
		wantErr(t, "PublishKeys(unknown device)", err, storage.ErrNotFound)
		_, err = s.PublishKeys(t.Context(), "bob", bare.ID, storage.PublishKeys{IdentityKey: []byte("ik")}, 10)
		wantErr(t, "PublishKeys(wrong user)", err, storage.ErrNotFound)
		_, err = s.CountOneTimeKeys(t.Context(), "alice", id)
		wantErr(t, "CountOneTimeKeys(unknown device)", err, storage.ErrNotFound)
		_, _, err = s.ClaimOneTimeKey(t.Context(), "alice", id)
		wantErr(t, "ClaimOneTimeKey(unknown device)", err, storage.ErrNotFound)
		_, _, err = s.ClaimOneTimeKey(t.Context(), "alice", bare.ID)
		wantErr(t, "ClaimOneTimeKey(device without keys)", err, storage.ErrNotFound)
		if n, err := s.CountOneTimeKeys(t.Context(), "alice", bare.ID); err != nil || n != 0 {
			t.Errorf("CountOneTimeKeys(device without keys): got %d, %v; want 0", n, err)
		}
		if keys, err := s.GetDeviceKeys(t.Context(), "nobody"); err != nil || len(keys) != 0 {
			t.Errorf("GetDeviceKeys(nobody): got %v, %v; want none", keys, err)
		}
	})

	t.Run("GetDeviceKeys", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		mustUser(t, s, "bob", true)
		a1, _ := mustDeviceID(t, s, "alice", "DVZZZZZZZZZZZZZZZZ")
		a2, _ := mustDeviceID(t, s, "alice", "DVAAAAAAAAAAAAAAAA")
		mustDeviceID(t, s, "alice", "DVMMMMMMMMMMMMMMMM") // no keys
		b, _ := mustDevice(t, s, "bob")
		for _, d := range []storage.Device{a1, a2, b} {
			publishFull(t, s, d, 1)
		}
		keys, err := s.GetDeviceKeys(t.Context(), "alice")
		if err != nil {
			t.Fatalf("GetDeviceKeys: %v", err)
		}
		want := []storage.Device{a2, a1}
		if len(keys) != len(want) {
			t.Fatalf("GetDeviceKeys: got %d devices, want %d", len(keys), len(want))
		}
		for i, d := range want {
			k := keys[i]
			if k.Device != d.ID || !bytes.Equal(k.IdentityKey, identityKey(d)) || !samePreKey(k.SignedPreKey, preKey(1, "spk"+string(d.ID))) {
				t.Errorf("GetDeviceKeys[%d]: got %+v, want the keys of %s", i, k, d.ID)
			}
		}
		devs, err := s.ListDevices(t.Context(), "alice", "", 10)
		if err != nil {
			t.Fatalf("ListDevices: %v", err)
		}
		for _, d := range devs {
			if want := d.ID != "DVMMMMMMMMMMMMMMMM"; d.HasKeys != want {
				t.Errorf("device %s HasKeys: got %v, want %v", d.ID, d.HasKeys, want)
			}
		}
	})

	t.Run("ClaimOrder", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		d, _ := mustDevice(t, s, "alice")
		spk := preKey(9, "spk")
		k := storage.PublishKeys{IdentityKey: identityKey(d), SignedPreKey: spk, OneTimeKeys: otks("otk", 7, 3, 500)}
		if _, err := s.PublishKeys(t.Context(), "alice", d.ID, k, 10); err != nil {
			t.Fatalf("PublishKeys: %v", err)
		}
		wants := []struct {
			key      valise.PreKey
			fallback bool
		}{{preKey(3, "otk"), false}, {preKey(7, "otk"), false}, {preKey(500, "otk"), false}, {spk, true}, {spk, true}}
		for i, w := range wants {
			got, fb, err := s.ClaimOneTimeKey(t.Context(), "alice", d.ID)
			if err != nil {
				t.Fatalf("claim %d: %v", i, err)
			}
			if fb != w.fallback || !samePreKey(got, w.key) {
				t.Errorf("claim %d: got %+v (fallback %v), want %+v (fallback %v)", i, got, fb, w.key, w.fallback)
			}
		}
		if n, err := s.CountOneTimeKeys(t.Context(), "alice", d.ID); err != nil || n != 0 {
			t.Errorf("CountOneTimeKeys: got %d, %v; want 0", n, err)
		}
	})

	t.Run("ConcurrentClaims", func(t *testing.T) {
		s := open(t)
		mustUser(t, s, "alice", true)
		d, _ := mustDevice(t, s, "alice")
		const stock, claimers = 10, 20
		publishFull(t, s, d, stock)
		type claim struct {
			key      valise.PreKey
			fallback bool
			err      error
		}
		results := make([]claim, claimers)
		var wg sync.WaitGroup
		for i := range claimers {
			wg.Go(func() {
				k, fb, err := s.ClaimOneTimeKey(t.Context(), "alice", d.ID)
				results[i] = claim{k, fb, err}
			})
		}
		wg.Wait()
		seen := map[uint32]bool{}
		fallbacks := 0
		for i, r := range results {
			switch {
			case r.err != nil:
				t.Errorf("claim %d: %v", i, r.err)
			case r.fallback:
				fallbacks++
			case seen[r.key.KeyID]:
				t.Errorf("claim %d: one-time key %d handed out twice", i, r.key.KeyID)
			default:
				seen[r.key.KeyID] = true
			}
		}
		if len(seen) != stock || fallbacks != claimers-stock {
			t.Errorf("got %d distinct one-time keys and %d fallbacks, want %d and %d", len(seen), fallbacks, stock, claimers-stock)
		}
	})
}
