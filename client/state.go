package client

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// stateVersion is the version of state.json and of the secrets.
const stateVersion = 1

// state is the public part of a device's state, kept in state.json.
type state struct {
	Version    int    `json:"version"`
	Server     string `json:"server,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	// CAPEM are the CAs trusted for the node, saved at login.
	CAPEM string `json:"ca_pem,omitempty"`
	User  string `json:"user,omitempty"`
	// Device is the logged-in device; empty after a logout.
	Device string `json:"device,omitempty"`
	// Encrypted says the secrets are sealed with a passphrase.
	Encrypted bool `json:"secrets_encrypted,omitempty"`
	// Cursor is the inbox position up to which every envelope has been
	// handled (stored in the history or rejected).
	Cursor uint64 `json:"cursor,omitempty"`
	// Acked is the highest cursor acknowledged to the node.
	Acked uint64 `json:"acked,omitempty"`
	// Pins are the identity keys seen: user → device → pin.
	Pins map[string]map[string]*pin `json:"pins,omitempty"`
}

// pin is one device's identity key as first seen (or last accepted).
type pin struct {
	IdentityKey []byte    `json:"identity_key"`
	Verified    bool      `json:"verified,omitempty"`
	FirstSeen   time.Time `json:"first_seen"`
}

// secrets is the private part, in secrets.json or sealed in secrets.enc.
type secrets struct {
	Version      int    `json:"version"`
	AccessToken  string `json:"access_token"`
	IdentitySeed []byte `json:"identity_seed"`
	// NextPreKeyID is the next prekey id to use; ids are never reused (the
	// node refuses a one-time key id used before).
	NextPreKeyID uint32 `json:"next_prekey_id"`
	// SignedPreKeys holds the current signed prekey (Retired zero) and the
	// replaced ones still in their grace period.
	SignedPreKeys []*signedPreKey `json:"signed_prekeys"`
	// OneTimeKeys maps a one-time prekey id to its private key.
	OneTimeKeys map[uint32][]byte `json:"one_time_keys"`
}

// signedPreKey is one signed prekey with its life cycle.
type signedPreKey struct {
	ID        uint32    `json:"id"`
	Private   []byte    `json:"private"`
	Public    []byte    `json:"public"`
	Signature []byte    `json:"signature"`
	Created   time.Time `json:"created"`
	Retired   time.Time `json:"retired,omitzero"`
	// Published is set once the node confirmed it holds this key.
	Published bool `json:"published,omitempty"`
}

// String never shows a secret.
func (s *secrets) String() string {
	return fmt.Sprintf("secrets{token:redacted identity:redacted signed_prekeys:%d one_time_keys:%d}", len(s.SignedPreKeys), len(s.OneTimeKeys))
}

// LogValue never shows a secret.
func (s *secrets) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("signed_prekeys", len(s.SignedPreKeys)), slog.Int("one_time_keys", len(s.OneTimeKeys)))
}

// wipe zeroes the private keys held in s.
func (s *secrets) wipe() {
	if s == nil {
		return
	}
	clear(s.IdentitySeed)
	for _, k := range s.SignedPreKeys {
		clear(k.Private)
	}
	for _, k := range s.OneTimeKeys {
		clear(k)
	}
}

// current returns the current signed prekey, or nil.
func (s *secrets) current() *signedPreKey {
	for _, k := range s.SignedPreKeys {
		if k.Retired.IsZero() {
			return k
		}
	}
	return nil
}

// newPreKeyID returns a fresh prekey id.
func (s *secrets) newPreKeyID() uint32 {
	if s.NextPreKeyID == 0 {
		s.NextPreKeyID = 1
	}
	id := s.NextPreKeyID
	s.NextPreKeyID++
	return id
}

func decodeState(b []byte) (*state, error) {
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("client: state.json: %w", err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("client: state.json has version %d, want %d", st.Version, stateVersion)
	}
	if st.Pins == nil {
		st.Pins = map[string]map[string]*pin{}
	}
	return &st, nil
}

func decodeSecrets(b []byte) (*secrets, error) {
	var sec secrets
	if err := json.Unmarshal(b, &sec); err != nil {
		// The error of encoding/json may quote the input: keep it out.
		return nil, fmt.Errorf("client: the secrets are not valid JSON")
	}
	if sec.Version != stateVersion {
		return nil, fmt.Errorf("client: the secrets have version %d, want %d", sec.Version, stateVersion)
	}
	if sec.OneTimeKeys == nil {
		sec.OneTimeKeys = map[uint32][]byte{}
	}
	return &sec, nil
}
