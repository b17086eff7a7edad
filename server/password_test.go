package server

import (
	"errors"
	"strings"
	"testing"
)

// cheap is an argon2id cost small enough for tests.
var cheap = PasswordParams{Time: 1, MemoryK: 64, Threads: 1}

func TestPasswordRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		password string
	}{
		{"ascii", "correct horse battery staple"},
		{"unicode", "pässwörd🔑"},
		{"empty", ""},
		{"longest", strings.Repeat("x", MaxPasswordLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := HashPassword(cheap, tt.password)
			ok, err := CheckPassword(enc, tt.password)
			if err != nil || !ok {
				t.Fatalf("CheckPassword(HashPassword(p), p) = %v, %v; want true, nil", ok, err)
			}
			for _, wrong := range []string{tt.password + "x", strings.ToUpper(tt.password) + "!", "other"} {
				ok, err := CheckPassword(enc, wrong)
				if err != nil || ok {
					t.Errorf("CheckPassword(hash, %q) = %v, %v; want false, nil", wrong, ok, err)
				}
			}
		})
	}
}

func TestHashPasswordEncoding(t *testing.T) {
	a, b := HashPassword(cheap, "password"), HashPassword(cheap, "password")
	if a == b {
		t.Errorf("two hashes of one password are equal (%q); want distinct salts", a)
	}
	if want := "$argon2id$v=19$m=64,t=1,p=1$"; !strings.HasPrefix(a, want) {
		t.Errorf("HashPassword = %q, want prefix %q", a, want)
	}
	if strings.Contains(a, "password") {
		t.Errorf("HashPassword = %q contains the password", a)
	}
}

// TestCheckPasswordHonoursEncodedParams checks that the cost comes from the
// encoded hash, not from the current defaults: a hash made at one cost
// keeps verifying after the configured cost changes.
func TestCheckPasswordHonoursEncodedParams(t *testing.T) {
	costs := []PasswordParams{
		cheap,
		{Time: 2, MemoryK: 128, Threads: 2},
		{Time: 1, MemoryK: 256, Threads: 4},
	}
	for _, p := range costs {
		enc := HashPassword(p, "hunter22")
		if ok, err := CheckPassword(enc, "hunter22"); err != nil || !ok {
			t.Errorf("CheckPassword of a hash with cost %+v = %v, %v; want true, nil", p, ok, err)
		}
	}
	// Changing the recorded cost changes the derived key: the check
	// really reads it.
	enc := HashPassword(cheap, "hunter22")
	tampered := strings.Replace(enc, "t=1", "t=2", 1)
	if ok, err := CheckPassword(tampered, "hunter22"); err != nil || ok {
		t.Errorf("CheckPassword with the iterations changed = %v, %v; want false, nil", ok, err)
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	good := HashPassword(cheap, "password")
	parts := strings.Split(good, "$") // "", "argon2id", "v=19", "m=..", salt, hash
	with := func(i int, s string) string {
		p := append([]string(nil), parts...)
		p[i] = s
		return strings.Join(p, "$")
	}
	tests := []struct {
		name    string
		encoded string
	}{
		{"empty", ""},
		{"plain text", "password"},
		{"too few parts", strings.Join(parts[:5], "$")},
		{"too many parts", good + "$extra"},
		{"argon2i", with(1, "argon2i")},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"text before", "x" + good},
		{"old version", with(2, "v=16")},
		{"version not a number", with(2, "v=x")},
		{"no version", with(2, "")},
		{"zero time", with(3, "m=64,t=0,p=1")},
		{"iterations absurdly large", with(3, "m=64,t=4294967295,p=1")},
		{"threads over the bound", with(3, "m=64,t=1,p=200")},
		{"memory over the bound", with(3, "m=2097152,t=1,p=1")},
		{"zero threads", with(3, "m=64,t=1,p=0")},
		{"threads overflow", with(3, "m=64,t=1,p=256")},
		{"negative memory", with(3, "m=-1,t=1,p=1")},
		{"memory absurdly large", with(3, "m=4294967295,t=1,p=1")},
		{"memory just past the bound", with(3, "m=4194305,t=1,p=1")},
		{"params reordered", with(3, "t=1,m=64,p=1")},
		{"params missing", with(3, "m=64")},
		{"bad salt base64", with(4, "!!!!")},
		{"padded salt", with(4, parts[4]+"==")},
		{"bad hash base64", with(5, "not base64!")},
		{"empty hash", with(5, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := CheckPassword(tt.encoded, "password")
			if !errors.Is(err, errBadHash) {
				t.Errorf("CheckPassword(%q) error = %v, want %v", tt.encoded, err, errBadHash)
			}
			if ok {
				t.Errorf("CheckPassword(%q) = true, want false", tt.encoded)
			}
		})
	}
}

// FuzzCheckPassword feeds arbitrary encoded hashes. CheckPassword must never
// panic, must refuse what it cannot parse with errBadHash, and must bound
// the work an encoded hash can ask for. Seeds use only cheap costs.
func FuzzCheckPassword(f *testing.F) {
	f.Add(HashPassword(cheap, "password"), "password")
	f.Fuzz(func(t *testing.T, encoded, password string) {
		ok, err := CheckPassword(encoded, password)
		if err != nil {
			if !errors.Is(err, errBadHash) {
				t.Fatalf("CheckPassword(%q) error = %v, want %v", encoded, err, errBadHash)
			}
			if ok {
				t.Fatalf("CheckPassword(%q) = true with an error", encoded)
			}
			return
		}
		if !strings.HasPrefix(encoded, "$argon2id$") {
			t.Fatalf("CheckPassword accepted %q without the $argon2id$ prefix", encoded)
		}
	})
}
