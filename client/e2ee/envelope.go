package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Domain separation strings of version 1.
const (
	infoContext = "valise/e2ee/v1"
	sigContext  = "valise/e2ee/v1/sig"
)

// RecipientKey is the prekey an envelope is sealed to.
type RecipientKey struct {
	Kind   PreKeyKind
	ID     uint32
	Public []byte
}

// Header is the clear part of an envelope.
type Header struct {
	Version byte
	Kind    PreKeyKind
	KeyID   uint32
}

// Seal seals m for m.Recipient's prekey to and signs it with the sender's
// identity key. The result is the envelope's ciphertext as sent to the node.
//
// Seal refuses a body longer than MaxBody (ErrTooLarge), an empty or
// over-long user or device in m.Sender or m.Recipient, and a prekey that is
// not of this suite. It truncates m.Time to the millisecond. Every call
// encapsulates afresh, so sealing the same message twice gives two
// different envelopes. Seal does not check to's signature: the caller
// verifies it with VerifyPreKey when it fetches the key.
func Seal(sender *IdentityKey, m Message, to RecipientKey) ([]byte, error) {
	return seal(sender, m, to, m.Sender)
}

// seal is Seal with the sealed sender written in the plaintext given
// separately, so that tests can build a mismatching envelope.
func seal(sender *IdentityKey, m Message, to RecipientKey, sealed Address) ([]byte, error) {
	if !sender.valid() {
		return nil, fmt.Errorf("e2ee: seal: no identity key")
	}
	if len(m.Body) > MaxBody {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(m.Body), MaxBody)
	}
	if err := checkAddress("sender", m.Sender); err != nil {
		return nil, err
	}
	if err := checkAddress("recipient", m.Recipient); err != nil {
		return nil, err
	}
	if !to.Kind.valid() {
		return nil, fmt.Errorf("e2ee: seal: unknown prekey kind %d", to.Kind)
	}
	pk, err := suiteKEM.NewPublicKey(to.Public)
	if err != nil {
		return nil, fmt.Errorf("e2ee: seal: recipient prekey: %w", err)
	}
	info, err := infoBytes(m.Sender, m.Recipient)
	if err != nil {
		return nil, err
	}
	enc, s, err := hpke.NewSender(pk, suiteKDF, suiteAEAD, info)
	if err != nil {
		return nil, fmt.Errorf("e2ee: seal: %w", err)
	}
	if len(enc) != encSize {
		return nil, fmt.Errorf("e2ee: seal: encapsulation is %d bytes, want %d", len(enc), encSize)
	}
	ms := m.Time.UnixMilli()
	content, err := signedContent(m.Sender, m.Recipient, to.Kind, to.ID, enc, m.ID, ms, m.Body)
	if err != nil {
		return nil, err
	}
	pt, err := appendPlaintext(nil, sealed, m.ID, ms, m.Body, sender.sign(content))
	if err != nil {
		return nil, err
	}
	defer clear(pt)

	env := make([]byte, 0, headerSize+len(enc)+len(pt)+tagSize)
	env = append(env, Version, byte(to.Kind))
	env = binary.BigEndian.AppendUint32(env, to.ID)
	env = binary.BigEndian.AppendUint16(env, uint16(len(enc)))
	ct, err := s.Seal(env[:headerSize], pt)
	if err != nil {
		return nil, fmt.Errorf("e2ee: seal: %w", err)
	}
	env = append(env, enc...)
	return append(env, ct...), nil
}

