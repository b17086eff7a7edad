package server

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Password length bounds, in bytes.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// PasswordParams is the argon2id cost.
type PasswordParams struct {
	Time    uint32 // iterations
	MemoryK uint32 // memory in KiB
	Threads uint8
}

// DefaultPasswordParams follows RFC 9106's second recommendation scaled to a
// small server: 3 passes over 64 MiB with 2 lanes.
func DefaultPasswordParams() PasswordParams {
	return PasswordParams{Time: 3, MemoryK: 64 << 10, Threads: 2}
}

var b64 = base64.RawStdEncoding

// HashPassword returns an encoded argon2id hash of password
// ("$argon2id$v=19$m=...,t=...,p=...$salt$hash").
func HashPassword(p PasswordParams, password string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	sum := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryK, p.Threads, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryK, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(sum))
}

var errBadHash = errors.New("password: malformed hash")

// Upper bounds on the cost an encoded hash may ask for, so that a corrupt or
// hostile stored hash cannot pin a CPU or exhaust memory. Configuration must
// stay within them.
const (
	MaxPasswordTime    = 16
	MaxPasswordMemoryK = 1 << 20 // 1 GiB
	MaxPasswordThreads = 16
)

// CheckPassword reports whether password matches encoded, in constant time
// over the hash. A malformed encoded hash is an error.
func CheckPassword(encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, errBadHash
	}
	var p PasswordParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryK, &p.Time, &p.Threads); err != nil ||
		p.Time == 0 || p.Time > MaxPasswordTime || p.Threads == 0 || p.Threads > MaxPasswordThreads || p.MemoryK > MaxPasswordMemoryK {
		return false, errBadHash
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryK, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
