package valise_test

import (
	"strings"
	"testing"

	"github.com/valise-im/valise"
)

// checkNodeName fails t unless n obeys the node name grammar: 1 to
// MaxNodeNameLen bytes of dot-separated labels of 1 to 63 bytes of [a-z0-9-]
// that neither start nor end with '-'.
func checkNodeName(t *testing.T, n valise.NodeName) {
	t.Helper()
	s := string(n)
	if len(s) < 1 || len(s) > valise.MaxNodeNameLen {
		t.Fatalf("node name %q is %d bytes, want 1 to %d", s, len(s), valise.MaxNodeNameLen)
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) < 1 || len(label) > 63 {
			t.Fatalf("node name %q has label %q of %d bytes, want 1 to 63", s, label, len(label))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			t.Fatalf("node name %q has label %q starting or ending with '-'", s, label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				t.Fatalf("node name %q has byte %q", s, c)
			}
		}
	}
}

// checkLocalpart fails t unless s is 1 to MaxLocalpartLen bytes of
// [a-z0-9._-] starting with [a-z0-9].
func checkLocalpart(t *testing.T, s string) {
	t.Helper()
	if len(s) < 1 || len(s) > valise.MaxLocalpartLen {
		t.Fatalf("localpart %q is %d bytes, want 1 to %d", s, len(s), valise.MaxLocalpartLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			t.Fatalf("localpart %q has byte %q at %d", s, c, i)
		}
	}
}

func FuzzParseNodeName(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		n, err := valise.ParseNodeName(s)
		if err != nil {
			if k := valise.KindOf(err); k != valise.KindInvalid {
				t.Fatalf("ParseNodeName(%q) error kind = %v, want %v", s, k, valise.KindInvalid)
			}
			return
		}
		if n.String() != s {
			t.Fatalf("ParseNodeName(%q) = %q, want the input back", s, n)
		}
		checkNodeName(t, n)
		if back, err := valise.ParseNodeName(n.String()); err != nil || back != n {
			t.Fatalf("ParseNodeName(%q) = %q, %v; want %q", n, back, err, n)
		}
	})
}

func FuzzParseUserID(f *testing.F) {
	f.Fuzz(func(t *testing.T, s, defaultNode string) {
		u, err := valise.ParseUserID(s, valise.NodeName(defaultNode))
		if err != nil {
			if k := valise.KindOf(err); k != valise.KindInvalid {
				t.Fatalf("ParseUserID(%q, %q) error kind = %v, want %v", s, defaultNode, k, valise.KindInvalid)
			}
			return
		}
		checkLocalpart(t, u.Localpart)
		checkNodeName(t, u.Node)
		want := s
		if !strings.Contains(s, "@") {
			want = s + "@" + defaultNode
		}
		if u.String() != want {
			t.Fatalf("ParseUserID(%q, %q).String() = %q, want %q", s, defaultNode, u, want)
		}
		for _, def := range []valise.NodeName{"", "other.example"} {
			if back, err := valise.ParseUserID(u.String(), def); err != nil || back != u {
				t.Fatalf("ParseUserID(%q, %q) = %v, %v; want %v", u, def, back, err, u)
			}
		}
	})
}

func FuzzParseDeviceID(f *testing.F) {
	f.Add(string(valise.NewDeviceID()))
	f.Fuzz(func(t *testing.T, s string) {
		d, err := valise.ParseDeviceID(s)
		if err != nil {
			if k := valise.KindOf(err); k != valise.KindInvalid {
				t.Fatalf("ParseDeviceID(%q) error kind = %v, want %v", s, k, valise.KindInvalid)
			}
			return
		}
		if d.String() != s {
			t.Fatalf("ParseDeviceID(%q) = %q, want the input back", s, d)
		}
		if len(s) != valise.DeviceIDLen || !strings.HasPrefix(s, "DV") {
			t.Fatalf("ParseDeviceID accepted %q: want %d bytes starting with DV", s, valise.DeviceIDLen)
		}
		for i := 2; i < len(s); i++ {
			if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
				t.Fatalf("ParseDeviceID accepted %q with byte %q at %d, outside base32", s, c, i)
			}
		}
		if back, err := valise.ParseDeviceID(d.String()); err != nil || back != d {
			t.Fatalf("ParseDeviceID(%q) = %q, %v; want %q", d, back, err, d)
		}
	})
}
