package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/client/e2ee"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// SendOptions tune Send.
type SendOptions struct {
	// AcceptChangedKeys sends to devices whose identity key changed since
	// first seen, pinning the new keys (with a WarnChangedKey warning).
	// Without it Send refuses with a *ChangedKeysError.
	AcceptChangedKeys bool
	// IdempotencyKey identifies the send to the node (1 to 128 bytes);
	// default 16 random bytes in hex. A send repeated with the same key
	// returns the first answer and stores nothing new.
	IdempotencyKey string
}

// SendResult says what Send did.
type SendResult struct {
	// MessageID is the message's id (the same in every envelope).
	MessageID string
	// IdempotencyKey is the key the send used.
	IdempotencyKey string
	// EnvelopeIDs are the node's envelope ids, one per device, in the
	// order of Devices ("user/device").
	EnvelopeIDs []string
	Devices     []string
	// Warnings are the trust warnings to show the user loudly.
	Warnings []Warning
}

// target is one device to seal to.
type target struct {
	user valise.UserID
	dev  dirDevice
}

// Send seals body for every device of user to and for the caller's own
// other devices, and stores the envelopes on the node in one
// SendEnvelopes call, repeated with the same idempotency key and
// envelopes after transient errors. It pins devices seen for the first
// time, refuses devices whose identity key changed unless
// opts.AcceptChangedKeys, verifies every prekey's signature, and appends
// the message to the history once the node has it.
func (c *Client) Send(ctx context.Context, to string, body []byte, opts SendOptions) (res SendResult, err error) {
	toU, err := c.parseUser(to)
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			// A device may be gone, or its keys replaced: whatever
			// failed, the next send asks the node again.
			c.forgetDirectories(toU, c.user)
		}
	}()
	payload, err := encodePayload(toU.String(), body)
	if err != nil {
		return res, err
	}
	res.IdempotencyKey = opts.IdempotencyKey
	if res.IdempotencyKey == "" {
		res.IdempotencyKey = randomHex(16)
	}
	if len(res.IdempotencyKey) > valise.MaxIdempotencyKeyLen {
		return res, fmt.Errorf("client: idempotency key longer than %d bytes", valise.MaxIdempotencyKeyLen)
	}

	targets, warnings, err := c.targets(ctx, toU, opts.AcceptChangedKeys)
	res.Warnings = warnings
	if err != nil {
		return res, err
	}
	if len(targets) > valise.DefaultMaxRecipients {
		return res, fmt.Errorf("client: %d devices to send to, more than the node's default limit of %d", len(targets), valise.DefaultMaxRecipients)
	}

	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return res, err
	}
	res.MessageID = messageID(id)
	now := c.cfg.Now().UTC().Truncate(time.Millisecond)
	var envs []*clientv1.OutgoingEnvelope
	for _, t := range targets {
		key, err := c.recipientKey(ctx, t)
		if err != nil {
			if errors.Is(err, errBadKeys) {
				res.Warnings = append(res.Warnings, Warning{Kind: WarnBadKeys, User: t.user.String(), Device: t.dev.ID, Err: err})
				continue
			}
			return res, err
		}
		m := e2ee.Message{
			ID:        id,
			Sender:    e2ee.Address{User: c.user.String(), Device: c.device},
			Recipient: e2ee.Address{User: t.user.String(), Device: t.dev.ID},
			Time:      now,
			Body:      payload,
		}
		ct, err := e2ee.Seal(c.identity, m, key)
		if err != nil {
			return res, fmt.Errorf("client: seal for %s/%s: %w", t.user, t.dev.ID, err)
		}
		envs = append(envs, &clientv1.OutgoingEnvelope{RecipientUser: t.user.String(), RecipientDeviceId: t.dev.ID, Ciphertext: ct})
		res.Devices = append(res.Devices, t.user.String()+"/"+t.dev.ID)
	}
	if len(envs) == 0 || !hasUser(envs, toU) {
		return res, fmt.Errorf("client: no device of %s has valid keys; nothing was sent", toU)
	}

	resp, err := retry(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.SendEnvelopesResponse, error) {
		return rpc.SendEnvelopes(ctx, &clientv1.SendEnvelopesRequest{IdempotencyKey: res.IdempotencyKey, Envelopes: envs})
	})
	if err != nil {
		return res, fmt.Errorf("client: send (idempotency key %s): %w", res.IdempotencyKey, err)
	}
	res.EnvelopeIDs = resp.GetEnvelopeIds()
	if len(res.EnvelopeIDs) != len(envs) {
		return res, fmt.Errorf("client: the node answered %d envelope ids for %d envelopes", len(res.EnvelopeIDs), len(envs))
	}
	sent := Message{ID: res.MessageID, From: c.user.String(), FromDevice: c.device, To: toU.String(), Time: now, Body: body, Received: c.cfg.Now().UTC()}
	if err := c.store.locked(true, func() error { return c.appendHistory(sent) }); err != nil {
		return res, fmt.Errorf("client: sent, but storing the message in the history failed: %w", err)
	}
	return res, nil
}

