package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/client/e2ee"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// ErrFingerprintMismatch is returned by Verify when the safety number
// given is not the one of the user's current devices.
var ErrFingerprintMismatch = errors.New("client: the safety number does not match the user's current devices")

// DeviceInfo describes one device of a user.
type DeviceInfo struct {
	ID string
	// Name and Created are known for the caller's own devices only.
	Name    string
	Created time.Time
	// HasKeys is false for an own device that has not published keys.
	HasKeys bool
	// IdentityKey is a short hex digest of the device's identity key.
	IdentityKey string
	// Trust is this device's trust in the key; the current device is
	// TrustVerified (or TrustChanged if the node shows another key).
	Trust Trust
	// Current is set for the device the Client is.
	Current bool
}

// parseUser parses a user; a bare localpart is taken to be on the
// device's node.
func (c *Client) parseUser(s string) (valise.UserID, error) {
	u, err := valise.ParseUserID(s, c.user.Node)
	if err != nil {
		return valise.UserID{}, fmt.Errorf("client: %w", err)
	}
	return u, nil
}

// dirDevice is one device as the node's key directory shows it.
type dirDevice struct {
	ID       string
	Identity []byte
	Signed   *clientv1.PreKey
}

// directory fetches the devices of user that have published keys.
func (c *Client) directory(ctx context.Context, user valise.UserID) ([]dirDevice, error) {
	resp, err := retry(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.GetDeviceKeysResponse, error) {
		return rpc.GetDeviceKeys(ctx, &clientv1.GetDeviceKeysRequest{User: user.String()})
	})
	if err != nil {
		return nil, fmt.Errorf("client: keys of %s: %w", user, err)
	}
	if got := resp.GetUser(); got != "" && got != user.String() {
		return nil, fmt.Errorf("client: keys of %s: the node answered for %s", user, got)
	}
	var out []dirDevice
	seen := map[string]bool{}
	for _, d := range resp.GetDevices() {
		if _, err := valise.ParseDeviceID(d.GetDeviceId()); err != nil || seen[d.GetDeviceId()] || len(d.GetIdentityKey()) != ed25519.PublicKeySize {
			c.log.WarnContext(ctx, "ignoring a malformed directory entry", "user", user.String())
			continue
		}
		seen[d.GetDeviceId()] = true
		out = append(out, dirDevice{ID: d.GetDeviceId(), Identity: d.GetIdentityKey(), Signed: d.GetSignedPrekey()})
	}
	return out, nil
}

// identities maps device id to identity key.
func identities(devs []dirDevice) map[string][]byte {
	m := make(map[string][]byte, len(devs))
	for _, d := range devs {
		m[d.ID] = d.Identity
	}
	return m
}

// Devices lists user's devices with keys and the trust in each ("" for
// the caller's own user, whose devices without keys are listed too, with
// their names). It changes no pin.
func (c *Client) Devices(ctx context.Context, user string) ([]DeviceInfo, error) {
	u := c.user
	if user != "" {
		var err error
		if u, err = c.parseUser(user); err != nil {
			return nil, err
		}
	}
	devs, err := c.directory(ctx, u)
	if err != nil {
		return nil, err
	}
	var out []DeviceInfo
	byID := map[string]int{}
	err = c.store.view(func(st *state, _ *secrets) error {
		for _, d := range devs {
			info := DeviceInfo{ID: d.ID, HasKeys: true, IdentityKey: keyDigest(d.Identity), Trust: trustOf(st, u.String(), d.ID, d.Identity)}
			if u == c.user && d.ID == c.device {
				info.Current = true
				info.Trust = TrustVerified
				if string(d.Identity) != string(c.identity.Public()) {
					info.Trust = TrustChanged
				}
			}
			byID[d.ID] = len(out)
			out = append(out, info)
		}
		return nil
	})
	if err != nil || u != c.user {
		return out, err
	}
	own, err := c.listOwnDevices(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range own {
		i, ok := byID[d.GetDeviceId()]
		if !ok {
			out = append(out, DeviceInfo{ID: d.GetDeviceId(), Current: d.GetDeviceId() == c.device})
			i = len(out) - 1
		}
		out[i].Name = d.GetDisplayName()
		out[i].Created = d.GetCreatedTime().AsTime()
	}
	return out, nil
}

// listOwnDevices pages through ListDevices.
func (c *Client) listOwnDevices(ctx context.Context) ([]*clientv1.Device, error) {
	var out []*clientv1.Device
	token := ""
	for range 1000 {
		resp, err := retry(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.ListDevicesResponse, error) {
			return rpc.ListDevices(ctx, &clientv1.ListDevicesRequest{PageSize: 1000, PageToken: token})
		})
		if err != nil {
			return nil, fmt.Errorf("client: list devices: %w", err)
		}
		out = append(out, resp.GetDevices()...)
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
	return out, nil
}

// Fingerprint returns the safety number of user's current devices (with
// keys), to compare out of band with what the user's own client shows.
func (c *Client) Fingerprint(ctx context.Context, user string) (string, error) {
	u, err := c.parseUser(user)
	if err != nil {
		return "", err
	}
	devs, err := c.directory(ctx, u)
	if err != nil {
		return "", err
	}
	if len(devs) == 0 {
		return "", fmt.Errorf("client: %s has no devices with keys", u)
	}
	return e2ee.Fingerprint(u.String(), identities(devs)), nil
}

// Verify checks fingerprint (white space does not matter) against the safety
// number of user's current devices and, when it matches, marks exactly
// those devices verified (accepting their current keys) and forgets the
// user's other pins. A mismatch returns ErrFingerprintMismatch and changes
// nothing.
func (c *Client) Verify(ctx context.Context, user, fingerprint string) error {
	u, err := c.parseUser(user)
	if err != nil {
		return err
	}
	devs, err := c.directory(ctx, u)
	if err != nil {
		return err
	}
	if len(devs) == 0 {
		return fmt.Errorf("client: %s has no devices with keys", u)
	}
	keys := identities(devs)
	if !e2ee.EqualFingerprints(e2ee.Fingerprint(u.String(), keys), fingerprint) {
		return ErrFingerprintMismatch
	}
	if u == c.user {
		delete(keys, c.device)
	}
	// A directory Send cached before may show keys older than those just
	// verified: it must not be checked against the new pins.
	defer c.forgetDirectories(u)
	return c.store.update(func(st *state, _ *secrets) error {
		verifyPins(st, u.String(), keys, c.cfg.Now())
		return nil
	})
}
