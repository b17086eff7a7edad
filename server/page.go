package server

import (
	"encoding/base64"
	"strings"

	"github.com/valise-im/valise"
)

// Page sizes of every List RPC.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func pageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, valise.Errorf(valise.KindInvalid, "page_size must not be negative")
	case n == 0:
		return defaultPageSize, nil
	case n > maxPageSize:
		return maxPageSize, nil
	}
	return int(n), nil
}

// Page tokens are opaque to clients: base64url of "<list>:<last key>", so a
// token of one list is refused by another.
func encodePageToken(list, last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(list + ":" + last))
}

func decodePageToken(list, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(token) > 512 {
		return "", valise.Errorf(valise.KindInvalid, "page_token is malformed")
	}
	last, ok := strings.CutPrefix(string(b), list+":")
	if !ok || last == "" {
		return "", valise.Errorf(valise.KindInvalid, "page_token is malformed")
	}
	return last, nil
}

// nextToken returns the token for the page after one of n items whose last
// key is last, or "" when the page was not full.
func nextToken(list string, n, size int, last string) string {
	if n < size {
		return ""
	}
	return encodePageToken(list, last)
}
