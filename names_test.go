package valise_test

import (
	"strings"
	"testing"

	"github.com/valise-im/valise"
)

func TestParseNodeName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	// 4 labels of 63 bytes and 3 dots: 255 bytes; trim to the bound.
	long := strings.Join([]string{label63, label63, label63, label63}, ".")
	max := long[:valise.MaxNodeNameLen-1] + "a"
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "example.org", true},
		{"localhost", "localhost", true},
		{"hyphen inside", "ministry-a.example", true},
		{"digits", "node1.example", true},
		{"all digits", "1.2.3.4", true},
		{"label of 63", label63 + ".example", true},
		{"longest name", max, true},
		{"empty", "", false},
		{"too long", long, false},
		{"label of 64", label63 + "a.example", false},
		{"uppercase", "Example.org", false},
		{"empty label", "a..b", false},
		{"leading dot", ".example", false},
		{"trailing dot", "example.", false},
		{"leading hyphen", "-a.example", false},
		{"trailing hyphen", "a-.example", false},
		{"underscore", "a_b.example", false},
		{"port", "example.org:8443", false},
		{"at sign", "a@b", false},
		{"space", "exa mple", false},
		{"unicode", "bücher.example", false},
		{"newline", "example.org\n", false},
		{"nul", "a\x00b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := valise.ParseNodeName(tt.in)
			if tt.ok {
				if err != nil {
					t.Fatalf("ParseNodeName(%q) = %v, want ok", tt.in, err)
				}
				if got.String() != tt.in {
					t.Errorf("ParseNodeName(%q).String() = %q, want %q", tt.in, got, tt.in)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseNodeName(%q) = %q, want an error", tt.in, got)
			}
			if k := valise.KindOf(err); k != valise.KindInvalid {
				t.Errorf("ParseNodeName(%q) error kind = %v, want %v", tt.in, k, valise.KindInvalid)
			}
		})
	}
}

func TestValidateLocalpart(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"letters", "alice", true},
		{"one byte", "a", true},
		{"leading digit", "1alice", true},
		{"punctuation inside", "a.b_c-d", true},
		{"double dot", "a..b", true},
		{"longest", strings.Repeat("a", valise.MaxLocalpartLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", valise.MaxLocalpartLen+1), false},
		{"uppercase", "Alice", false},
		{"leading dot", ".alice", false},
		{"leading hyphen", "-a", false},
		{"leading underscore", "_a", false},
		{"at sign", "a@b", false},
		{"space", "a b", false},
		{"plus", "a+b", false},
		{"unicode", "élodie", false},
		{"newline", "alice\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := valise.ValidateLocalpart(tt.in)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ValidateLocalpart(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && valise.KindOf(err) != valise.KindInvalid {
				t.Errorf("ValidateLocalpart(%q) error kind = %v, want %v", tt.in, valise.KindOf(err), valise.KindInvalid)
			}
		})
	}
}

