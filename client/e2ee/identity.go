package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
)

// IdentityKey is a device's long-term Ed25519 signing key.
type IdentityKey struct {
	priv ed25519.PrivateKey
}

// NewIdentityKey generates an identity key.
func NewIdentityKey() (*IdentityKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("e2ee: generate identity key: %w", err)
	}
	return &IdentityKey{priv: priv}, nil
}

// IdentityKeyFromSeed rebuilds an identity key from its 32-byte seed.
func IdentityKeyFromSeed(seed []byte) (*IdentityKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("e2ee: identity seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return &IdentityKey{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Seed returns the 32-byte private seed; keep it secret.
func (k *IdentityKey) Seed() []byte {
	if !k.valid() {
		return nil
	}
	return k.priv.Seed()
}

// Public returns the 32-byte public key, as published.
func (k *IdentityKey) Public() []byte {
	if !k.valid() {
		return nil
	}
	return bytes.Clone(k.priv[ed25519.SeedSize:])
}

// valid reports whether k holds a key.
func (k *IdentityKey) valid() bool {
	return k != nil && len(k.priv) == ed25519.PrivateKeySize
}

// sign signs msg; k must be valid.
func (k *IdentityKey) sign(msg []byte) []byte {
	return ed25519.Sign(k.priv, msg)
}

// Format prints k without its secret: only a short hash of the public key,
// whatever the verb, so that a key printed by mistake leaks nothing. (A
// value receiver, so that a copied IdentityKey is redacted too.)
func (k IdentityKey) Format(f fmt.State, verb rune) {
	io.WriteString(f, k.describe())
}

// LogValue logs k without its secret, like Format.
func (k *IdentityKey) LogValue() slog.Value {
	if k == nil {
		return slog.StringValue("<nil>")
	}
	return slog.StringValue(k.describe())
}

func (k IdentityKey) describe() string {
	if !k.valid() {
		return "e2ee.IdentityKey{}"
	}
	return "e2ee.IdentityKey{public:" + shortHash(k.priv[ed25519.SeedSize:]) + " private:REDACTED}"
}

// shortHash returns the first 8 hex digits of SHA-256(b), to name a public
// value in a log line or a test failure.
func shortHash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:4])
}
