package client

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// KDFParams is the argon2id cost of deriving the at-rest key from the
// passphrase.
type KDFParams struct {
	Time      uint32 // passes; default 3
	MemoryKiB uint32 // memory in KiB; default 64 MiB
	Threads   uint8  // parallelism; default 2
}

func (p KDFParams) withDefaults() KDFParams {
	if p.Time == 0 {
		p.Time = 3
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = 64 << 10
	}
	if p.Threads == 0 {
		p.Threads = 2
	}
	return p
}

// Bounds on the parameters read from a sealed file, so that a tampered
// header cannot make opening it take hours or all memory.
const (
	maxKDFTime      = 64
	maxKDFMemoryKiB = 1 << 20 // 1 GiB
	maxKDFThreads   = 64
)

// The sealed secrets file: magic, version, argon2id parameters, salt and
// nonce, then the XChaCha20-Poly1305 ciphertext of the secrets JSON, with
// the whole header as additional data.
var sealMagic = []byte("VSEC")

const (
	sealVersion   = 1
	saltLen       = 16
	sealHeaderLen = 4 + 1 + 4 + 4 + 1 + saltLen + chacha20poly1305.NonceSizeX
)

// ErrPassphrase is returned when the secrets do not open with the given
// passphrase (or the sealed file was damaged).
var ErrPassphrase = errors.New("client: the secrets do not open with this passphrase (wrong passphrase, or a damaged secrets.enc)")

// sealer encrypts and decrypts the secrets file with a key derived once
// from the passphrase. The salt and parameters stay those of the file;
// every write takes a fresh random nonce.
type sealer struct {
	passphrase []byte
	params     KDFParams
	salt       []byte
	key        []byte
}

// newSealer derives a key from passphrase with a fresh salt.
func newSealer(passphrase []byte, p KDFParams) (*sealer, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return &sealer{passphrase: bytes.Clone(passphrase), params: p, salt: salt, key: deriveKey(passphrase, salt, p)}, nil
}

func deriveKey(passphrase, salt []byte, p KDFParams) []byte {
	return argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
}

// sealerFor derives the key of an existing sealed file from its header.
func sealerFor(passphrase, file []byte) (*sealer, error) {
	p, salt, _, err := parseSealHeader(file)
	if err != nil {
		return nil, err
	}
	return &sealer{passphrase: bytes.Clone(passphrase), params: p, salt: bytes.Clone(salt), key: deriveKey(passphrase, salt, p)}, nil
}

func parseSealHeader(file []byte) (KDFParams, []byte, []byte, error) {
	if len(file) < sealHeaderLen+chacha20poly1305.Overhead || !bytes.Equal(file[:4], sealMagic) {
		return KDFParams{}, nil, nil, errors.New("client: secrets.enc is not a sealed secrets file")
	}
	if file[4] != sealVersion {
		return KDFParams{}, nil, nil, fmt.Errorf("client: secrets.enc has unknown version %d", file[4])
	}
	p := KDFParams{
		Time:      binary.BigEndian.Uint32(file[5:9]),
		MemoryKiB: binary.BigEndian.Uint32(file[9:13]),
		Threads:   file[13],
	}
	if p.Time == 0 || p.Time > maxKDFTime || p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB || p.Threads == 0 || p.Threads > maxKDFThreads {
		return KDFParams{}, nil, nil, errors.New("client: secrets.enc has out-of-range key derivation parameters")
	}
	salt := file[14 : 14+saltLen]
	nonce := file[14+saltLen : sealHeaderLen]
	return p, salt, nonce, nil
}

// seal encrypts plain into a complete file.
func (s *sealer) seal(plain []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(s.key)
	if err != nil {
		return nil, err
	}
	header := make([]byte, 0, sealHeaderLen)
	header = append(header, sealMagic...)
	header = append(header, sealVersion)
	header = binary.BigEndian.AppendUint32(header, s.params.Time)
	header = binary.BigEndian.AppendUint32(header, s.params.MemoryKiB)
	header = append(header, s.params.Threads)
	header = append(header, s.salt...)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	header = append(header, nonce...)
	return aead.Seal(header, nonce, plain, header), nil
}

// open decrypts a file sealed under the same passphrase. When another
// process rewrote the file under a new salt (a new login), the key is
// derived again.
func (s *sealer) open(file []byte) ([]byte, error) {
	p, salt, nonce, err := parseSealHeader(file)
	if err != nil {
		return nil, err
	}
	if p != s.params || !bytes.Equal(salt, s.salt) {
		clear(s.key)
		s.params, s.salt, s.key = p, bytes.Clone(salt), deriveKey(s.passphrase, salt, p)
	}
	aead, err := chacha20poly1305.NewX(s.key)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, nonce, file[sealHeaderLen:], file[:sealHeaderLen])
	if err != nil {
		return nil, ErrPassphrase
	}
	return plain, nil
}

// wipe zeroes the key.
func (s *sealer) wipe() {
	if s != nil {
		clear(s.key)
		clear(s.passphrase)
	}
}