func hasUser(envs []*clientv1.OutgoingEnvelope, u valise.UserID) bool {
	for _, e := range envs {
		if e.GetRecipientUser() == u.String() {
			return true
		}
	}
	return false
}

// targets returns the devices to seal to, the recipient's and the
// caller's own other ones, after checking them against the pins.
//
// A cached directory (Config.DirectoryTTL) is used only while it agrees
// with the pins: when it shows a key other than a pinned one, or a
// device that is not pinned (the pins changed since it was fetched, by a
// Verify for instance), it is forgotten and the directory asked again, so
// that a key change is never reported nor accepted from cached data.
func (c *Client) targets(ctx context.Context, to valise.UserID, accept bool) ([]target, []Warning, error) {
	users := []valise.UserID{to}
	if to != c.user {
		users = append(users, c.user)
	}
	for attempt := 0; ; attempt++ {
		out, warnings, stale, err := c.checkTargets(ctx, users, accept)
		if len(stale) == 0 || attempt > 0 {
			return out, warnings, err
		}
		c.forgetDirectories(stale...)
	}
}

// checkTargets is one try of targets. Nothing is pinned and stale names
// the users to look up again when a cached directory conflicts with the
// pins.
func (c *Client) checkTargets(ctx context.Context, users []valise.UserID, accept bool) (out []target, warnings []Warning, stale []valise.UserID, err error) {
	to := users[0]
	devs := map[valise.UserID][]dirDevice{}
	cached := map[valise.UserID]bool{}
	for _, u := range users {
		d, fromCache, err := c.sendDirectory(ctx, u)
		if err != nil {
			return nil, nil, nil, err
		}
		cached[u] = fromCache
		for _, dev := range d {
			if u == c.user && dev.ID == c.device {
				continue
			}
			devs[u] = append(devs[u], dev)
		}
	}
	if len(devs[to]) == 0 {
		if to == c.user {
			return nil, nil, nil, fmt.Errorf("client: %s has no other device with keys to send to", to)
		}
		return nil, nil, nil, fmt.Errorf("client: %s has no device with keys (has the user logged in?)", to)
	}
	err = c.store.update(func(st *state, _ *secrets) error {
		for _, u := range users {
			if cached[u] && conflictsWithPins(st, u.String(), devs[u]) {
				stale = append(stale, u)
			}
		}
		if len(stale) > 0 {
			return errStaleDirectory // save nothing
		}
		var errs []error
		for _, u := range users {
			w, changed := applyPins(st, u.String(), identities(devs[u]), accept, c.cfg.Now())
			warnings = append(warnings, w...)
			if len(changed) > 0 {
				errs = append(errs, &ChangedKeysError{User: u.String(), Devices: changed})
			}
		}
		return errors.Join(errs...)
	})
	if len(stale) > 0 {
		return nil, nil, stale, err
	}
	if err != nil {
		return nil, warnings, nil, err
	}
	for _, u := range users {
		for _, d := range devs[u] {
			out = append(out, target{user: u, dev: d})
		}
	}
	return out, warnings, nil, nil
}

