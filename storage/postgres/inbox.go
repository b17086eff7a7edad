package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// CommitBatch applies every op of b in one transaction and commits it
// durably before it returns. It takes two round trips inside the
// transaction, however many ops b holds: the first claims the
// idempotency keys, locks the recipient devices (in one global order, so
// concurrent batches do not deadlock) and applies the acks; the second
// writes the inbox rows and cursors that the sends decided in memory, and
// notifies an EventInbox for every device that got envelopes (see
// ListenEvents). Envelopes for other nodes take one more statement in the
// second round trip, which appends them to the outbox (see insertOutbox);
// their recipients are neither checked nor locked.
//
// Acks are applied before sends, so an ack never deletes an envelope of
// the same batch. A send with an empty IdempotencyKey is never a replay.
// A send that cannot be delivered (an unknown recipient user or device,
// KindNotFound; a deactivated recipient, KindPermission) writes nothing,
// not even its idempotency record. If CommitBatch returns an error,
// nothing was committed.
func (s *Store) CommitBatch(ctx context.Context, b *storage.Batch) (*storage.BatchResult, error) {
	if b == nil || len(b.Sends) == 0 && len(b.Acks) == 0 {
		return &storage.BatchResult{}, nil
	}
	now := s.timestamp()
	var res *storage.BatchResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		res, err = commitBatch(ctx, tx, b, now, s.origin)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: commit batch: %w", err)
	}
	return res, nil
}

// ReadInbox returns up to limit envelopes of the device with cursor >
// after, in cursor order. The Recipient of each envelope carries the
// localpart only: the store does not know its node's name. A
// delivery-failure notice comes back with Failure set and no sender or
// ciphertext.
func (s *Store) ReadInbox(ctx context.Context, user string, device valise.DeviceID, after uint64, limit int) ([]valise.Envelope, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT seq, kind, envelope_id, sender_localpart, sender_node, sender_device, server_time, ciphertext
		FROM inbox WHERE user_localpart = $1 AND device_id = $2 AND seq > $3
		ORDER BY seq LIMIT $4`, user, string(device), clamp(after), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: read inbox: %w", err)
	}
	envs, err := pgx.AppendRows([]valise.Envelope(nil), rows, func(row pgx.CollectableRow) (valise.Envelope, error) {
		e := valise.Envelope{Recipient: valise.UserID{Localpart: user}, RecipientDevice: device}
		var seq int64
		var kind int16
		var id, node, senderDevice string
		if err := row.Scan(&seq, &kind, &id, &e.Sender.Localpart, &node, &senderDevice, &e.ServerTime, &e.Ciphertext); err != nil {
			return e, err
		}
		e.Cursor, e.ID, e.Sender.Node = uint64(seq), valise.EnvelopeID(id), valise.NodeName(node)
		e.SenderDevice, e.ServerTime = valise.DeviceID(senderDevice), e.ServerTime.UTC()
		switch kind {
		case storage.KindEnvelope:
		case storage.KindDeliveryFailure:
			f, err := storage.DecodeFailure(e.Ciphertext)
			if err != nil {
				return e, fmt.Errorf("cursor %d: %w", seq, err)
			}
			e.Failure, e.Ciphertext = f, nil
			e.Sender, e.SenderDevice = valise.UserID{}, ""
		default:
			return e, fmt.Errorf("cursor %d: unknown inbox row kind %d", seq, kind)
		}
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: read inbox: %w", err)
	}
	return envs, nil
}

// InboxDepth returns how many envelopes wait in all inboxes.
func (s *Store) InboxDepth(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM inbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: inbox depth: %w", err)
	}
	return n, nil
}
