package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// TestSuiteSizes checks the sizes the parser assumes against the suite.
func TestSuiteSizes(t *testing.T) {
	if encSize != 1120 {
		t.Errorf("encSize = %d, want 1120", encSize)
	}
	sk, err := suiteKEM.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	enc, s, err := hpke.NewSender(sk.PublicKey(), suiteKDF, suiteAEAD, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != encSize {
		t.Errorf("encapsulation is %d bytes, encSize is %d", len(enc), encSize)
	}
	ct, err := s.Seal(nil, make([]byte, 10))
	if err != nil {
		t.Fatal(err)
	}
	if len(ct)-10 != tagSize {
		t.Errorf("AEAD overhead is %d bytes, tagSize is %d", len(ct)-10, tagSize)
	}
}

// TestLayout seals a message and takes the envelope apart by hand, byte by
// byte as docs/E2EE.md lays it out, without the package's parsers.
func TestLayout(t *testing.T) {
	alice, err := IdentityKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := IdentityKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := DerivePreKey(bytes.Repeat([]byte{3}, 32), bob, OneTime, 0x01020304)
	if err != nil {
		t.Fatal(err)
	}
	m := Message{
		ID:        [16]byte{0xAA, 15: 0xBB},
		Sender:    Address{"al", "D1"},
		Recipient: Address{"bob", "D22"},
		Time:      time.UnixMilli(0x0102030405).Add(999 * time.Microsecond),
		Body:      []byte("body"),
	}
	env, err := Seal(alice, m, RecipientKey{pk.Kind, pk.ID, pk.Public})
	if err != nil {
		t.Fatal(err)
	}

	wantHeader := []byte{1, 1, 1, 2, 3, 4, 0x04, 0x60}
	if !bytes.Equal(env[:8], wantHeader) {
		t.Fatalf("header = %x, want %x", env[:8], wantHeader)
	}
	enc, ct := env[8:8+1120], env[8+1120:]
	info := []byte("valise/e2ee/v1\x00\x02al\x00\x02D1\x00\x03bob\x00\x03D22")
	sk, err := suiteKEM.NewPrivateKey(pk.Private)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewRecipient(enc, sk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), info)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := r.Open(wantHeader, ct)
	if err != nil {
		t.Fatalf("the envelope does not open with the documented info and aad: %v", err)
	}
	if len(pt) != 256 {
		t.Fatalf("plaintext is %d bytes, want 256", len(pt))
	}
	fields := []byte("\x00\x02al\x00\x02D1")
	fields = append(fields, m.ID[:]...)
	fields = append(fields, 0, 0, 0, 1, 2, 3, 4, 5) // milliseconds, truncated
	fields = append(fields, "\x00\x00\x00\x04body"...)
	if !bytes.Equal(pt[:len(fields)], fields) {
		t.Fatalf("plaintext starts %x, want %x", pt[:len(fields)], fields)
	}
	sig := pt[len(fields) : len(fields)+64]
	if pad := pt[len(fields)+64:]; !bytes.Equal(pad, make([]byte, len(pad))) {
		t.Errorf("padding is not zero: %x", pad)
	}
	signed := []byte("valise/e2ee/v1/sig\x00\x02al\x00\x02D1\x00\x03bob\x00\x03D22\x01\x01\x02\x03\x04\x04\x60")
	signed = append(signed, enc...)
	signed = append(signed, m.ID[:]...)
	signed = append(signed, 0, 0, 0, 1, 2, 3, 4, 5)
	signed = append(signed, "\x00\x00\x00\x04body"...)
	if !ed25519.Verify(alice.Public(), signed, sig) {
		t.Error("the signature does not cover the documented content")
	}

	prekeySigned := []byte("valise/prekey/v1\x01\x01\x02\x03\x04\x04\xc0")
	prekeySigned = append(prekeySigned, pk.Public...)
	if !ed25519.Verify(bob.Public(), prekeySigned, pk.Signature) {
		t.Error("the prekey signature does not cover the documented content")
	}
}

// TestSealedSenderMismatch seals an envelope whose sealed sender differs
// from the address bound in the info and the signature.
func TestSealedSenderMismatch(t *testing.T) {
	alice, err := NewIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	bob, err := NewIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := NewPreKey(bob, Signed, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := Message{Sender: Address{"alice@a", "D1"}, Recipient: Address{"bob@b", "D1"}, Body: []byte("x")}
	env, err := seal(alice, m, RecipientKey{Signed, 1, pk.Public}, Address{"mallory@m", "D1"})
	if err != nil {
		t.Fatal(err)
	}
	keys := fixedKeys{prekey: pk.Private, identity: alice.Public()}
	if _, err := Open(env, m.Recipient, m.Sender, keys); !errors.Is(err, ErrSenderMismatch) {
		t.Errorf("Open: %v, want ErrSenderMismatch", err)
	}
}

type fixedKeys struct{ prekey, identity []byte }

func (k fixedKeys) PreKey(PreKeyKind, uint32) ([]byte, error) { return k.prekey, nil }
func (k fixedKeys) IdentityKey(Address) ([]byte, error)       { return k.identity, nil }

func validPlaintext(t testing.TB, body []byte) []byte {
	t.Helper()
	pt, err := appendPlaintext(nil, Address{"u", "d"}, [16]byte{1}, 42, body, make([]byte, 64))
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

func TestParsePlaintext(t *testing.T) {
	good := validPlaintext(t, []byte("hello"))
	if _, err := parsePlaintext(good); err != nil {
		t.Fatalf("parsePlaintext(valid): %v", err)
	}
	set := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	withBody := func(n uint32, total int) []byte {
		b := make([]byte, total)
		copy(b, "\x00\x01u\x00\x01d")
		binary.BigEndian.PutUint32(b[6+16+8:], n)
		return b
	}
	emptyUser, err := appendPlaintext(nil, Address{"", "d"}, [16]byte{}, 0, nil, make([]byte, 64))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pt   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"no signature", good[:6+16+8+4+5+63], ErrMalformed},
		{"unpadded", good[:6+16+8+4+5+64], ErrMalformed},
		{"extra zero block", append(bytes.Clone(good), make([]byte, 256)...), ErrMalformed},
		{"non-zero padding", set(255, 1), ErrMalformed},
		{"empty sealed user", emptyUser, ErrMalformed},
		{"user length past the end", set(1, 0xFF), ErrMalformed},
		{"body length past the end", set(6+16+8, 0x01), ErrMalformed},
		{"body over MaxBody", withBody(MaxBody+1, paddedLen(6+16+8+4+MaxBody+1+64)), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parsePlaintext(tt.pt); !errors.Is(err, tt.want) {
				t.Errorf("parsePlaintext: %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzParsePlaintext reaches the plaintext parser, which the AEAD shields
// from FuzzOpen: it must never panic, and what it accepts must be the one
// encoding of its fields.
func FuzzParsePlaintext(f *testing.F) {
	f.Add(validPlaintext(f, nil))
	f.Add(validPlaintext(f, []byte("hello")))
	f.Add(validPlaintext(f, make([]byte, 300)))
	f.Fuzz(func(t *testing.T, pt []byte) {
		p, err := parsePlaintext(pt)
		if err != nil {
			return
		}
		again, err := appendPlaintext(nil, p.sender, p.id, p.ms, p.body, p.sig)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		if !bytes.Equal(again, pt) {
			t.Fatalf("accepted a non-canonical plaintext:\n got %x\nwant %x", pt, again)
		}
	})
}
