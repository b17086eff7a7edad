package e2ee

import (
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"hash"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Fingerprint layout: 12 groups of 5 digits from the first 60 bytes of a
// SHA-512.
const (
	fingerprintContext     = "valise/fingerprint/v1"
	fingerprintWideContext = "valise/fingerprint-wide/v1"
	fingerprintGroups      = 12
	fingerprintChunk       = 5
	fingerprintModulus     = 100000
)

// Fingerprint returns the safety number over a user's devices: 12 groups
// of 5 digits. identities maps device id to identity public key.
//
// It hashes "valise/fingerprint/v1" || lp(user) and then, for each device
// in increasing id order, lp(device id) || lp(identity key), with SHA-512;
// each 5-byte chunk of the first 60 bytes, read as a big-endian integer
// modulo 100000, gives a group. Should any of these fields exceed 65535
// bytes (no valid name or key does), the hash uses the context
// "valise/fingerprint-wide/v1" and 32-bit lengths instead, so that distinct
// inputs never share a preimage.
func Fingerprint(user string, identities map[string][]byte) string {
	devices := slices.Sorted(maps.Keys(identities))
	wide := len(user) > maxShort
	for _, d := range devices {
		wide = wide || len(d) > maxShort || len(identities[d]) > maxShort
	}
	h := sha512.New()
	field := func(x []byte) {
		if wide {
			h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(x))))
		} else {
			h.Write(binary.BigEndian.AppendUint16(nil, uint16(len(x))))
		}
		h.Write(x)
	}
	if wide {
		h.Write([]byte(fingerprintWideContext))
	} else {
		h.Write([]byte(fingerprintContext))
	}
	field([]byte(user))
	for _, d := range devices {
		field([]byte(d))
		field(identities[d])
	}
	return formatFingerprint(h)
}

// formatFingerprint turns the digest into 12 space-separated groups.
func formatFingerprint(h hash.Hash) string {
	sum := h.Sum(nil)
	var sb strings.Builder
	sb.Grow(fingerprintGroups * (fingerprintChunk + 1))
	var chunk [8]byte
	for i := range fingerprintGroups {
		copy(chunk[8-fingerprintChunk:], sum[i*fingerprintChunk:(i+1)*fingerprintChunk])
		v := binary.BigEndian.Uint64(chunk[:]) % fingerprintModulus
		if i > 0 {
			sb.WriteByte(' ')
		}
		s := strconv.FormatUint(v, 10)
		sb.WriteString(strings.Repeat("0", fingerprintChunk-len(s)))
		sb.WriteString(s)
	}
	return sb.String()
}

// EqualFingerprints reports whether two fingerprints are the same, ignoring
// all white space (as typed or read aloud in groups), in constant time with
// respect to their contents. An empty fingerprint equals nothing.
func EqualFingerprints(a, b string) bool {
	x, y := stripSpace(a), stripSpace(b)
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(x, y) == 1
}

// stripSpace returns s without white space.
func stripSpace(s string) []byte {
	out := make([]byte, 0, len(s))
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError || !unicode.IsSpace(r) {
			out = append(out, s[:n]...) // invalid bytes kept as they are
		}
		s = s[n:]
	}
	return out
}
