package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
)

// PreKeyKind says how a prekey is used.
type PreKeyKind byte

// Prekey kinds.
const (
	OneTime PreKeyKind = 1 // used for one envelope, then deleted
	Signed  PreKeyKind = 2 // the device's medium-term prekey, the fallback
)

// valid reports whether k is a known kind.
func (k PreKeyKind) valid() bool { return k == OneTime || k == Signed }

// prekeyContext prefixes the content a prekey signature covers.
const prekeyContext = "valise/prekey/v1"

// PreKey is a device's HPKE key pair with the identity key's signature
// over its public half.
type PreKey struct {
	Kind      PreKeyKind
	ID        uint32
	Private   []byte // hpke PrivateKey.Bytes(); keep it secret
	Public    []byte // hpke PublicKey.Bytes()
	Signature []byte // Ed25519 over "valise/prekey/v1" || kind || id || lp(Public)
}

// NewPreKey generates a prekey of kind with id and signs it with id.
func NewPreKey(identity *IdentityKey, kind PreKeyKind, id uint32) (*PreKey, error) {
	if err := checkPreKeyArgs(identity, kind); err != nil {
		return nil, err
	}
	priv, err := suiteKEM.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("e2ee: generate prekey: %w", err)
	}
	return newPreKey(priv, identity, kind, id)
}

// DerivePreKey derives a prekey deterministically from ikm (for
// known-answer tests). ikm must hold at least 32 bytes.
func DerivePreKey(ikm []byte, identity *IdentityKey, kind PreKeyKind, id uint32) (*PreKey, error) {
	if err := checkPreKeyArgs(identity, kind); err != nil {
		return nil, err
	}
	if len(ikm) < 32 {
		return nil, fmt.Errorf("e2ee: prekey ikm is %d bytes, want at least 32", len(ikm))
	}
	priv, err := suiteKEM.DeriveKeyPair(ikm)
	if err != nil {
		return nil, fmt.Errorf("e2ee: derive prekey: %w", err)
	}
	return newPreKey(priv, identity, kind, id)
}

func checkPreKeyArgs(identity *IdentityKey, kind PreKeyKind) error {
	if !identity.valid() {
		return fmt.Errorf("e2ee: prekey: no identity key")
	}
	if !kind.valid() {
		return fmt.Errorf("e2ee: prekey: unknown kind %d", kind)
	}
	return nil
}

// newPreKey serializes priv and signs its public half.
func newPreKey(priv hpke.PrivateKey, identity *IdentityKey, kind PreKeyKind, id uint32) (*PreKey, error) {
	sk, err := priv.Bytes()
	if err != nil {
		return nil, fmt.Errorf("e2ee: prekey: %w", err)
	}
	pub := priv.PublicKey().Bytes()
	msg, err := prekeySignedBytes(kind, id, pub)
	if err != nil {
		return nil, err
	}
	return &PreKey{
		Kind:      kind,
		ID:        id,
		Private:   bytes.Clone(sk), // hpke may hand out its own copy
		Public:    pub,
		Signature: identity.sign(msg),
	}, nil
}

// prekeySignedBytes is the content a prekey signature covers:
// "valise/prekey/v1" || kind(1) || id(4) || lp(public).
func prekeySignedBytes(kind PreKeyKind, id uint32, public []byte) ([]byte, error) {
	b := make([]byte, 0, len(prekeyContext)+1+4+2+len(public))
	b = append(b, prekeyContext...)
	b = append(b, byte(kind))
	b = binary.BigEndian.AppendUint32(b, id)
	return appendLP(b, public)
}

// VerifyPreKey checks a published prekey's signature against the device's
// identity public key. It also checks that the identity key is an Ed25519
// public key and that public parses as a prekey of this suite. Every
// failure wraps ErrSignature.
func VerifyPreKey(identityPublic []byte, kind PreKeyKind, id uint32, public, signature []byte) error {
	if len(identityPublic) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: identity key is %d bytes, want %d", ErrSignature, len(identityPublic), ed25519.PublicKeySize)
	}
	if !kind.valid() {
		return fmt.Errorf("%w: unknown prekey kind %d", ErrSignature, kind)
	}
	if _, err := suiteKEM.NewPublicKey(public); err != nil {
		return fmt.Errorf("%w: prekey public key does not parse", ErrSignature)
	}
	msg, err := prekeySignedBytes(kind, id, public)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if !ed25519.Verify(identityPublic, msg, signature) {
		return fmt.Errorf("%w: prekey %d", ErrSignature, id)
	}
	return nil
}

// Format prints p without its private key, whatever the verb.
func (p PreKey) Format(f fmt.State, verb rune) {
	io.WriteString(f, p.describe())
}

// LogValue logs p without its private key, like Format. (A value receiver,
// so that a handler never falls back to encoding the struct's fields.)
func (p PreKey) LogValue() slog.Value {
	return slog.StringValue(p.describe())
}

func (p PreKey) describe() string {
	return fmt.Sprintf("e2ee.PreKey{kind:%d id:%d public:%s private:REDACTED}", byte(p.Kind), p.ID, shortHash(p.Public))
}
