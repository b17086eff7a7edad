package federation

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/valise-im/valise/storage"
)

// Signature contexts of the signed federation answers (see
// federation.proto). Each is used for one kind of object and nothing else.
const (
	contextDeviceKeys = "valise/federation/v1/device-keys"
	contextClaimedKey = "valise/federation/v1/claimed-key"
)

// Validity of the one signing key a Signer has (rotation is not
// implemented yet, so the key is valid for all time).
var (
	keyValidFrom  = time.Unix(0, 0).UTC()
	keyValidUntil = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

// Signer signs this node's federation answers with its Ed25519 signing
// key. Its key id is "ed25519:" followed by the first 16 characters of the
// unpadded base64url SHA-256 of the public key, so a different key always
// has a different id.
//
// Key rotation is not implemented yet: a Signer holds exactly one key,
// published as valid from the Unix epoch until 9999-12-31. A Signer is
// safe for concurrent use.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
}

// NewSigner returns a Signer over key, which must be a valid Ed25519
// private key (it panics otherwise, as ed25519.Sign would).
func NewSigner(key ed25519.PrivateKey) *Signer {
	if len(key) != ed25519.PrivateKeySize {
		panic("federation: NewSigner: bad Ed25519 private key length")
	}
	return &Signer{key: key, keyID: KeyID(key.Public().(ed25519.PublicKey))}
}

// KeyID returns the key id of an Ed25519 public key: "ed25519:" and the
// first 16 characters of the unpadded base64url SHA-256 of pub.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + base64.RawURLEncoding.EncodeToString(sum[:])[:16]
}

// KeyID returns the id of the Signer's key.
func (s *Signer) KeyID() string { return s.keyID }

// Sign returns the Ed25519 signature over context, one zero byte and b.
// context must be one of the contexts federation.proto defines.
func (s *Signer) Sign(context string, b []byte) []byte {
	return ed25519.Sign(s.key, signedMessage(context, b))
}

// Keys returns the signing keys this node publishes through
// GetSigningKeys: for now the Signer's only key, valid for all time.
func (s *Signer) Keys() []storage.SigningKey {
	return []storage.SigningKey{{
		KeyID:      s.keyID,
		PublicKey:  append([]byte(nil), s.key.Public().(ed25519.PublicKey)...),
		ValidFrom:  keyValidFrom,
		ValidUntil: keyValidUntil,
	}}
}

// verify reports whether sig is pub's signature over context, one zero
// byte and b. A malformed key or signature does not verify.
func verify(pub []byte, context string, b, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(pub), signedMessage(context, b), sig)
}

func signedMessage(context string, b []byte) []byte {
	m := make([]byte, 0, len(context)+1+len(b))
	m = append(m, context...)
	m = append(m, 0)
	return append(m, b...)
}
