// Package e2ee is Valise's end-to-end encryption construction, version 1:
// Ed25519 device identity keys, HPKE (RFC 9180) prekeys with the hybrid
// post-quantum KEM ML-KEM-768 + X25519, HKDF-SHA256 and ChaCha20-Poly1305,
// and signed envelopes bound to both devices. docs/E2EE.md describes the
// exact construction, its security properties and its limits.
//
// The package is pure computation: it holds no state, does no I/O and knows
// nothing of gRPC. The client package keeps the keys, pins identities and
// drops replays. It imports only the standard library.
package e2ee

import (
	"crypto/ed25519"
	"errors"
	"time"
)

// Version is the protocol version written in every envelope.
const Version = 1

// MaxBody bounds a message body so that an envelope stays well under a
// node's default 256 KiB ciphertext limit.
const MaxBody = 192 << 10

// Errors returned by Open and the verify functions. They wrap no secret.
var (
	ErrMalformed      = errors.New("e2ee: malformed envelope")
	ErrVersion        = errors.New("e2ee: unsupported envelope version")
	ErrUnknownPreKey  = errors.New("e2ee: envelope sealed to an unknown or expired prekey")
	ErrDecrypt        = errors.New("e2ee: envelope does not decrypt")
	ErrSenderMismatch = errors.New("e2ee: sealed sender differs from the delivering sender")
	ErrSignature      = errors.New("e2ee: bad signature")
	ErrTooLarge       = errors.New("e2ee: message body too large")
)

// Address names one device of one user ("alice@node", "DV...").
type Address struct {
	User   string
	Device string
}

// IdentityKey is a device's long-term Ed25519 signing key.
type IdentityKey struct {
	priv ed25519.PrivateKey
}

// NewIdentityKey generates an identity key.
func NewIdentityKey() (*IdentityKey, error) { panic("unimplemented") }

// IdentityKeyFromSeed rebuilds an identity key from its 32-byte seed.
func IdentityKeyFromSeed(seed []byte) (*IdentityKey, error) { panic("unimplemented") }

// Seed returns the 32-byte private seed; keep it secret.
func (k *IdentityKey) Seed() []byte { panic("unimplemented") }

// Public returns the 32-byte public key, as published.
func (k *IdentityKey) Public() []byte { panic("unimplemented") }

// PreKeyKind says how a prekey is used.
type PreKeyKind byte

// Prekey kinds.
const (
	OneTime PreKeyKind = 1 // used for one envelope, then deleted
	Signed  PreKeyKind = 2 // the device's medium-term prekey, the fallback
)

// PreKey is a device's HPKE key pair with the identity key's signature
// over its public half.
type PreKey struct {
	Kind      PreKeyKind
	ID        uint32
	Private   []byte // hpke PrivateKey.Bytes(); keep it secret
	Public    []byte // hpke PublicKey.Bytes()
	Signature []byte // Ed25519 over PreKeySignedBytes
}

// NewPreKey generates a prekey of kind with id and signs it with id.
func NewPreKey(identity *IdentityKey, kind PreKeyKind, id uint32) (*PreKey, error) {
	panic("unimplemented")
}

// DerivePreKey derives a prekey deterministically from ikm (for
// known-answer tests).
func DerivePreKey(ikm []byte, identity *IdentityKey, kind PreKeyKind, id uint32) (*PreKey, error) {
	panic("unimplemented")
}

// VerifyPreKey checks a published prekey's signature against the device's
// identity public key.
func VerifyPreKey(identityPublic []byte, kind PreKeyKind, id uint32, public, signature []byte) error {
	panic("unimplemented")
}

// Message is what an envelope carries.
type Message struct {
	ID        [16]byte // random, chosen by the sender; receivers drop repeats
	Sender    Address
	Recipient Address
	Time      time.Time // the sender's clock, millisecond precision
	Body      []byte
}

// RecipientKey is the prekey an envelope is sealed to.
type RecipientKey struct {
	Kind   PreKeyKind
	ID     uint32
	Public []byte
}

// Seal seals m for m.Recipient's prekey to and signs it with the sender's
// identity key. The result is the envelope's ciphertext as sent to the node.
func Seal(sender *IdentityKey, m Message, to RecipientKey) ([]byte, error) { panic("unimplemented") }

// Header is the clear part of an envelope.
type Header struct {
	Version byte
	Kind    PreKeyKind
	KeyID   uint32
}

// ParseHeader reads an envelope's clear header.
func ParseHeader(envelope []byte) (Header, error) { panic("unimplemented") }

// Keys is what Open needs from the receiver's key store.
type Keys interface {
	// PreKey returns the private half of the receiver's prekey, or an error
	// wrapping ErrUnknownPreKey.
	PreKey(kind PreKeyKind, id uint32) ([]byte, error)
	// IdentityKey returns the identity public key of the sending device, as
	// the receiver trusts it.
	IdentityKey(sender Address) ([]byte, error)
}

// Open opens an envelope delivered to recipient by sender (as the node
// says), checks that the sealed sender is that sender and the signature
// against the sender's identity key, and returns the message. It does not
// detect replays: the caller drops message ids it has seen.
func Open(envelope []byte, recipient, sender Address, keys Keys) (Message, error) {
	panic("unimplemented")
}

// Fingerprint returns the safety number over a user's devices: 12 groups
// of 5 digits. identities maps device id to identity public key.
func Fingerprint(user string, identities map[string][]byte) string { panic("unimplemented") }
