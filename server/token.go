package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"strings"

	"github.com/valise-im/valise"
)

// Access tokens are "vt_" followed by 256 random bits in unpadded base64url.
// The node stores only their SHA-256.
const tokenPrefix = "vt_"

var tokenLen = len(tokenPrefix) + base64.RawURLEncoding.EncodedLen(32)

// Token is a bearer access token. It redacts itself in logs.
type Token string

// String keeps tokens out of logs and error text.
func (Token) String() string { return "[REDACTED]" }

// LogValue keeps tokens out of slog output.
func (Token) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

func newToken() (Token, []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	t := tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return Token(t), hashToken(t)
}

func hashToken(t string) []byte {
	s := sha256.Sum256([]byte(t))
	return s[:]
}

// parseToken checks a token's shape and returns its hash.
func parseToken(t string) ([]byte, error) {
	if len(t) != tokenLen || !strings.HasPrefix(t, tokenPrefix) {
		return nil, valise.Errorf(valise.KindInvalid, "access token is malformed")
	}
	// Check the alphabet by hand: base64 decoding skips '\r' and '\n'.
	for i := len(tokenPrefix); i < len(t); i++ {
		if c := t[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return nil, valise.Errorf(valise.KindInvalid, "access token is malformed")
		}
	}
	return hashToken(t), nil
}
