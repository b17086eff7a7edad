package e2ee_test

import (
	"bytes"
	"testing"

	"github.com/valise-im/valise/client/e2ee"
)

// BenchmarkSeal measures sealing a 1 KiB body to a signed prekey: the
// client's CPU cost per recipient device.
func BenchmarkSeal(b *testing.B) {
	alice, bob := pair(b)
	m := message(alice, bob, bytes.Repeat([]byte{0xA5}, 1024))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e2ee.Seal(alice.identity, m, recipientKey(bob.signed)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures opening and verifying a sealed 1 KiB body: the
// receiving client's CPU cost per envelope.
func BenchmarkOpen(b *testing.B) {
	alice, bob := pair(b)
	m := message(alice, bob, bytes.Repeat([]byte{0xA5}, 1024))
	env := seal(b, alice, m, bob.signed)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e2ee.Open(env, bob.addr, alice.addr, bob.keys); err != nil {
			b.Fatal(err)
		}
	}
}
