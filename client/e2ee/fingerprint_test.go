package e2ee_test

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/valise-im/valise/client/e2ee"
)

var fingerprintForm = regexp.MustCompile(`^[0-9]{5}( [0-9]{5}){11}$`)

func identities(n int) map[string][]byte {
	m := map[string][]byte{}
	for i := range n {
		m[string(rune('A'+i))+"DEVICE"] = bytes.Repeat([]byte{byte(i + 1)}, 32)
	}
	return m
}

func TestFingerprintForm(t *testing.T) {
	for n := range 4 {
		fp := e2ee.Fingerprint("alice@a.example", identities(n))
		if !fingerprintForm.MatchString(fp) {
			t.Errorf("%d devices: %q is not 12 groups of 5 digits", n, fp)
		}
	}
}

// TestFingerprintOrder builds the same set many times, so that map
// iteration order varies, and inserts in different orders.
func TestFingerprintOrder(t *testing.T) {
	want := e2ee.Fingerprint("alice@a.example", identities(8))
	for range 50 {
		m := map[string][]byte{}
		for k, v := range identities(8) {
			m[k] = v
		}
		if got := e2ee.Fingerprint("alice@a.example", m); got != want {
			t.Fatalf("Fingerprint = %q, want %q", got, want)
		}
	}
}

func TestFingerprintChanges(t *testing.T) {
	base := identities(3)
	want := e2ee.Fingerprint("alice@a.example", base)
	edit := func(f func(m map[string][]byte)) map[string][]byte {
		m := map[string][]byte{}
		for k, v := range base {
			m[k] = bytes.Clone(v)
		}
		f(m)
		return m
	}
	tests := []struct {
		name string
		user string
		ids  map[string][]byte
	}{
		{"other user", "alice@b.example", base},
		{"key bit flipped", "alice@a.example", edit(func(m map[string][]byte) { m["BDEVICE"][31] ^= 1 })},
		{"device added", "alice@a.example", edit(func(m map[string][]byte) { m["ZDEVICE"] = make([]byte, 32) })},
		{"device removed", "alice@a.example", edit(func(m map[string][]byte) { delete(m, "CDEVICE") })},
		{"device renamed", "alice@a.example", edit(func(m map[string][]byte) { m["DDEVICE"] = m["CDEVICE"]; delete(m, "CDEVICE") })},
		{"keys swapped", "alice@a.example", edit(func(m map[string][]byte) { m["ADEVICE"], m["BDEVICE"] = m["BDEVICE"], m["ADEVICE"] })},
		{"key shortened", "alice@a.example", edit(func(m map[string][]byte) { m["ADEVICE"] = m["ADEVICE"][:31] })},
		// The framing keeps a byte from moving between a device id and its key.
		{"byte moved across a boundary", "alice@a.example", edit(func(m map[string][]byte) {
			m["ADEVICE\x01"] = m["ADEVICE"][1:]
			delete(m, "ADEVICE")
		})},
		{"oversized device id", "alice@a.example", edit(func(m map[string][]byte) { m[string(make([]byte, 70000))] = nil })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e2ee.Fingerprint(tt.user, tt.ids)
			if got == want {
				t.Errorf("Fingerprint unchanged: %q", got)
			}
			if !fingerprintForm.MatchString(got) {
				t.Errorf("%q is not 12 groups of 5 digits", got)
			}
		})
	}
}

func TestEqualFingerprints(t *testing.T) {
	fp := e2ee.Fingerprint("alice@a.example", identities(2))
	other := e2ee.Fingerprint("alice@a.example", identities(3))
	compact := regexp.MustCompile(`\s`).ReplaceAllString(fp, "")
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"same", fp, fp, true},
		{"no spaces", fp, compact, true},
		{"other spacing", fp, "\t" + compact[:30] + "\n  " + compact[30:] + " \u00a0", true},
		{"other fingerprint", fp, other, false},
		{"one digit off", fp, compact[:59] + string('0'+(compact[59]-'0'+1)%10), false},
		{"prefix", fp, compact[:55], false},
		{"empty", "", "", false},
		{"spaces only", " ", "\t", false},
		{"invalid bytes differ", "1\xff", "1\xfe", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e2ee.EqualFingerprints(tt.a, tt.b); got != tt.want {
				t.Errorf("EqualFingerprints(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
