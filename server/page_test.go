package server

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/valise-im/valise"
)

func TestPageSize(t *testing.T) {
	tests := []struct {
		name string
		in   int32
		want int
		ok   bool
	}{
		{"zero means default", 0, defaultPageSize, true},
		{"one", 1, 1, true},
		{"in range", 250, 250, true},
		{"max", maxPageSize, maxPageSize, true},
		{"past max is clamped", maxPageSize + 1, maxPageSize, true},
		{"int32 max is clamped", math.MaxInt32, maxPageSize, true},
		{"negative", -1, 0, false},
		{"int32 min", math.MinInt32, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pageSize(tt.in)
			if !tt.ok {
				if valise.KindOf(err) != valise.KindInvalid {
					t.Fatalf("pageSize(%d) = %d, %v; want an invalid error", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("pageSize(%d) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPageTokenRoundTrip(t *testing.T) {
	tests := []struct {
		name, list, last string
	}{
		{"users", "users", "alice"},
		{"longest localpart", "users", strings.Repeat("a", valise.MaxLocalpartLen)},
		{"devices", "devices", string(valise.NewDeviceID())},
		{"audit", "audit", "42"},
		{"largest audit seq", "audit", strconv.FormatInt(math.MaxInt64, 10)},
		{"colon in key", "audit", "12:34"},
		{"unicode key", "users", "élodie"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := encodePageToken(tt.list, tt.last)
			got, err := decodePageToken(tt.list, tok)
			if err != nil || got != tt.last {
				t.Errorf("decodePageToken(%q, encodePageToken(%q, %q)) = %q, %v; want %q", tt.list, tt.list, tt.last, got, err, tt.last)
			}
		})
	}
}

func TestDecodePageTokenEmptyStartsAtTheBeginning(t *testing.T) {
	got, err := decodePageToken("users", "")
	if err != nil || got != "" {
		t.Errorf(`decodePageToken("users", "") = %q, %v; want "", nil`, got, err)
	}
}

func TestDecodePageTokenRefused(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name, list, token string
	}{
		{"token of another list", "devices", encodePageToken("users", "alice")},
		{"list name prefix", "user", encodePageToken("users", "alice")},
		{"empty key", "users", enc("users:")},
		{"no separator", "users", enc("users")},
		{"no list", "users", enc("alice")},
		{"garbage", "users", "!!!"},
		{"std alphabet with padding", "users", base64.StdEncoding.EncodeToString([]byte("users:alice?"))},
		{"too long", "users", enc("users:" + strings.Repeat("a", 400))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodePageToken(tt.list, tt.token)
			if err == nil {
				t.Fatalf("decodePageToken(%q, %q) = %q, want an error", tt.list, tt.token, got)
			}
			if k := valise.KindOf(err); k != valise.KindInvalid {
				t.Errorf("decodePageToken(%q, %q) error kind = %v, want %v", tt.list, tt.token, k, valise.KindInvalid)
			}
		})
	}
}

func TestNextToken(t *testing.T) {
	if got := nextToken("users", 3, 10, "carol"); got != "" {
		t.Errorf("nextToken of a short page = %q, want \"\"", got)
	}
	tok := nextToken("users", 10, 10, "carol")
	if got, err := decodePageToken("users", tok); err != nil || got != "carol" {
		t.Errorf("decodePageToken(nextToken of a full page) = %q, %v; want \"carol\"", got, err)
	}
}

func FuzzDecodePageToken(f *testing.F) {
	f.Add("users", encodePageToken("users", "alice"))
	f.Fuzz(func(t *testing.T, list, token string) {
		last, err := decodePageToken(list, token)
		if err != nil {
			if k := valise.KindOf(err); k != valise.KindInvalid {
				t.Fatalf("decodePageToken(%q, %q) error kind = %v, want %v", list, token, k, valise.KindInvalid)
			}
			return
		}
		if token == "" {
			if last != "" {
				t.Fatalf(`decodePageToken(%q, "") = %q, want ""`, list, last)
			}
			return
		}
		if last == "" {
			t.Fatalf("decodePageToken(%q, %q) = \"\" for a non-empty token", list, token)
		}
		if len(token) > 512 {
			t.Fatalf("decodePageToken accepted a %d-byte token, want at most 512", len(token))
		}
		again, err := decodePageToken(list, encodePageToken(list, last))
		if err != nil || again != last {
			t.Fatalf("decodePageToken(%q, encodePageToken(%q, %q)) = %q, %v; want %q", list, list, last, again, err, last)
		}
	})
}
