package e2ee_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/valise-im/valise/client/e2ee"
)

func TestVerifyPreKey(t *testing.T) {
	id, err := e2ee.NewIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := e2ee.NewIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []e2ee.PreKeyKind{e2ee.OneTime, e2ee.Signed} {
		pk, err := e2ee.NewPreKey(id, kind, 42)
		if err != nil {
			t.Fatal(err)
		}
		flipped := bytes.Clone(pk.Signature)
		flipped[10] ^= 0x01
		otherKind := e2ee.Signed
		if kind == e2ee.Signed {
			otherKind = e2ee.OneTime
		}
		otherPreKey, err := e2ee.NewPreKey(id, kind, 42)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name      string
			identity  []byte
			kind      e2ee.PreKeyKind
			id        uint32
			public    []byte
			signature []byte
			ok        bool
		}{
			{"good", id.Public(), kind, 42, pk.Public, pk.Signature, true},
			{"flipped signature byte", id.Public(), kind, 42, pk.Public, flipped, false},
			{"short signature", id.Public(), kind, 42, pk.Public, pk.Signature[:63], false},
			{"no signature", id.Public(), kind, 42, pk.Public, nil, false},
			{"wrong identity", other.Public(), kind, 42, pk.Public, pk.Signature, false},
			{"short identity", id.Public()[:31], kind, 42, pk.Public, pk.Signature, false},
			{"wrong kind", id.Public(), otherKind, 42, pk.Public, pk.Signature, false},
			{"unknown kind", id.Public(), 7, 42, pk.Public, pk.Signature, false},
			{"wrong id", id.Public(), kind, 43, pk.Public, pk.Signature, false},
			{"other public key", id.Public(), kind, 42, otherPreKey.Public, pk.Signature, false},
			{"short public key", id.Public(), kind, 42, pk.Public[:len(pk.Public)-1], pk.Signature, false},
			{"no public key", id.Public(), kind, 42, nil, pk.Signature, false},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("kind=%d/%s", kind, tt.name), func(t *testing.T) {
				err := e2ee.VerifyPreKey(tt.identity, tt.kind, tt.id, tt.public, tt.signature)
				if tt.ok && err != nil {
					t.Errorf("VerifyPreKey: %v, want nil", err)
				}
				if !tt.ok && !errors.Is(err, e2ee.ErrSignature) {
					t.Errorf("VerifyPreKey: %v, want ErrSignature", err)
				}
			})
		}
	}
}

func TestPreKeyArguments(t *testing.T) {
	id, err := e2ee.NewIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	ikm := bytes.Repeat([]byte{7}, 32)
	if _, err := e2ee.NewPreKey(nil, e2ee.Signed, 1); err == nil {
		t.Error("NewPreKey without an identity key succeeded")
	}
	for _, kind := range []e2ee.PreKeyKind{0, 3, 255} {
		if _, err := e2ee.NewPreKey(id, kind, 1); err == nil {
			t.Errorf("NewPreKey of kind %d succeeded", kind)
		}
		if _, err := e2ee.DerivePreKey(ikm, id, kind, 1); err == nil {
			t.Errorf("DerivePreKey of kind %d succeeded", kind)
		}
	}
	if _, err := e2ee.DerivePreKey(ikm[:31], id, e2ee.Signed, 1); err == nil {
		t.Error("DerivePreKey with a 31-byte ikm succeeded")
	}
}

func TestDerivePreKey(t *testing.T) {
	id, err := e2ee.IdentityKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ikm := bytes.Repeat([]byte{3}, 32)
	a, err := e2ee.DerivePreKey(ikm, id, e2ee.Signed, 9)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e2ee.DerivePreKey(ikm, id, e2ee.Signed, 9)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Private, b.Private) || !bytes.Equal(a.Public, b.Public) || !bytes.Equal(a.Signature, b.Signature) {
		t.Error("DerivePreKey is not deterministic")
	}
	c, err := e2ee.DerivePreKey(append(ikm[:31:31], 4), id, e2ee.Signed, 9)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Public, c.Public) {
		t.Error("two ikms derive one key")
	}
	if len(a.Public) != 1216 || len(a.Private) != 32 || len(a.Signature) != 64 {
		t.Errorf("sizes: public %d, private %d, signature %d; want 1216, 32, 64", len(a.Public), len(a.Private), len(a.Signature))
	}
	if err := e2ee.VerifyPreKey(id.Public(), e2ee.Signed, 9, a.Public, a.Signature); err != nil {
		t.Errorf("VerifyPreKey: %v", err)
	}
}

func TestIdentityKey(t *testing.T) {
	k, err := e2ee.NewIdentityKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Seed()) != 32 || len(k.Public()) != 32 {
		t.Fatalf("seed %d bytes, public %d bytes, want 32 and 32", len(k.Seed()), len(k.Public()))
	}
	again, err := e2ee.IdentityKeyFromSeed(k.Seed())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Public(), k.Public()) {
		t.Error("IdentityKeyFromSeed(Seed()) has another public key")
	}
	pub := k.Public()
	pub[0] ^= 0xFF
	if bytes.Equal(pub, k.Public()) {
		t.Error("Public returns the key's own memory")
	}
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := e2ee.IdentityKeyFromSeed(make([]byte, n)); err == nil {
			t.Errorf("IdentityKeyFromSeed of %d bytes succeeded", n)
		}
	}
}

// TestSecretsNotPrinted checks that printing or logging a key shows no
// private material.
func TestSecretsNotPrinted(t *testing.T) {
	k, err := e2ee.IdentityKeyFromSeed(bytes.Repeat([]byte{0xAB}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := e2ee.DerivePreKey(bytes.Repeat([]byte{0xCD}, 32), k, e2ee.OneTime, 1)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	log := slog.New(slog.NewJSONHandler(&logged, nil))
	log.Info("keys", "identity", k, "identity value", *k, "prekey", pk, "prekey value", *pk)
	var out strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		fmt.Fprintf(&out, verb+"\n", k)
		fmt.Fprintf(&out, verb+"\n", *k)
		fmt.Fprintf(&out, verb+"\n", pk)
		fmt.Fprintf(&out, verb+"\n", *pk)
	}
	text := out.String() + logged.String()
	for _, secret := range [][]byte{k.Seed(), pk.Private} {
		for _, enc := range []string{fmt.Sprintf("%x", secret), fmt.Sprintf("%X", secret), fmt.Sprint(secret), fmt.Sprintf("%d", secret[:4])} {
			if strings.Contains(text, strings.Trim(enc, "[]")) {
				t.Fatalf("a secret leaked in:\n%s", text)
			}
		}
	}
	if !strings.Contains(text, "REDACTED") {
		t.Errorf("no redaction marker in:\n%s", text)
	}
}
