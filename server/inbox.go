package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/groupcommit"
)

// OutgoingEnvelope is one envelope of a send as the client gave it.
type OutgoingEnvelope struct {
	RecipientUser   string
	RecipientDevice string
	Ciphertext      []byte
}

// Send validates a send, commits it through the group-commit writer and
// wakes the recipients' streams. All envelopes commit or none.
func (n *Node) Send(ctx context.Context, c Caller, idempotencyKey string, envs []OutgoingEnvelope) ([]valise.EnvelopeID, error) {
	if idempotencyKey == "" || len(idempotencyKey) > valise.MaxIdempotencyKeyLen {
		return nil, valise.Errorf(valise.KindInvalid, "idempotency key must be 1 to %d bytes", valise.MaxIdempotencyKeyLen)
	}
	if len(envs) == 0 {
		return nil, valise.Errorf(valise.KindInvalid, "no envelopes to send")
	}
	if len(envs) > n.cfg.MaxRecipients {
		return nil, valise.Errorf(valise.KindInvalid, "at most %d envelopes per send, got %d", n.cfg.MaxRecipients, len(envs))
	}
	// Stored times have microsecond precision; envelopes pushed to open
	// streams from memory carry the same time as when read back.
	now := n.now().UTC().Truncate(time.Microsecond)
	op := &storage.SendOp{
		Sender:         n.userID(c.User),
		SenderDevice:   c.Device,
		IdempotencyKey: idempotencyKey,
		ServerTime:     now,
		ExpireTime:     now.Add(n.cfg.OutboxTTL),
		Envelopes:      make([]storage.NewEnvelope, len(envs)),
	}
	for i, e := range envs {
		if len(e.Ciphertext) == 0 || len(e.Ciphertext) > n.cfg.MaxCiphertextBytes {
			return nil, valise.Errorf(valise.KindInvalid, "envelope %d: ciphertext must be 1 to %d bytes, got %d", i, n.cfg.MaxCiphertextBytes, len(e.Ciphertext))
		}
		u, remote, err := n.remoteUser(e.RecipientUser)
		if err != nil {
			return nil, fmt.Errorf("envelope %d: %w", i, err)
		}
		dev, err := valise.ParseDeviceID(e.RecipientDevice)
		if err != nil {
			return nil, fmt.Errorf("envelope %d: %w", i, err)
		}
		env := storage.NewEnvelope{ID: valise.NewEnvelopeID(now), Recipient: u.Localpart, RecipientDevice: dev, Ciphertext: e.Ciphertext}
		if remote != nil {
			env.RecipientNode = u.Node
		}
		op.Envelopes[i] = env
	}
	if ok, d := n.send.Allow(string(c.Device)); !ok {
		return nil, valise.Exhausted(d, "this device sends too fast")
	}
	// The writer wakes the recipients' streams after the commit (see
	// Node.committed), also when ctx ends while the send is committing.
	res, err := n.writer.Send(ctx, op)
	if errors.Is(err, groupcommit.ErrClosed) {
		return nil, errShuttingDown()
	}
	if err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return res.IDs, nil
}

// inboxPage is how many envelopes a stream reads from storage at a time.
const inboxPage = 100

// StreamInbox calls deliver for every envelope of the caller's inbox after
// cursor, then for each new one as it is committed, until ctx ends or the
// device is revoked.
func (n *Node) StreamInbox(ctx context.Context, c Caller, after uint64, deliver func(valise.Envelope) error) error {
	sub, unsubscribe, ok := n.hub.trySubscribe(c.User, c.Device, n.cfg.MaxStreamsPerDevice)
	defer unsubscribe()
	if !ok {
		return valise.Exhausted(time.Second, "this device already has %d inbox streams open", n.cfg.MaxStreamsPerDevice)
	}
	// The token was checked before the subscription existed: a revocation
	// committed in between closed no doorbell of this stream. Check again
	// now that any later revocation will.
	if _, err := n.store.GetDevice(ctx, c.User, c.Device); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return valise.Errorf(valise.KindUnauthenticated, "device revoked")
		}
		return fmt.Errorf("stream inbox: %w", err)
	}
	for {
		// Stop between pages of a long backlog if the stream must end, and
		// take a pending wake-up: the read below covers it.
		if err := n.streamEnd(ctx, sub); err != nil {
			return err
		}
		select {
		case <-sub.wake:
		default:
		}
		// Envelopes pushed since subscribing are either in the page read
		// below or newer; take discards those the read covered.
		sub.take(after)
		page, err := n.store.ReadInbox(ctx, c.User, c.Device, after, inboxPage)
		if err != nil {
			return fmt.Errorf("stream inbox: %w", err)
		}
		if err := n.deliverAll(page, &after, deliver); err != nil {
			return err
		}
		if len(page) == inboxPage {
			continue
		}
		// Caught up: from now on, deliver what commits push, straight
		// from memory, until a push is missing (see subscription.take).
		for {
			if err := n.waitStream(ctx, sub); err != nil {
				return err
			}
			pushed, ok := sub.take(after)
			if !ok {
				break
			}
			if err := n.deliverAll(pushed, &after, deliver); err != nil {
				return err
			}
		}
	}
}

// deliverAll delivers envs in order, advancing *after past each one.
func (n *Node) deliverAll(envs []valise.Envelope, after *uint64, deliver func(valise.Envelope) error) error {
	for _, e := range envs {
		if err := deliver(e); err != nil {
			return err
		}
		*after = e.Cursor
	}
	n.metrics.envelopesDeliver.Add(float64(len(envs)))
	return nil
}

// streamEnd returns why a stream must end now, if it must: the device was
// revoked, the node is stopping, or the client left.
func (n *Node) streamEnd(ctx context.Context, sub *subscription) error {
	select {
	case <-sub.revoked:
		return valise.Errorf(valise.KindUnauthenticated, "device revoked")
	case <-n.stopping:
		return errShuttingDown()
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}

// waitStream blocks until sub is woken or the stream must end, and returns
// streamEnd's answer.
func (n *Node) waitStream(ctx context.Context, sub *subscription) error {
	select {
	case <-sub.wake:
	case <-sub.revoked:
	case <-n.stopping:
	case <-ctx.Done():
	}
	return n.streamEnd(ctx, sub)
}

func errShuttingDown() error {
	return valise.Errorf(valise.KindUnavailable, "node is shutting down; retry shortly (a send with the same idempotency key, a stream from the last cursor)")
}

// Ack deletes the caller's envelopes up to cursor.
func (n *Node) Ack(ctx context.Context, c Caller, cursor uint64) error {
	if cursor == 0 {
		return valise.Errorf(valise.KindInvalid, "cursor must be at least 1")
	}
	_, err := n.writer.Ack(ctx, &storage.AckOp{User: c.User, Device: c.Device, Cursor: cursor})
	if errors.Is(err, groupcommit.ErrClosed) {
		return errShuttingDown()
	}
	if err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	return nil
}
