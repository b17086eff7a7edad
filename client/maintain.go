package client

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise/client/e2ee"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// maxOneTimeSecrets bounds the one-time private keys kept: those on the
// node plus those claimed by senders whose envelopes have not arrived
// yet. Past it the lowest ids go first (the node hands out the lowest
// first, so they are the stalest).
const maxOneTimeSecrets = 2 * maxOneTimeKeysStored

// newSignedPreKey generates a signed prekey with a fresh id of sec.
func newSignedPreKey(identity *e2ee.IdentityKey, sec *secrets, now time.Time) (*signedPreKey, error) {
	id := sec.newPreKeyID()
	pk, err := e2ee.NewPreKey(identity, e2ee.Signed, id)
	if err != nil {
		return nil, fmt.Errorf("client: signed prekey: %w", err)
	}
	return &signedPreKey{ID: id, Private: pk.Private, Public: pk.Public, Signature: pk.Signature, Created: now.UTC()}, nil
}

// Maintain keeps the device's keys on the node fresh: it publishes the
// signed prekey if the node does not have it yet, replaces it when it is
// older than Config.SignedPreKeyRotation (the old one keeps opening
// envelopes for Config.SignedPreKeyGrace, then is forgotten), and tops the
// one-time prekeys up to Config.OneTimeKeyTarget when fewer than half are
// left. Private keys are saved before their public halves are published.
// Open runs it; long-running clients call it now and then (say hourly).
func (c *Client) Maintain(ctx context.Context) error {
	if err := c.maintainSignedPreKey(ctx); err != nil {
		return err
	}
	return c.topUpOneTimeKeys(ctx)
}

func (c *Client) maintainSignedPreKey(ctx context.Context) error {
	var pub *clientv1.PreKey
	err := c.store.update(func(st *state, sec *secrets) error {
		now := c.cfg.Now().UTC()
		cur := sec.current()
		if cur == nil || now.Sub(cur.Created) >= c.cfg.SignedPreKeyRotation {
			next, err := newSignedPreKey(c.identity, sec, now)
			if err != nil {
				return err
			}
			if cur != nil {
				cur.Retired = now
				c.log.InfoContext(ctx, "rotating the signed prekey", "old", cur.ID, "new", next.ID)
			}
			sec.SignedPreKeys = append(sec.SignedPreKeys, next)
			cur = next
		}
		sec.SignedPreKeys = slices.DeleteFunc(sec.SignedPreKeys, func(k *signedPreKey) bool {
			if !k.Retired.IsZero() && now.Sub(k.Retired) > c.cfg.SignedPreKeyGrace {
				clear(k.Private) // out of sec, so out of reach of its wipe
				return true
			}
			return false
		})
		if !cur.Published {
			pub = &clientv1.PreKey{KeyId: cur.ID, PublicKey: cur.Public, Signature: cur.Signature}
		}
		return nil
	})
	if err != nil || pub == nil {
		return err
	}
	_, err = c.publish(ctx, pub, nil)
	if err != nil {
		return fmt.Errorf("client: publish the signed prekey: %w", err)
	}
	return c.store.update(func(st *state, sec *secrets) error {
		for _, k := range sec.SignedPreKeys {
			if k.ID == pub.KeyId {
				k.Published = true
			}
		}
		return nil
	})
}

func (c *Client) topUpOneTimeKeys(ctx context.Context) error {
	resp, err := call(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.CountOneTimeKeysResponse, error) {
		return rpc.CountOneTimeKeys(ctx, &clientv1.CountOneTimeKeysRequest{})
	})
	if err != nil {
		return fmt.Errorf("client: count one-time prekeys: %w", err)
	}
	count := int(resp.GetOneTimeKeyCount())
	target := c.cfg.OneTimeKeyTarget
	if count*2 >= target {
		return nil
	}
	need := min(target, maxOneTimeKeysStored) - count
	for need > 0 {
		n := min(need, maxOneTimeKeysPerUpload)
		var batch []*clientv1.PreKey
		err := c.store.update(func(st *state, sec *secrets) error {
			batch = batch[:0]
			for range n {
				id := sec.newPreKeyID()
				pk, err := e2ee.NewPreKey(c.identity, e2ee.OneTime, id)
				if err != nil {
					return fmt.Errorf("client: one-time prekey: %w", err)
				}
				sec.OneTimeKeys[id] = pk.Private
				batch = append(batch, &clientv1.PreKey{KeyId: id, PublicKey: pk.Public, Signature: pk.Signature})
			}
			pruneOneTimeKeys(sec, maxOneTimeSecrets)
			return nil
		})
		if err != nil {
			return err
		}
		got, err := c.publish(ctx, nil, batch)
		if status.Code(err) == codes.FailedPrecondition {
			// The node holds fewer than we assumed; what it has is enough.
			c.log.InfoContext(ctx, "the node's one-time prekey stock is full", "count", count)
			return nil
		}
		if err != nil {
			return fmt.Errorf("client: publish one-time prekeys: %w", err)
		}
		c.log.DebugContext(ctx, "published one-time prekeys", "added", n, "stock", got)
		need -= n
	}
	return nil
}

// pruneOneTimeKeys keeps the max highest-numbered one-time keys.
func pruneOneTimeKeys(sec *secrets, max int) {
	if len(sec.OneTimeKeys) <= max {
		return
	}
	ids := make([]uint32, 0, len(sec.OneTimeKeys))
	for id := range sec.OneTimeKeys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids[:len(ids)-max] {
		clear(sec.OneTimeKeys[id])
		delete(sec.OneTimeKeys, id)
	}
}

// publish sends the identity key with a signed prekey and/or one-time
// prekeys, and returns the node's one-time key stock.
func (c *Client) publish(ctx context.Context, signed *clientv1.PreKey, otks []*clientv1.PreKey) (uint32, error) {
	resp, err := call(ctx, c, func(ctx context.Context, rpc clientv1.ClientServiceClient) (*clientv1.PublishDeviceKeysResponse, error) {
		return rpc.PublishDeviceKeys(ctx, &clientv1.PublishDeviceKeysRequest{
			IdentityKey:    c.identity.Public(),
			SignedPrekey:   signed,
			OneTimePrekeys: otks,
		})
	})
	if status.Code(err) == codes.AlreadyExists && signed != nil {
		return 0, fmt.Errorf("the node holds another identity key for this device, or the key id was used before: %w", err)
	}
	return resp.GetOneTimeKeyCount(), err
}
