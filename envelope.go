package valise

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Default bounds on envelopes and sends; a node's config may change them.
const (
	// DefaultMaxCiphertext is the largest envelope ciphertext accepted.
	DefaultMaxCiphertext = 256 << 10
	// DefaultMaxRecipients is the most envelopes one SendEnvelopes may carry.
	DefaultMaxRecipients = 1000
	// MaxIdempotencyKeyLen bounds a client's idempotency key, in bytes.
	MaxIdempotencyKeyLen = 128
)

// EnvelopeID is a globally unique, time-ordered envelope id chosen by the
// sender's node: a UUIDv7 in its canonical text form.
type EnvelopeID string

// NewEnvelopeID returns a fresh UUIDv7 for time now.
func NewEnvelopeID(now time.Time) EnvelopeID {
	var b [16]byte
	_, _ = rand.Read(b[:])
	ms := uint64(now.UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms)
	copy(b[0:6], ts[2:8])
	b[6] = (b[6] & 0x0f) | 0x70 // version 7
	b[8] = (b[8] & 0x3f) | 0x80 // RFC 9562 variant
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return EnvelopeID(out[:])
}

// String returns the id.
func (id EnvelopeID) String() string { return string(id) }

// Envelope is one sealed message for one recipient device, as stored in that
// device's inbox. Ciphertext is opaque: no server parses it.
type Envelope struct {
	ID              EnvelopeID
	Cursor          uint64 // position in the recipient device's inbox, from 1
	Sender          UserID
	SenderDevice    DeviceID
	Recipient       UserID
	RecipientDevice DeviceID
	ServerTime      time.Time
	Ciphertext      []byte
	// Failure, when not nil, makes this envelope a delivery-failure notice
	// from the node: Sender, SenderDevice and Ciphertext are then empty.
	Failure *DeliveryFailure
}

// OutgoingEnvelope is one envelope of a send request, before the node has
// accepted it.
type OutgoingEnvelope struct {
	Recipient       UserID
	RecipientDevice DeviceID
	Ciphertext      []byte
}

// DeliveryFailure is a notice the sending node puts in a sending device's
// inbox when an envelope it sent to another node could not be delivered
// and was given up for good (dead-lettered). An Envelope that carries one
// has no sender and no ciphertext.
type DeliveryFailure struct {
	// EnvelopeID is the id of the envelope that was not delivered, as the
	// send returned it.
	EnvelopeID EnvelopeID
	// Recipient and RecipientDevice are the envelope's addressee.
	Recipient       UserID
	RecipientDevice DeviceID
	// Reason is one of the FailureReason values.
	Reason FailureReason
}

// FailureReason says why an envelope was given up.
type FailureReason string

// Why an envelope to another node was given up.
const (
	FailureUnknownRecipient     FailureReason = "unknown_recipient"     // the recipient user or device does not exist there
	FailureRecipientDeactivated FailureReason = "recipient_deactivated" // the recipient user is deactivated there
	FailureTooLarge             FailureReason = "too_large"             // over the destination's envelope limit
	FailureInvalid              FailureReason = "invalid"               // the destination found it malformed
	FailureExpired              FailureReason = "expired"               // not delivered within the outbox time to live
	FailureRejected             FailureReason = "rejected"              // the destination refused it for another permanent reason
	FailureNotPeer              FailureReason = "not_peer"              // the destination was removed from the peer list
)