// errStaleDirectory aborts a state update in checkTargets: a cached
// directory conflicts with the pins.
var errStaleDirectory = errors.New("client: the cached key directory conflicts with the pins")

// conflictsWithPins reports whether a cached directory of user shows a
// device that is not pinned or a key other than the pinned one. Every
// device of a cached directory was pinned when it was fetched (a send
// that pinned nothing forgets it), so either means the pins changed since.
func conflictsWithPins(st *state, user string, devs []dirDevice) bool {
	for _, d := range devs {
		if p := st.Pins[user][d.ID]; p == nil || !bytes.Equal(p.IdentityKey, d.Identity) {
			return true
		}
	}
	return false
}

// recipientKey claims a one-time prekey of t's device, or takes its
// signed prekey when none is left or claims are rate limited, and checks
// the key's signature. A key that does not verify returns an error
// wrapping errBadKeys.
func (c *Client) recipientKey(ctx context.Context, t target) (e2ee.RecipientKey, error) {
	signed := t.dev.Signed
	if signed == nil {
		return e2ee.RecipientKey{}, fmt.Errorf("%w: %s/%s has no signed prekey", errBadKeys, t.user, t.dev.ID)
	}
	if err := e2ee.VerifyPreKey(t.dev.Identity, e2ee.Signed, signed.GetKeyId(), signed.GetPublicKey(), signed.GetSignature()); err != nil {
		return e2ee.RecipientKey{}, fmt.Errorf("%w: signed prekey of %s/%s: %w", errBadKeys, t.user, t.dev.ID, err)
	}
	fallback := e2ee.RecipientKey{Kind: e2ee.Signed, ID: signed.GetKeyId(), Public: signed.GetPublicKey()}
	if c.claimPaused(t) {
		// The node refused the last claim as rate limited and its retry
		// delay has not passed: it would refuse this one too.
		return fallback, nil
	}
	resp, err := call(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.ClaimOneTimeKeyResponse, error) {
		return rpc.ClaimOneTimeKey(ctx, &clientv1.ClaimOneTimeKeyRequest{User: t.user.String(), DeviceId: t.dev.ID})
	})
	switch {
	case status.Code(err) == codes.ResourceExhausted:
		// Claims are rate limited per device pair; the signed prekey is
		// the designed fallback.
		c.log.DebugContext(ctx, "one-time key claims limited; using the signed prekey", "user", t.user.String(), "device", t.dev.ID)
		c.pauseClaims(t, err)
		return fallback, nil
	case err != nil:
		return e2ee.RecipientKey{}, fmt.Errorf("client: claim a prekey of %s/%s: %w", t.user, t.dev.ID, err)
	}
	k := resp.GetKey()
	if resp.GetDeviceId() != t.dev.ID || k == nil {
		return e2ee.RecipientKey{}, fmt.Errorf("client: claim a prekey of %s/%s: the node answered for another device", t.user, t.dev.ID)
	}
	kind := e2ee.OneTime
	if resp.GetFallback() {
		kind = e2ee.Signed
	}
	if err := e2ee.VerifyPreKey(t.dev.Identity, kind, k.GetKeyId(), k.GetPublicKey(), k.GetSignature()); err != nil {
		return e2ee.RecipientKey{}, fmt.Errorf("%w: claimed prekey of %s/%s: %w", errBadKeys, t.user, t.dev.ID, err)
	}
	return e2ee.RecipientKey{Kind: kind, ID: k.GetKeyId(), Public: k.GetPublicKey()}, nil
}

// errBadKeys marks a device whose published keys do not verify.
var errBadKeys = errors.New("bad keys")

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
