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
	"crypto/hpke"
	"crypto/mlkem"
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

// The version 1 HPKE suite. These values are read-only.
var (
	suiteKEM  = hpke.MLKEM768X25519()
	suiteKDF  = hpke.HKDFSHA256()
	suiteAEAD = hpke.ChaCha20Poly1305()
)

// Sizes of the version 1 construction.
const (
	// headerSize is version(1) || kind(1) || key id(4) || enc length(2).
	headerSize = 8
	// encSize is the length of an MLKEM768-X25519 encapsulation: an
	// ML-KEM-768 ciphertext followed by an X25519 share (1,120 bytes).
	encSize = mlkem.CiphertextSize768 + x25519Size
	// x25519Size is the size of an X25519 public value.
	x25519Size = 32
	// tagSize is the ChaCha20-Poly1305 authentication tag's size.
	tagSize = 16
	// padBlock is the plaintext padding granularity.
	padBlock = 256
	// idSize is the size of a message id.
	idSize = 16
)

// Address names one device of one user ("alice@node", "DV...").
type Address struct {
	User   string
	Device string
}

// Message is what an envelope carries.
type Message struct {
	ID        [16]byte // random, chosen by the sender; receivers drop repeats
	Sender    Address
	Recipient Address
	Time      time.Time // the sender's clock, millisecond precision
	Body      []byte
}

// Keys is what Open needs from the receiver's key store. Open calls each
// method at most once, on the caller's goroutine, and neither keeps nor
// modifies the slices they return.
type Keys interface {
	// PreKey returns the private half of the receiver's prekey, or an error
	// wrapping ErrUnknownPreKey.
	PreKey(kind PreKeyKind, id uint32) ([]byte, error)
	// IdentityKey returns the identity public key of the sending device, as
	// the receiver trusts it.
	IdentityKey(sender Address) ([]byte, error)
}
