package e2ee_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valise-im/valise/client/e2ee"
)

func TestRoundTrip(t *testing.T) {
	alice, bob := pair(t)
	sizes := []int{0, 1, 255, 256, 257, e2ee.MaxBody}
	for _, prekey := range []*e2ee.PreKey{bob.oneTime, bob.signed} {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("kind=%d/body=%d", prekey.Kind, n), func(t *testing.T) {
				body := bytes.Repeat([]byte{0xA5}, n)
				m := message(alice, bob, body)
				env := seal(t, alice, m, prekey)

				h, err := e2ee.ParseHeader(env)
				if err != nil {
					t.Fatalf("ParseHeader: %v", err)
				}
				if want := (e2ee.Header{Version: e2ee.Version, Kind: prekey.Kind, KeyID: prekey.ID}); h != want {
					t.Errorf("ParseHeader = %+v, want %+v", h, want)
				}
				got, err := e2ee.Open(env, bob.addr, alice.addr, bob.keys)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				checkMessage(t, got, m)
			})
		}
	}
}

func TestSealRefuses(t *testing.T) {
	alice, bob := pair(t)
	long := strings.Repeat("x", 65536)
	tests := []struct {
		name   string
		edit   func(*e2ee.Message, *e2ee.RecipientKey)
		target error // nil: any error
	}{
		{"body over MaxBody", func(m *e2ee.Message, _ *e2ee.RecipientKey) { m.Body = make([]byte, e2ee.MaxBody+1) }, e2ee.ErrTooLarge},
		{"empty sender user", func(m *e2ee.Message, _ *e2ee.RecipientKey) { m.Sender.User = "" }, nil},
		{"empty sender device", func(m *e2ee.Message, _ *e2ee.RecipientKey) { m.Sender.Device = "" }, nil},
		{"empty recipient user", func(m *e2ee.Message, _ *e2ee.RecipientKey) { m.Recipient.User = "" }, nil},
		{"empty recipient device", func(m *e2ee.Message, _ *e2ee.RecipientKey) { m.Recipient.Device = "" }, nil},
		{"long sender user", func(m *e2ee.Message, _ *e2ee.RecipientKey) { m.Sender.User = long }, nil},
		{"long recipient device", func(m *e2ee.Message, _ *e2ee.RecipientKey) { m.Recipient.Device = long }, nil},
		{"unknown kind", func(_ *e2ee.Message, k *e2ee.RecipientKey) { k.Kind = 3 }, nil},
		{"short prekey", func(_ *e2ee.Message, k *e2ee.RecipientKey) { k.Public = k.Public[:len(k.Public)-1] }, nil},
		{"no prekey", func(_ *e2ee.Message, k *e2ee.RecipientKey) { k.Public = nil }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := message(alice, bob, []byte("hi"))
			k := recipientKey(bob.signed)
			tt.edit(&m, &k)
			env, err := e2ee.Seal(alice.identity, m, k)
			if err == nil {
				t.Fatalf("Seal succeeded (%d bytes), want an error", len(env))
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("Seal: %v, want %v", err, tt.target)
			}
		})
	}
	if _, err := e2ee.Seal(nil, message(alice, bob, nil), recipientKey(bob.signed)); err == nil {
		t.Error("Seal with a nil identity key succeeded")
	}
}

// TestPadding checks that envelope sizes move in 256-byte steps.
func TestPadding(t *testing.T) {
	alice, bob := pair(t)
	size := func(n int) int { return len(seal(t, alice, message(alice, bob, make([]byte, n)), bob.signed)) }
	base := size(0)
	// The fixed part of the plaintext: lp(user), lp(device), id, time,
	// lp32(body), signature.
	fixed := 2 + len(alice.addr.User) + 2 + len(alice.addr.Device) + 16 + 8 + 4 + 64
	if got := size(256 - fixed); got != base {
		t.Errorf("a body filling the first block: %d bytes, want %d", got, base)
	}
	if got := size(256 - fixed + 1); got != base+256 {
		t.Errorf("one byte more: %d bytes, want %d", got, base+256)
	}
	if want := 8 + 1120 + 256 + 16; base != want {
		t.Errorf("smallest envelope: %d bytes, want %d", base, want)
	}
}

// TestEveryByteFlipped flips each byte of an envelope in turn: nothing
// must open.
func TestEveryByteFlipped(t *testing.T) {
	alice, bob := pair(t)
	for _, prekey := range []*e2ee.PreKey{bob.oneTime, bob.signed} {
		env := seal(t, alice, message(alice, bob, []byte("x")), prekey)
		for i := range env {
			bad := bytes.Clone(env)
			bad[i] ^= 0x01
			if m, err := e2ee.Open(bad, bob.addr, alice.addr, bob.keys); err == nil {
				t.Fatalf("kind %d: byte %d flipped: opened %+v", prekey.Kind, i, m)
			}
		}
		if _, err := e2ee.Open(env, bob.addr, alice.addr, bob.keys); err != nil {
			t.Fatalf("kind %d: the unflipped envelope does not open: %v", prekey.Kind, err)
		}
	}
}