func TestParseUserID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		def  valise.NodeName
		want valise.UserID // zero when an error is wanted
	}{
		{"full", "alice@example.org", "", valise.UserID{Localpart: "alice", Node: "example.org"}},
		{"full ignores default", "alice@example.org", "other.example", valise.UserID{Localpart: "alice", Node: "example.org"}},
		{"default node", "alice", "home.example", valise.UserID{Localpart: "alice", Node: "home.example"}},
		{"localhost", "bob@localhost", "", valise.UserID{Localpart: "bob", Node: "localhost"}},
		{"no node, no default", "alice", "", valise.UserID{}},
		{"empty", "", "", valise.UserID{}},
		{"empty with default", "", "home.example", valise.UserID{}},
		{"at only", "@", "", valise.UserID{}},
		{"empty localpart", "@example.org", "", valise.UserID{}},
		{"empty node", "alice@", "home.example", valise.UserID{}},
		{"two at signs", "alice@b@example.org", "", valise.UserID{}},
		{"uppercase localpart", "Alice@example.org", "", valise.UserID{}},
		{"uppercase node", "alice@Example.org", "", valise.UserID{}},
		{"bad node", "alice@a..b", "", valise.UserID{}},
		{"bad default node", "alice", "Bad Node", valise.UserID{}},
		{"localpart too long", strings.Repeat("a", valise.MaxLocalpartLen+1) + "@example.org", "", valise.UserID{}},
		{"matrix style", "@alice:example.org", "", valise.UserID{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := valise.ParseUserID(tt.in, tt.def)
			if tt.want.IsZero() {
				if err == nil {
					t.Fatalf("ParseUserID(%q, %q) = %v, want an error", tt.in, tt.def, got)
				}
				if k := valise.KindOf(err); k != valise.KindInvalid {
					t.Errorf("ParseUserID(%q, %q) error kind = %v, want %v", tt.in, tt.def, k, valise.KindInvalid)
				}
				if !got.IsZero() {
					t.Errorf("ParseUserID(%q, %q) = %v with an error, want the zero UserID", tt.in, tt.def, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseUserID(%q, %q) = %v, want %v", tt.in, tt.def, err, tt.want)
			}
			if got != tt.want {
				t.Errorf("ParseUserID(%q, %q) = %#v, want %#v", tt.in, tt.def, got, tt.want)
			}
			if back, err := valise.ParseUserID(got.String(), ""); err != nil || back != got {
				t.Errorf("ParseUserID(%q) = %v, %v; want %v", got.String(), back, err, got)
			}
		})
	}
}

func TestUserIDString(t *testing.T) {
	u := valise.UserID{Localpart: "alice", Node: "example.org"}
	if got, want := u.String(), "alice@example.org"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if u.IsZero() {
		t.Errorf("%v.IsZero() = true, want false", u)
	}
	if !(valise.UserID{}).IsZero() {
		t.Errorf("UserID{}.IsZero() = false, want true")
	}
}

func TestNewDeviceIDParses(t *testing.T) {
	seen := map[valise.DeviceID]bool{}
	for range 100 {
		id := valise.NewDeviceID()
		if len(id) != valise.DeviceIDLen {
			t.Fatalf("NewDeviceID() = %q, %d bytes, want %d", id, len(id), valise.DeviceIDLen)
		}
		got, err := valise.ParseDeviceID(id.String())
		if err != nil || got != id {
			t.Fatalf("ParseDeviceID(%q) = %q, %v; want it back", id, got, err)
		}
		if seen[id] {
			t.Fatalf("NewDeviceID() returned %q twice", id)
		}
		seen[id] = true
	}
}

func TestParseDeviceID(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"valid", "DVABCDEFGHIJKLMNOP", true},
		{"valid digits", "DV2345672345672345", true},
		{"empty", "", false},
		{"prefix only", "DV", false},
		{"one short", "DVABCDEFGHIJKLMNO", false},
		{"one long", "DVABCDEFGHIJKLMNOPQ", false},
		{"wrong prefix", "DXABCDEFGHIJKLMNOP", false},
		{"lowercase prefix", "dvABCDEFGHIJKLMNOP", false},
		{"lowercase body", "DVabcdefghijklmnop", false},
		{"digit outside alphabet", "DVABCDEFGHIJKLMN01", false},
		{"padding", "DVABCDEFGHIJKLMNO=", false},
		{"space", "DVABCDEFGH JKLMNOP", false},
		{"unicode", "DVABCDEFGHIJKLMNÖ", false},
		// base32 decoding skips CR and LF, so these are the right length
		// and decode, yet they are not device ids.
		{"trailing newline", "DVABCDEFGHIJKLMNO\n", false},
		{"inner CR LF", "DVABCDEFGHIJKLM\r\n\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := valise.ParseDeviceID(tt.in)
			if tt.ok {
				if err != nil || got.String() != tt.in {
					t.Fatalf("ParseDeviceID(%q) = %q, %v; want it back", tt.in, got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseDeviceID(%q) = %q, want an error", tt.in, got)
			}
			if k := valise.KindOf(err); k != valise.KindInvalid {
				t.Errorf("ParseDeviceID(%q) error kind = %v, want %v", tt.in, k, valise.KindInvalid)
			}
		})
	}
}

func TestParseDeviceIDTruncatesLongInput(t *testing.T) {
	in := "DV" + strings.Repeat("A", 10_000)
	_, err := valise.ParseDeviceID(in)
	if err == nil {
		t.Fatalf("ParseDeviceID(%d bytes) = ok, want an error", len(in))
	}
	if n := len(err.Error()); n > 200 {
		t.Errorf("error text is %d bytes, want it truncated to under 200", n)
	}
}

func TestValidateDisplayName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"empty", "", true},
		{"ascii", "Alice's laptop", true},
		{"unicode", "Téléphone d'Élodie 📱", true},
		{"longest", strings.Repeat("a", valise.MaxDisplayNameLen), true},
		{"longest multibyte", strings.Repeat("é", valise.MaxDisplayNameLen/2), true},
		{"too long", strings.Repeat("a", valise.MaxDisplayNameLen+1), false},
		{"too long in bytes", strings.Repeat("é", valise.MaxDisplayNameLen/2+1), false},
		{"newline", "laptop\nadmin", false},
		{"tab", "a\tb", false},
		{"nul", "a\x00b", false},
		{"escape", "\x1b[31mred", false},
		{"delete", "a\x7f", false},
		{"invalid utf-8", "a\xffb", false},
		{"truncated utf-8", "\xc3", false},
		{"c1 control", "a\u0085b", false},
		{"bidi override", "laptop\u202egnp.exe", false},
		{"bidi isolate", "a\u2066b", false},
		{"emoji with joiner", "👩\u200d💻 laptop", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := valise.ValidateDisplayName(tt.in)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ValidateDisplayName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && valise.KindOf(err) != valise.KindInvalid {
				t.Errorf("ValidateDisplayName(%q) error kind = %v, want %v", tt.in, valise.KindOf(err), valise.KindInvalid)
			}
		})
	}
}
