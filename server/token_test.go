package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/valise-im/valise"
)

func TestNewTokenParses(t *testing.T) {
	seen := map[Token]bool{}
	for range 100 {
		tok, hash := newToken()
		if len(tok) != tokenLen || !strings.HasPrefix(string(tok), tokenPrefix) {
			t.Fatalf("newToken() = %d bytes, want %d starting with %q", len(tok), tokenLen, tokenPrefix)
		}
		if !bytes.Equal(hash, hashToken(string(tok))) {
			t.Fatalf("newToken() hash is not hashToken of the token")
		}
		got, err := parseToken(string(tok))
		if err != nil {
			t.Fatalf("parseToken(newToken()) = %v, want ok", err)
		}
		if !bytes.Equal(got, hash) {
			t.Fatalf("parseToken(newToken()) = %x, want %x", got, hash)
		}
		if seen[tok] {
			t.Fatalf("newToken() returned one token twice")
		}
		seen[tok] = true
	}
}

func TestParseTokenMalformed(t *testing.T) {
	body := strings.Repeat("A", tokenLen-len(tokenPrefix))
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"prefix only", tokenPrefix},
		{"no prefix", body},
		{"wrong prefix", "vx_" + body},
		{"uppercase prefix", "VT_" + body},
		{"one short", tokenPrefix + body[1:]},
		{"one long", tokenPrefix + body + "A"},
		{"std alphabet", tokenPrefix + body[2:] + "+/"},
		{"padding", tokenPrefix + body[1:] + "="},
		{"space", tokenPrefix + body[1:] + " "},
		{"unicode", tokenPrefix + body[2:] + "é"},
		{"bearer scheme left in", "Bearer " + tokenPrefix + body[7:]},
		// base64 decoding skips CR and LF, so these are the right length
		// and decode, yet they are not tokens.
		{"trailing newline", tokenPrefix + body[1:] + "\n"},
		{"inner CR LF", tokenPrefix + body[3:] + "\r\n\r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseToken(tt.in)
			if err == nil {
				t.Fatalf("parseToken(%q) = %x, want an error", tt.in, got)
			}
			if k := valise.KindOf(err); k != valise.KindInvalid {
				t.Errorf("parseToken(%q) error kind = %v, want %v", tt.in, k, valise.KindInvalid)
			}
			if len(tt.in) > len(tokenPrefix) && strings.Contains(err.Error(), tt.in) {
				t.Errorf("parseToken error %q repeats the token", err)
			}
		})
	}
}

func TestTokenRedacts(t *testing.T) {
	tok, _ := newToken()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("login", "token", tok)
	for name, out := range map[string]string{
		"%v":   fmt.Sprintf("%v", tok),
		"%s":   fmt.Sprintf("%s", tok),
		"%q":   fmt.Sprintf("%q", tok),
		"%+v":  fmt.Sprintf("%+v", struct{ T Token }{tok}),
		"slog": buf.String(),
	} {
		if strings.Contains(out, string(tok)) {
			t.Errorf("%s output %q contains the token", name, out)
		}
		if !strings.Contains(out, "[REDACTED]") {
			t.Errorf("%s output %q does not say [REDACTED]", name, out)
		}
	}
}

// isTokenShape reports whether s is "vt_" followed by exactly the unpadded
// base64url length of 32 bytes in the base64url alphabet.
func isTokenShape(s string) bool {
	if len(s) != tokenLen || !strings.HasPrefix(s, tokenPrefix) {
		return false
	}
	for i := len(tokenPrefix); i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func FuzzParseToken(f *testing.F) {
	tok, _ := newToken()
	f.Add(string(tok))
	f.Fuzz(func(t *testing.T, s string) {
		hash, err := parseToken(s)
		if shape := isTokenShape(s); shape != (err == nil) {
			t.Fatalf("parseToken(%q) = %v; token shape = %v", s, err, shape)
		}
		if err != nil {
			if k := valise.KindOf(err); k != valise.KindInvalid {
				t.Fatalf("parseToken(%q) error kind = %v, want %v", s, k, valise.KindInvalid)
			}
			return
		}
		if !bytes.Equal(hash, hashToken(s)) {
			t.Fatalf("parseToken(%q) = %x, want hashToken of it", s, hash)
		}
	})
}
