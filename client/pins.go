package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Trust is what the device knows of another device's identity key.
type Trust int

// Trust levels.
const (
	// TrustNew: the device was never seen; it is pinned on first use.
	TrustNew Trust = iota
	// TrustPinned: the key is the one first seen (trust on first use).
	TrustPinned
	// TrustVerified: the key was verified by comparing safety numbers.
	TrustVerified
	// TrustChanged: the key differs from the pinned one. Sending to the
	// device is refused until the change is accepted or verified.
	TrustChanged
)

var trustNames = [...]string{"new", "pinned", "verified", "CHANGED"}

// String returns "new", "pinned", "verified" or "CHANGED".
func (t Trust) String() string {
	if t >= 0 && int(t) < len(trustNames) {
		return trustNames[t]
	}
	return fmt.Sprintf("trust(%d)", int(t))
}

// ErrIdentityChanged is wrapped by the errors of Send and Receive when a
// known device shows another identity key than the pinned one.
var ErrIdentityChanged = errors.New("client: a device's identity key changed")

// ChangedKeysError names the devices whose identity key changed; Send
// returns it unless SendOptions.AcceptChangedKeys.
type ChangedKeysError struct {
	User    string
	Devices []string
}

func (e *ChangedKeysError) Error() string {
	return fmt.Sprintf("client: the identity key of %s device(s) %s changed since first seen; this may be an attack. Compare safety numbers (fingerprint) and verify, or accept the change explicitly",
		e.User, strings.Join(e.Devices, ", "))
}

// Is makes errors.Is(err, ErrIdentityChanged) hold.
func (e *ChangedKeysError) Is(target error) bool { return target == ErrIdentityChanged }

// keyDigest is a short hex digest of an identity key for display.
func keyDigest(key []byte) string {
	if len(key) == 0 {
		return ""
	}
	sum := sha256.Sum256(key)
	h := hex.EncodeToString(sum[:8])
	return h[0:4] + " " + h[4:8] + " " + h[8:12] + " " + h[12:16]
}

// trustOf returns the trust in user's device showing key.
func trustOf(st *state, user, device string, key []byte) Trust {
	p := st.Pins[user][device]
	switch {
	case p == nil:
		return TrustNew
	case !bytes.Equal(p.IdentityKey, key):
		return TrustChanged
	case p.Verified:
		return TrustVerified
	}
	return TrustPinned
}

// userVerified reports whether any pinned device of user was verified.
func userVerified(st *state, user string) bool {
	for _, p := range st.Pins[user] {
		if p.Verified {
			return true
		}
	}
	return false
}

// pinKey pins key for user's device, unverified.
func pinKey(st *state, user, device string, key []byte, now time.Time) {
	if st.Pins == nil {
		st.Pins = map[string]map[string]*pin{}
	}
	if st.Pins[user] == nil {
		st.Pins[user] = map[string]*pin{}
	}
	st.Pins[user][device] = &pin{IdentityKey: bytes.Clone(key), FirstSeen: now.UTC()}
}

// applyPins checks the identity keys a directory shows for user's devices
// (device id → key) against the pins: new devices are pinned (with a
// warning when the user was verified); changed keys are re-pinned when
// accept is set (with a warning), else returned in changed and left
// alone. The caller must not save st when changed is not empty and accept
// is false.
func applyPins(st *state, user string, keys map[string][]byte, accept bool, now time.Time) (warnings []Warning, changed []string) {
	verified := userVerified(st, user)
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		key := keys[id]
		switch trustOf(st, user, id, key) {
		case TrustNew:
			pinKey(st, user, id, key, now)
			if verified {
				warnings = append(warnings, Warning{Kind: WarnNewDevice, User: user, Device: id})
			}
		case TrustChanged:
			if !accept {
				changed = append(changed, id)
				continue
			}
			pinKey(st, user, id, key, now)
			warnings = append(warnings, Warning{Kind: WarnChangedKey, User: user, Device: id, Err: errors.New("accepted")})
		}
	}
	return warnings, changed
}

// verifyPins marks exactly the devices in keys as user's verified devices
// and forgets the user's other pins.
func verifyPins(st *state, user string, keys map[string][]byte, now time.Time) {
	old := st.Pins[user]
	st.Pins[user] = map[string]*pin{}
	for id, key := range keys {
		p := &pin{IdentityKey: bytes.Clone(key), Verified: true, FirstSeen: now.UTC()}
		if o := old[id]; o != nil && bytes.Equal(o.IdentityKey, key) {
			p.FirstSeen = o.FirstSeen
		}
		st.Pins[user][id] = p
	}
}