// ParseHeader reads an envelope's clear header. It checks the version
// (ErrVersion), the prekey kind, the encapsulation's length and that the
// envelope's length fits a padded ciphertext (ErrMalformed); it does not
// authenticate anything.
func ParseHeader(envelope []byte) (Header, error) {
	if len(envelope) < headerSize {
		return Header{}, fmt.Errorf("%w: %d bytes, shorter than the header", ErrMalformed, len(envelope))
	}
	if envelope[0] != Version {
		return Header{}, fmt.Errorf("%w: %d", ErrVersion, envelope[0])
	}
	kind := PreKeyKind(envelope[1])
	if !kind.valid() {
		return Header{}, fmt.Errorf("%w: unknown prekey kind %d", ErrMalformed, kind)
	}
	if n := binary.BigEndian.Uint16(envelope[6:8]); n != encSize {
		return Header{}, fmt.Errorf("%w: encapsulation length %d, want %d", ErrMalformed, n, encSize)
	}
	ct := len(envelope) - headerSize - encSize
	if ct < padBlock+tagSize || (ct-tagSize)%padBlock != 0 {
		return Header{}, fmt.Errorf("%w: ciphertext length %d does not fit a padded plaintext", ErrMalformed, ct)
	}
	return Header{Version: envelope[0], Kind: kind, KeyID: binary.BigEndian.Uint32(envelope[2:6])}, nil
}

// Open opens an envelope delivered to recipient by sender (as the node
// says), checks that the sealed sender is that sender and the signature
// against the sender's identity key, and returns the message. It does not
// detect replays: the caller drops message ids it has seen.
//
// Errors: ErrMalformed or ErrVersion for a bad header or plaintext, the
// error of keys.PreKey as is (it wraps ErrUnknownPreKey), ErrDecrypt when
// the envelope does not decrypt with that prekey for these two addresses,
// ErrSenderMismatch, ErrTooLarge for a body over MaxBody, the error of
// keys.IdentityKey wrapped, and ErrSignature. The returned message owns its
// body; its Time is in UTC.
func Open(envelope []byte, recipient, sender Address, keys Keys) (Message, error) {
	h, err := ParseHeader(envelope)
	if err != nil {
		return Message{}, err
	}
	if err := checkAddress("recipient", recipient); err != nil {
		return Message{}, err
	}
	if err := checkAddress("sender", sender); err != nil {
		return Message{}, err
	}
	aad := envelope[:headerSize]
	enc := envelope[headerSize : headerSize+encSize]
	ct := envelope[headerSize+encSize:]

	skBytes, err := keys.PreKey(h.Kind, h.KeyID)
	if err != nil {
		return Message{}, err
	}
	sk, err := suiteKEM.NewPrivateKey(skBytes)
	if err != nil {
		return Message{}, fmt.Errorf("%w: stored prekey %d does not parse", ErrDecrypt, h.KeyID)
	}
	info, err := infoBytes(sender, recipient)
	if err != nil {
		return Message{}, err
	}
	r, err := hpke.NewRecipient(enc, sk, suiteKDF, suiteAEAD, info)
	if err != nil {
		return Message{}, ErrDecrypt
	}
	pt, err := r.Open(aad, ct)
	if err != nil {
		return Message{}, ErrDecrypt
	}
	defer clear(pt)

	p, err := parsePlaintext(pt)
	if err != nil {
		return Message{}, err
	}
	if p.sender != sender {
		return Message{}, ErrSenderMismatch
	}
	idk, err := keys.IdentityKey(sender)
	if err != nil {
		return Message{}, fmt.Errorf("e2ee: open: sender identity key: %w", err)
	}
	if len(idk) != ed25519.PublicKeySize {
		return Message{}, fmt.Errorf("%w: sender identity key is %d bytes", ErrSignature, len(idk))
	}
	content, err := signedContent(sender, recipient, h.Kind, h.KeyID, enc, p.id, p.ms, p.body)
	if err != nil {
		return Message{}, err
	}
	if !ed25519.Verify(idk, content, p.sig) {
		return Message{}, ErrSignature
	}
	return Message{
		ID:        p.id,
		Sender:    sender,
		Recipient: recipient,
		Time:      time.UnixMilli(p.ms).UTC(),
		Body:      bytes.Clone(p.body),
	}, nil
}

// infoBytes is the HPKE info: "valise/e2ee/v1" || lp(sender user) ||
// lp(sender device) || lp(recipient user) || lp(recipient device).
func infoBytes(sender, recipient Address) ([]byte, error) {
	b := make([]byte, 0, len(infoContext)+8+len(sender.User)+len(sender.Device)+len(recipient.User)+len(recipient.Device))
	b = append(b, infoContext...)
	return appendAddresses(b, sender, recipient)
}

