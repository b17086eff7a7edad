package valise

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
	"unicode/utf8"
)

// Bounds on names. They are part of the wire contract and documented in the
// README.
const (
	// MaxLocalpartLen is the longest localpart accepted, in bytes.
	MaxLocalpartLen = 64
	// MaxNodeNameLen is the longest node name accepted (a DNS name).
	MaxNodeNameLen = 253
	// DeviceIDLen is the length of every device id the node issues.
	DeviceIDLen = 18
	// MaxDisplayNameLen is the longest device display name accepted, in bytes.
	MaxDisplayNameLen = 128
)

// NodeName is the federation name of a node: a lowercase DNS name such as
// "ministry-a.example", proven by the SAN of the node's certificate.
type NodeName string

// ParseNodeName validates s as a node name. Names are lowercase DNS names of
// one or more labels; "localhost" is allowed for development nodes.
func ParseNodeName(s string) (NodeName, error) {
	if s == "" {
		return "", Errorf(KindInvalid, "node name is empty")
	}
	if len(s) > MaxNodeNameLen {
		return "", Errorf(KindInvalid, "node name is longer than %d bytes", MaxNodeNameLen)
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return "", Errorf(KindInvalid, "node name %q has an empty or over-long label", s)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", Errorf(KindInvalid, "node name %q has a label starting or ending with '-'", s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", Errorf(KindInvalid, "node name %q must be lowercase letters, digits, '-' and '.'", s)
			}
		}
	}
	return NodeName(s), nil
}

// String returns the name.
func (n NodeName) String() string { return string(n) }

// UserID names a user: localpart@node.
type UserID struct {
	Localpart string
	Node      NodeName
}

// ValidateLocalpart checks a localpart: 1 to MaxLocalpartLen bytes of
// lowercase letters, digits, '.', '_' and '-', starting with a letter or
// digit.
func ValidateLocalpart(s string) error {
	if s == "" {
		return Errorf(KindInvalid, "user localpart is empty")
	}
	if len(s) > MaxLocalpartLen {
		return Errorf(KindInvalid, "user localpart is longer than %d bytes", MaxLocalpartLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if i > 0 {
			ok = ok || c == '.' || c == '_' || c == '-'
		}
		if !ok {
			return Errorf(KindInvalid, "user localpart %q must be lowercase letters, digits, '.', '_' and '-', starting with a letter or digit", s)
		}
	}
	return nil
}

// ParseUserID parses "localpart@node". When s has no "@node" part and
// defaultNode is not empty, the user is taken to be on defaultNode.
func ParseUserID(s string, defaultNode NodeName) (UserID, error) {
	local, node, found := strings.Cut(s, "@")
	if !found {
		if defaultNode == "" {
			return UserID{}, Errorf(KindInvalid, "user %q must be localpart@node", s)
		}
		node = string(defaultNode)
	}
	if err := ValidateLocalpart(local); err != nil {
		return UserID{}, err
	}
	n, err := ParseNodeName(node)
	if err != nil {
		return UserID{}, err
	}
	return UserID{Localpart: local, Node: n}, nil
}

// String returns "localpart@node".
func (u UserID) String() string { return u.Localpart + "@" + string(u.Node) }

// IsZero reports whether u is the zero UserID.
func (u UserID) IsZero() bool { return u.Localpart == "" && u.Node == "" }

// DeviceID is the opaque id of one device (one login) of a user, issued by
// the user's node: "DV" followed by 16 base32 characters.
type DeviceID string

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewDeviceID returns a fresh random device id.
func NewDeviceID() DeviceID {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return DeviceID("DV" + idEncoding.EncodeToString(b[:]))
}

// ParseDeviceID validates the shape of a device id.
func ParseDeviceID(s string) (DeviceID, error) {
	if len(s) != DeviceIDLen || !strings.HasPrefix(s, "DV") {
		return "", Errorf(KindInvalid, "device id %q is malformed", truncate(s, 40))
	}
	// Check the alphabet by hand: base32 decoding skips '\r' and '\n'.
	for i := 2; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return "", Errorf(KindInvalid, "device id %q is malformed", truncate(s, 40))
		}
	}
	return DeviceID(s), nil
}

// String returns the id.
func (d DeviceID) String() string { return string(d) }

// ValidateDisplayName checks a device display name: at most
// MaxDisplayNameLen bytes of valid UTF-8 without control characters.
func ValidateDisplayName(s string) error {
	if len(s) > MaxDisplayNameLen {
		return Errorf(KindInvalid, "device display name is longer than %d bytes", MaxDisplayNameLen)
	}
	for _, r := range s {
		// Invalid UTF-8, C0 and C1 controls, and the bidirectional
		// overrides and isolates that can disguise text on screen.
		if r == utf8.RuneError || r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return Errorf(KindInvalid, "device display name has invalid, control or bidirectional-override characters")
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
