package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

func checkPreKey(what string, k valise.PreKey) error {
	if len(k.PublicKey) == 0 || len(k.PublicKey) > valise.MaxPublicKeyLen {
		return valise.Errorf(valise.KindInvalid, "%s public key must be 1 to %d bytes", what, valise.MaxPublicKeyLen)
	}
	if len(k.Signature) == 0 || len(k.Signature) > valise.MaxSignatureLen {
		return valise.Errorf(valise.KindInvalid, "%s signature must be 1 to %d bytes", what, valise.MaxSignatureLen)
	}
	return nil
}

// PublishKeys stores the caller device's keys and returns its one-time key
// stock.
func (n *Node) PublishKeys(ctx context.Context, c Caller, k storage.PublishKeys, hasSignedPreKey bool) (int, error) {
	if len(k.IdentityKey) > valise.MaxPublicKeyLen {
		return 0, valise.Errorf(valise.KindInvalid, "identity key must be at most %d bytes", valise.MaxPublicKeyLen)
	}
	if hasSignedPreKey {
		if err := checkPreKey("signed prekey", k.SignedPreKey); err != nil {
			return 0, err
		}
	}
	if len(k.OneTimeKeys) > n.cfg.MaxOneTimeKeysPerUpload {
		return 0, valise.Errorf(valise.KindInvalid, "at most %d one-time prekeys per publish", n.cfg.MaxOneTimeKeysPerUpload)
	}
	seen := make(map[uint32]bool, len(k.OneTimeKeys))
	for i, otk := range k.OneTimeKeys {
		if err := checkPreKey(fmt.Sprintf("one-time prekey %d", i), otk); err != nil {
			return 0, err
		}
		if seen[otk.KeyID] {
			return 0, valise.Errorf(valise.KindInvalid, "one-time prekey id %d appears twice", otk.KeyID)
		}
		seen[otk.KeyID] = true
	}
	count, err := n.store.PublishKeys(ctx, c.User, c.Device, k, n.cfg.MaxOneTimeKeysStored)
	switch {
	case errors.Is(err, storage.ErrConflict):
		return 0, valise.Errorf(valise.KindAlreadyExists, "identity key differs from the published one, or a one-time prekey id was used before")
	case errors.Is(err, storage.ErrPrecondition):
		if d, derr := n.store.GetDevice(ctx, c.User, c.Device); derr == nil && !d.HasKeys {
			return 0, valise.Errorf(valise.KindInvalid, "the first publish must carry the identity key and signed prekey")
		}
		return 0, valise.Errorf(valise.KindPrecondition, "the device would hold more than %d one-time prekeys", n.cfg.MaxOneTimeKeysStored)
	case err != nil:
		return 0, notFound(err, "device not found")
	}
	return count, nil
}

// CountOneTimeKeys returns the caller device's one-time key stock.
func (n *Node) CountOneTimeKeys(ctx context.Context, c Caller) (int, error) {
	count, err := n.store.CountOneTimeKeys(ctx, c.User, c.Device)
	return count, notFound(err, "device not found")
}

// GetDeviceKeys returns the published keys of a user's devices; for a
// user of another node, as that node signed them.
func (n *Node) GetDeviceKeys(ctx context.Context, c Caller, user string) (valise.UserID, []valise.DeviceKeys, error) {
	u, remote, err := n.remoteUser(user)
	if err != nil {
		return valise.UserID{}, nil, err
	}
	if remote != nil {
		if ok, d := n.remoteLookup.Allow(string(c.Device)); !ok {
			return valise.UserID{}, nil, valise.Exhausted(d, "too many key lookups on other nodes from this device")
		}
		keys, err := remote.DeviceKeys(ctx, u)
		return u, keys, err
	}
	keys, err := n.store.GetDeviceKeys(ctx, u.Localpart)
	return u, keys, err
}

// ClaimOneTimeKey hands out one prekey of a device to the caller; for a
// device of another node, claimed there on the caller's behalf.
func (n *Node) ClaimOneTimeKey(ctx context.Context, c Caller, user, device string) (valise.PreKey, bool, error) {
	u, remote, err := n.remoteUser(user)
	if err != nil {
		return valise.PreKey{}, false, err
	}
	id, err := valise.ParseDeviceID(device)
	if err != nil {
		return valise.PreKey{}, false, err
	}
	if remote != nil {
		// The per-device budget for other nodes comes first, so made-up
		// targets cost the caller, not the limiter's memory; the claim
		// limit then applies per target too, in a limiter of its own so
		// that remote claims can never crowd out local ones.
		if ok, d := n.remoteLookup.Allow(string(c.Device)); !ok {
			return valise.PreKey{}, false, valise.Exhausted(d, "too many key lookups on other nodes from this device")
		}
		if ok, d := n.remoteClaim.Allow(string(c.Device) + "|" + u.String() + "|" + string(id)); !ok {
			return valise.PreKey{}, false, valise.Exhausted(d, "too many one-time key claims for this device")
		}
		return remote.ClaimOneTimeKey(ctx, n.userID(c.User), c.Device, u, id)
	}
	local := u.Localpart
	// Only existing devices get a rate-limit bucket, so made-up device ids
	// cannot fill the limiter.
	if _, err := n.store.GetDevice(ctx, local, id); err != nil {
		return valise.PreKey{}, false, notFound(err, "device %s of %s not found or has no keys", id, n.userID(local))
	}
	if ok, d := n.claim.Allow(string(c.Device) + "|" + local + "|" + string(id)); !ok {
		return valise.PreKey{}, false, valise.Exhausted(d, "too many one-time key claims for this device")
	}
	k, fallback, err := n.store.ClaimOneTimeKey(ctx, local, id)
	if err != nil {
		return valise.PreKey{}, false, notFound(err, "device %s of %s not found or has no keys", id, n.userID(local))
	}
	return k, fallback, nil
}
