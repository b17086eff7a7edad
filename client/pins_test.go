package client

import (
	"errors"
	"testing"
	"time"
)

func TestApplyPins(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	const bob = "bob@localhost"
	tests := []struct {
		name        string
		pins        map[string]*pin
		keys        map[string][]byte
		accept      bool
		wantWarn    []WarningKind
		wantChanged []string
		wantPins    map[string]string // device → key after
		wantTrust   map[string]Trust  // device → trust after
	}{
		{
			name:      "first use pins silently",
			keys:      map[string][]byte{"D1": []byte("k1"), "D2": []byte("k2")},
			wantPins:  map[string]string{"D1": "k1", "D2": "k2"},
			wantTrust: map[string]Trust{"D1": TrustPinned, "D2": TrustPinned},
		},
		{
			name:      "same key is quiet",
			pins:      map[string]*pin{"D1": {IdentityKey: []byte("k1")}},
			keys:      map[string][]byte{"D1": []byte("k1")},
			wantPins:  map[string]string{"D1": "k1"},
			wantTrust: map[string]Trust{"D1": TrustPinned},
		},
		{
			name:        "changed key is refused",
			pins:        map[string]*pin{"D1": {IdentityKey: []byte("k1"), Verified: true}},
			keys:        map[string][]byte{"D1": []byte("evil")},
			wantChanged: []string{"D1"},
			wantPins:    map[string]string{"D1": "k1"},
			wantTrust:   map[string]Trust{"D1": TrustChanged},
		},
		{
			name:      "changed key accepted is re-pinned unverified",
			pins:      map[string]*pin{"D1": {IdentityKey: []byte("k1"), Verified: true}},
			keys:      map[string][]byte{"D1": []byte("new")},
			accept:    true,
			wantWarn:  []WarningKind{WarnChangedKey},
			wantPins:  map[string]string{"D1": "new"},
			wantTrust: map[string]Trust{"D1": TrustPinned},
		},
		{
			name:      "new device of a verified user warns",
			pins:      map[string]*pin{"D1": {IdentityKey: []byte("k1"), Verified: true}},
			keys:      map[string][]byte{"D1": []byte("k1"), "D2": []byte("k2"), "D3": []byte("k3")},
			wantWarn:  []WarningKind{WarnNewDevice, WarnNewDevice},
			wantPins:  map[string]string{"D1": "k1", "D2": "k2", "D3": "k3"},
			wantTrust: map[string]Trust{"D1": TrustVerified, "D2": TrustPinned, "D3": TrustPinned},
		},
		{
			name:      "new device of an unverified user is quiet",
			pins:      map[string]*pin{"D1": {IdentityKey: []byte("k1")}},
			keys:      map[string][]byte{"D1": []byte("k1"), "D2": []byte("k2")},
			wantPins:  map[string]string{"D1": "k1", "D2": "k2"},
			wantTrust: map[string]Trust{"D1": TrustPinned, "D2": TrustPinned},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &state{Pins: map[string]map[string]*pin{}}
			if tc.pins != nil {
				st.Pins[bob] = tc.pins
			}
			warns, changed := applyPins(st, bob, tc.keys, tc.accept, now)
			var kinds []WarningKind
			for _, w := range warns {
				kinds = append(kinds, w.Kind)
				if w.User != bob || w.Device == "" || w.String() == "" {
					t.Errorf("warning %+v lacks its subject", w)
				}
			}
			if !equalSlices(kinds, tc.wantWarn) {
				t.Errorf("warnings = %v, want %v", kinds, tc.wantWarn)
			}
			if !equalSlices(changed, tc.wantChanged) {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			for dev, key := range tc.wantPins {
				if p := st.Pins[bob][dev]; p == nil || string(p.IdentityKey) != key {
					t.Errorf("pin of %s = %+v, want key %q", dev, p, key)
				}
			}
			for dev, want := range tc.wantTrust {
				if got := trustOf(st, bob, dev, tc.keys[dev]); got != want {
					t.Errorf("trust of %s = %v, want %v", dev, got, want)
				}
			}
		})
	}
}

func TestVerifyPins(t *testing.T) {
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &state{Pins: map[string]map[string]*pin{"bob@x": {
		"D1":   {IdentityKey: []byte("k1"), FirstSeen: first},
		"GONE": {IdentityKey: []byte("g")},
		"D2":   {IdentityKey: []byte("old")},
	}}}
	verifyPins(st, "bob@x", map[string][]byte{"D1": []byte("k1"), "D2": []byte("k2")}, first.Add(time.Hour))
	if len(st.Pins["bob@x"]) != 2 {
		t.Errorf("pins = %v, want D1 and D2 only", st.Pins["bob@x"])
	}
	for dev, key := range map[string]string{"D1": "k1", "D2": "k2"} {
		if got := trustOf(st, "bob@x", dev, []byte(key)); got != TrustVerified {
			t.Errorf("trust of %s = %v, want verified", dev, got)
		}
	}
	if !st.Pins["bob@x"]["D1"].FirstSeen.Equal(first) {
		t.Error("verifying forgot when an unchanged key was first seen")
	}
	if !userVerified(st, "bob@x") || userVerified(st, "carol@x") {
		t.Error("userVerified is wrong")
	}
}

func TestChangedKeysErrorIs(t *testing.T) {
	var err error = &ChangedKeysError{User: "bob@x", Devices: []string{"D1"}}
	err = errors.Join(err)
	if !errors.Is(err, ErrIdentityChanged) {
		t.Error("ChangedKeysError is not ErrIdentityChanged")
	}
	var ce *ChangedKeysError
	if !errors.As(err, &ce) || ce.Devices[0] != "D1" {
		t.Error("errors.As lost the devices")
	}
}

func equalSlices[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