// TestTruncatedAndExtended cuts an envelope at every length and appends
// bytes to it.
func TestTruncatedAndExtended(t *testing.T) {
	alice, bob := pair(t)
	env := seal(t, alice, message(alice, bob, []byte("truncate me")), bob.signed)
	for n := range len(env) {
		if m, err := e2ee.Open(env[:n:n], bob.addr, alice.addr, bob.keys); err == nil {
			t.Fatalf("truncated to %d bytes: opened %+v", n, m)
		}
		if _, err := e2ee.ParseHeader(env[:n:n]); err == nil && n < len(env) {
			t.Fatalf("ParseHeader accepted an envelope truncated to %d bytes", n)
		}
	}
	for _, extra := range []int{1, 16, 256, 272} {
		long := append(bytes.Clone(env), make([]byte, extra)...)
		if m, err := e2ee.Open(long, bob.addr, alice.addr, bob.keys); err == nil {
			t.Fatalf("%d bytes appended: opened %+v", extra, m)
		}
	}
}

func TestParseHeaderErrors(t *testing.T) {
	alice, bob := pair(t)
	env := seal(t, alice, message(alice, bob, nil), bob.oneTime)
	edit := func(i int, v byte) []byte {
		b := bytes.Clone(env)
		b[i] = v
		return b
	}
	tests := []struct {
		name string
		env  []byte
		want error
	}{
		{"empty", nil, e2ee.ErrMalformed},
		{"header only", env[:8], e2ee.ErrMalformed},
		{"version 0", edit(0, 0), e2ee.ErrVersion},
		{"version 2", edit(0, 2), e2ee.ErrVersion},
		{"short version 2", []byte{2, 1, 0, 0, 0, 1, 4, 0x60}, e2ee.ErrVersion},
		{"kind 0", edit(1, 0), e2ee.ErrMalformed},
		{"kind 3", edit(1, 3), e2ee.ErrMalformed},
		{"enc length", edit(7, 0x61), e2ee.ErrMalformed},
		{"no tag", env[:len(env)-16], e2ee.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e2ee.ParseHeader(tt.env); !errors.Is(err, tt.want) {
				t.Errorf("ParseHeader: %v, want %v", err, tt.want)
			}
			if _, err := e2ee.Open(tt.env, bob.addr, alice.addr, bob.keys); !errors.Is(err, tt.want) {
				t.Errorf("Open: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWrongAddresses(t *testing.T) {
	alice, bob := pair(t)
	carol := newDevice(t, "carol@a.example", "DVCAROL1")
	bob.knows(carol)
	m := message(alice, bob, []byte("for bob's first device"))
	env := seal(t, alice, m, bob.signed)

	tests := []struct {
		name              string
		recipient, sender e2ee.Address
	}{
		{"other recipient user", e2ee.Address{User: "bob@c.example", Device: bob.addr.Device}, alice.addr},
		{"other recipient device", e2ee.Address{User: bob.addr.User, Device: "DVBOB2"}, alice.addr},
		{"other sender", bob.addr, carol.addr},
		{"other sender device", bob.addr, e2ee.Address{User: alice.addr.User, Device: "DVALICE2"}},
		{"swapped", alice.addr, bob.addr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := e2ee.Open(env, tt.recipient, tt.sender, bob.keys); err == nil {
				t.Fatalf("Open succeeded: %+v", got)
			}
		})
	}
}

// TestReaddressed gives an envelope sealed to Bob's first device to his
// second, whose prekeys carry the same ids.
func TestReaddressed(t *testing.T) {
	alice, bob := pair(t)
	bob2 := newDevice(t, bob.addr.User, "DVBOB2")
	bob2.knows(alice)
	for _, prekey := range []*e2ee.PreKey{bob.oneTime, bob.signed} {
		env := seal(t, alice, message(alice, bob, []byte("for DVBOB1")), prekey)
		for _, recipient := range []e2ee.Address{bob.addr, bob2.addr} {
			if m, err := e2ee.Open(env, recipient, alice.addr, bob2.keys); err == nil {
				t.Errorf("kind %d: device 2 opened device 1's envelope as %v: %+v", prekey.Kind, recipient, m)
			} else if !errors.Is(err, e2ee.ErrDecrypt) {
				t.Errorf("kind %d: Open as %v: %v, want ErrDecrypt", prekey.Kind, recipient, err)
			}
		}
	}
}

func TestSignature(t *testing.T) {
	alice, bob := pair(t)
	mallory := newDevice(t, "mallory@m.example", "DVM")

	t.Run("signed by another identity", func(t *testing.T) {
		// Mallory seals as Alice with her own identity key.
		env, err := e2ee.Seal(mallory.identity, message(alice, bob, []byte("pay mallory")), recipientKey(bob.signed))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e2ee.Open(env, bob.addr, alice.addr, bob.keys); !errors.Is(err, e2ee.ErrSignature) {
			t.Errorf("Open: %v, want ErrSignature", err)
		}
	})
	t.Run("store returns another key", func(t *testing.T) {
		env := seal(t, alice, message(alice, bob, []byte("hi")), bob.signed)
		keys := newStore()
		keys.addPreKey(bob.signed)
		keys.trust(alice.addr, mallory.identity.Public())
		if _, err := e2ee.Open(env, bob.addr, alice.addr, keys); !errors.Is(err, e2ee.ErrSignature) {
			t.Errorf("Open: %v, want ErrSignature", err)
		}
		keys.trust(alice.addr, alice.identity.Public()[:31])
		if _, err := e2ee.Open(env, bob.addr, alice.addr, keys); !errors.Is(err, e2ee.ErrSignature) {
			t.Errorf("Open with a 31-byte identity key: %v, want ErrSignature", err)
		}
	})
	t.Run("unknown sender identity", func(t *testing.T) {
		env := seal(t, alice, message(alice, bob, []byte("hi")), bob.signed)
		keys := newStore()
		keys.addPreKey(bob.signed)
		if _, err := e2ee.Open(env, bob.addr, alice.addr, keys); !errors.Is(err, errNoIdentity) {
			t.Errorf("Open: %v, want the store's error", err)
		}
	})
}

func TestUnknownPreKey(t *testing.T) {
	alice, bob := pair(t)
	env := seal(t, alice, message(alice, bob, []byte("hi")), bob.oneTime)
	delete(bob.keys.prekeys, keyRef{e2ee.OneTime, 1}) // used once, deleted
	if _, err := e2ee.Open(env, bob.addr, alice.addr, bob.keys); !errors.Is(err, e2ee.ErrUnknownPreKey) {
		t.Errorf("Open: %v, want ErrUnknownPreKey", err)
	}
	bob.keys.prekeys[keyRef{e2ee.OneTime, 1}] = []byte("not a key")
	if _, err := e2ee.Open(env, bob.addr, alice.addr, bob.keys); !errors.Is(err, e2ee.ErrDecrypt) {
		t.Errorf("Open with a garbled stored key: %v, want ErrDecrypt", err)
	}
}

func TestOpenRefusesBadAddresses(t *testing.T) {
	alice, bob := pair(t)
	env := seal(t, alice, message(alice, bob, nil), bob.signed)
	for _, a := range []e2ee.Address{{}, {User: "bob@b.example"}, {Device: "DVBOB1"}, {User: strings.Repeat("b", 65536), Device: "DVBOB1"}} {
		if _, err := e2ee.Open(env, a, alice.addr, bob.keys); err == nil {
			t.Errorf("Open to %q/%q succeeded", a.User[:min(len(a.User), 20)], a.Device)
		}
		if _, err := e2ee.Open(env, bob.addr, a, bob.keys); err == nil {
			t.Errorf("Open from %q/%q succeeded", a.User[:min(len(a.User), 20)], a.Device)
		}
	}
}

func TestTime(t *testing.T) {
	alice, bob := pair(t)
	for _, tm := range []time.Time{
		{},
		time.Unix(0, 0),
		time.Unix(-1, 999_999_999),
		time.Date(2026, 1, 2, 3, 4, 5, 999_999_999, time.FixedZone("X", 5*3600+1800)),
	} {
		m := message(alice, bob, nil)
		m.Time = tm
		got, err := e2ee.Open(seal(t, alice, m, bob.signed), bob.addr, alice.addr, bob.keys)
		if err != nil {
			t.Fatalf("%v: %v", tm, err)
		}
		if want := time.UnixMilli(tm.UnixMilli()).UTC(); !got.Time.Equal(want) || got.Time.Location() != time.UTC {
			t.Errorf("sealed %v: opened %v, want %v", tm, got.Time, want)
		}
	}
}

func TestSealIsRandomized(t *testing.T) {
	alice, bob := pair(t)
	m := message(alice, bob, []byte("same"))
	a, b := seal(t, alice, m, bob.signed), seal(t, alice, m, bob.signed)
	if bytes.Equal(a, b) {
		t.Error("two seals of one message are equal")
	}
}

// TestOpenedBodyIsOwned checks that the body does not alias the envelope.
func TestOpenedBodyIsOwned(t *testing.T) {
	alice, bob := pair(t)
	env := seal(t, alice, message(alice, bob, []byte("mine")), bob.signed)
	got, err := e2ee.Open(env, bob.addr, alice.addr, bob.keys)
	if err != nil {
		t.Fatal(err)
	}
	clear(env)
	if string(got.Body) != "mine" {
		t.Errorf("Body = %q after clearing the envelope", got.Body)
	}
}