// signedContent is what the sender's identity key signs:
// "valise/e2ee/v1/sig" || lp(sender user) || lp(sender device) ||
// lp(recipient user) || lp(recipient device) || kind(1) || key id(4) ||
// lp(enc) || message id(16) || time ms(8) || lp32(body).
func signedContent(sender, recipient Address, kind PreKeyKind, keyID uint32, enc []byte, id [idSize]byte, ms int64, body []byte) ([]byte, error) {
	n := len(sigContext) + 8 + len(sender.User) + len(sender.Device) + len(recipient.User) + len(recipient.Device) +
		1 + 4 + 2 + len(enc) + idSize + 8 + 4 + len(body)
	b := make([]byte, 0, n)
	b = append(b, sigContext...)
	b, err := appendAddresses(b, sender, recipient)
	if err != nil {
		return nil, err
	}
	b = append(b, byte(kind))
	b = binary.BigEndian.AppendUint32(b, keyID)
	if b, err = appendLP(b, enc); err != nil {
		return nil, err
	}
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(ms))
	return appendLP32(b, body), nil
}

// appendPlaintext appends the padded plaintext: lp(sender user) ||
// lp(sender device) || message id(16) || time ms(8) || lp32(body) ||
// signature(64), then zeros up to the next multiple of padBlock.
func appendPlaintext(b []byte, sender Address, id [idSize]byte, ms int64, body, sig []byte) ([]byte, error) {
	n := 2 + len(sender.User) + 2 + len(sender.Device) + idSize + 8 + 4 + len(body) + len(sig)
	start := len(b)
	b = slices.Grow(b, paddedLen(n))
	b, err := appendLP(b, sender.User)
	if err != nil {
		return nil, err
	}
	if b, err = appendLP(b, sender.Device); err != nil {
		return nil, err
	}
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(ms))
	b = appendLP32(b, body)
	b = append(b, sig...)
	return append(b, make([]byte, paddedLen(len(b)-start)-(len(b)-start))...), nil
}

// paddedLen rounds n up to a multiple of padBlock.
func paddedLen(n int) int {
	return (n + padBlock - 1) / padBlock * padBlock
}

// plaintext is a parsed envelope plaintext. Its slices alias the buffer.
type plaintext struct {
	sender Address
	id     [idSize]byte
	ms     int64
	body   []byte
	sig    []byte
}

// parsePlaintext parses a padded plaintext strictly: every field present,
// a non-empty sealed sender, a body of at most MaxBody, and exactly the
// minimal padding, all zeros.
func parsePlaintext(pt []byte) (plaintext, error) {
	r := newReader(pt)
	user := r.lp()
	device := r.lp()
	id := r.take(idSize)
	ms := r.take(8)
	body := r.lp32()
	sig := r.take(ed25519.SignatureSize)
	if !r.ok {
		return plaintext{}, fmt.Errorf("%w: truncated plaintext", ErrMalformed)
	}
	if len(user) == 0 || len(device) == 0 {
		return plaintext{}, fmt.Errorf("%w: empty sealed sender", ErrMalformed)
	}
	if len(body) > MaxBody {
		return plaintext{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(body), MaxBody)
	}
	if used := len(pt) - len(r.b); len(pt) != paddedLen(used) {
		return plaintext{}, fmt.Errorf("%w: %d bytes after the signature", ErrMalformed, len(r.b))
	}
	for _, c := range r.b {
		if c != 0 {
			return plaintext{}, fmt.Errorf("%w: non-zero padding", ErrMalformed)
		}
	}
	p := plaintext{
		sender: Address{User: string(user), Device: string(device)},
		ms:     int64(binary.BigEndian.Uint64(ms)),
		body:   body,
		sig:    sig,
	}
	copy(p.id[:], id)
	return p, nil
}
