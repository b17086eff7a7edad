package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// deviceKey names a device inside a batch.
type deviceKey struct {
	user   string
	device valise.DeviceID
}

// batchState caches, for one write transaction, what it learned of
// recipients and the next cursor of each device it wrote to. CommitBatch,
// FinishOutbox and ReceiveTransaction append to inboxes through it.
type batchState struct {
	ctx     context.Context
	tx      *sql.Tx
	active  map[string]*bool // nil: no such user
	next    map[deviceKey]uint64
	missing map[deviceKey]bool
	insert  *sql.Stmt // prepared by the first appendInbox
	queue   *sql.Stmt // prepared by the first enqueue
}

func newBatchState(ctx context.Context, tx *sql.Tx) *batchState {
	return &batchState{ctx: ctx, tx: tx, active: map[string]*bool{}, next: map[deviceKey]uint64{}, missing: map[deviceKey]bool{}}
}

// close closes the statements st prepared.
func (st *batchState) close() {
	for _, stmt := range []*sql.Stmt{st.insert, st.queue} {
		if stmt != nil {
			stmt.Close()
		}
	}
}

// inboxRow is one row to append to a device's inbox.
type inboxRow struct {
	id           valise.EnvelopeID
	sender       valise.UserID
	senderDevice valise.DeviceID
	serverTime   int64
	ciphertext   []byte
	kind         int
}

// appendInbox appends r to the inbox of a device that check accepted, at
// the device's next cursor.
func (st *batchState) appendInbox(user string, device valise.DeviceID, r inboxRow) (storage.Delivery, error) {
	if st.insert == nil {
		ins, err := st.tx.PrepareContext(st.ctx, `INSERT INTO inbox (user_localpart, device_id, cursor, envelope_id,
			sender_localpart, sender_node, sender_device, server_time, ciphertext, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return storage.Delivery{}, err
		}
		st.insert = ins
	}
	dk := deviceKey{user, device}
	cursor := st.next[dk]
	st.next[dk] = cursor + 1
	if _, err := st.insert.ExecContext(st.ctx, user, device, int64(cursor), r.id, r.sender.Localpart, string(r.sender.Node),
		r.senderDevice, r.serverTime, nonNil(r.ciphertext), r.kind); err != nil {
		return storage.Delivery{}, translate(err)
	}
	return storage.Delivery{User: user, Device: device, Cursor: cursor}, nil
}

// enqueue appends one envelope of op to the outbox of its RecipientNode.
func (st *batchState) enqueue(op *storage.SendOp, e *storage.NewEnvelope, serverTime int64) error {
	if st.queue == nil {
		q, err := st.tx.PrepareContext(st.ctx, `INSERT INTO outbox (destination, envelope_id, sender_localpart, sender_device,
			recipient_localpart, recipient_device, server_time, expire_time, ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		st.queue = q
	}
	_, err := st.queue.ExecContext(st.ctx, string(e.RecipientNode), e.ID, op.Sender.Localpart, op.SenderDevice,
		e.Recipient, e.RecipientDevice, serverTime, toDB(op.ExpireTime), nonNil(e.Ciphertext))
	return translate(err)
}

// flush records the next cursor of every device st appended to.
func (st *batchState) flush() error {
	for dk, next := range st.next {
		if _, err := st.tx.ExecContext(st.ctx, `UPDATE devices SET next_cursor = ? WHERE user_localpart = ? AND device_id = ?`,
			int64(next), dk.user, dk.device); err != nil {
			return err
		}
	}
	return nil
}

// CommitBatch applies every op of b in one transaction. See storage.Inboxes.
func (s *Store) CommitBatch(ctx context.Context, b *storage.Batch) (*storage.BatchResult, error) {
	res := &storage.BatchResult{Sends: make([]storage.SendResult, len(b.Sends)), Acks: make([]int, len(b.Acks))}
	err := s.write(ctx, "commit batch", func(tx *sql.Tx) error {
		st := newBatchState(ctx, tx)
		defer st.close()
		// Acks first: they see only what earlier commits stored, never the
		// envelopes of this batch, which no device has seen yet.
		for i, a := range b.Acks {
			cursor := int64(min(a.Cursor, math.MaxInt64))
			r, err := tx.ExecContext(ctx, `DELETE FROM inbox WHERE user_localpart = ? AND device_id = ? AND cursor <= ?`,
				a.User, a.Device, cursor)
			if err != nil {
				return fmt.Errorf("ack %d: %w", i, err)
			}
			n, err := r.RowsAffected()
			if err != nil {
				return fmt.Errorf("ack %d: %w", i, err)
			}
			res.Acks[i] = int(n)
		}
		for i := range b.Sends {
			r, err := st.send(&b.Sends[i])
			if err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
			res.Sends[i] = r
		}
		return st.flush()
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// send applies one SendOp. A refused send returns its reason in the
// result's Err and writes nothing; a returned error fails the batch.
func (st *batchState) send(op *storage.SendOp) (storage.SendResult, error) {
	if op.IdempotencyKey != "" {
		var ids string
		err := st.tx.QueryRowContext(st.ctx, `SELECT envelope_ids FROM idempotency
			WHERE sender_localpart = ? AND sender_node = ? AND sender_device = ? AND idempotency_key = ?`,
			op.Sender.Localpart, op.Sender.Node, op.SenderDevice, op.IdempotencyKey).Scan(&ids)
		if err == nil {
			var r storage.SendResult
			if err := json.Unmarshal([]byte(ids), &r.IDs); err != nil {
				return storage.SendResult{}, fmt.Errorf("idempotency record: %w", err)
			}
			r.Replayed = true
			return r, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return storage.SendResult{}, err
		}
	}
	// Check every local recipient before writing anything; recipients on
	// other nodes are their node's to judge.
	for _, e := range op.Envelopes {
		if e.RecipientNode != "" {
			if op.ExpireTime.IsZero() {
				return storage.SendResult{Err: valise.Errorf(valise.KindInvalid, "a send to another node needs an expire time")}, nil
			}
			continue
		}
		if refusal, err := st.check(e.Recipient, e.RecipientDevice); err != nil || refusal != nil {
			return storage.SendResult{Err: refusal}, err
		}
	}
	r := storage.SendResult{
		IDs:        make([]valise.EnvelopeID, 0, len(op.Envelopes)),
		Deliveries: make([]storage.Delivery, 0, len(op.Envelopes)),
	}
	serverTime := toDB(orNow(op.ServerTime))
	for i := range op.Envelopes {
		e := &op.Envelopes[i]
		r.IDs = append(r.IDs, e.ID)
		if e.RecipientNode != "" {
			if err := st.enqueue(op, e, serverTime); err != nil {
				return storage.SendResult{}, err
			}
			if !slices.Contains(r.Outbound, e.RecipientNode) {
				r.Outbound = append(r.Outbound, e.RecipientNode)
			}
			continue
		}
		d, err := st.appendInbox(e.Recipient, e.RecipientDevice, inboxRow{id: e.ID, sender: op.Sender,
			senderDevice: op.SenderDevice, serverTime: serverTime, ciphertext: e.Ciphertext, kind: storage.KindEnvelope})
		if err != nil {
			return storage.SendResult{}, err
		}
		r.Deliveries = append(r.Deliveries, d)
	}
	if op.IdempotencyKey != "" {
		ids, err := json.Marshal(r.IDs)
		if err != nil {
			return storage.SendResult{}, err
		}
		if _, err := st.tx.ExecContext(st.ctx, `INSERT INTO idempotency (sender_localpart, sender_node, sender_device,
			idempotency_key, envelope_ids, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			op.Sender.Localpart, op.Sender.Node, op.SenderDevice, op.IdempotencyKey, string(ids), serverTime); err != nil {
			return storage.SendResult{}, translate(err)
		}
	}
	return r, nil
}

// check reports why a recipient cannot receive (a *valise.Error), or nil,
// loading the recipient's state into the cache. A returned error is a
// database failure.
func (st *batchState) check(user string, device valise.DeviceID) (refusal, err error) {
	active, ok := st.active[user]
	if !ok {
		var a bool
		err := st.tx.QueryRowContext(st.ctx, `SELECT active FROM users WHERE localpart = ?`, user).Scan(&a)
		switch {
		case err == nil:
			active = &a
		case !errors.Is(err, sql.ErrNoRows):
			return nil, err
		}
		st.active[user] = active
	}
	if active == nil {
		return valise.Errorf(valise.KindNotFound, "recipient %q not found", user), nil
	}
	if !*active {
		return valise.Errorf(valise.KindPermission, "recipient %q is deactivated", user), nil
	}
	dk := deviceKey{user, device}
	if st.missing[dk] {
		return valise.Errorf(valise.KindNotFound, "recipient %q has no device %q", user, device), nil
	}
	if _, ok := st.next[dk]; ok {
		return nil, nil
	}
	var next int64
	err = st.tx.QueryRowContext(st.ctx, `SELECT next_cursor FROM devices WHERE user_localpart = ? AND device_id = ?`,
		user, device).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		st.missing[dk] = true
		return valise.Errorf(valise.KindNotFound, "recipient %q has no device %q", user, device), nil
	}
	if err != nil {
		return nil, err
	}
	st.next[dk] = uint64(next)
	return nil, nil
}

// ReadInbox returns up to limit envelopes of the device with cursor >
// after, in cursor order. The store does not know its node's name, so each
// envelope's Recipient carries the localpart only.
func (s *Store) ReadInbox(ctx context.Context, user string, device valise.DeviceID, after uint64, limit int) ([]valise.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read inbox: %w", err)
	}
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT cursor, envelope_id, sender_localpart, sender_node, sender_device,
			server_time, ciphertext, kind
		FROM inbox WHERE user_localpart = ? AND device_id = ? AND cursor > ? ORDER BY cursor LIMIT ?`,
		user, device, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read inbox: %w", err)
	}
	defer rows.Close()
	var envs []valise.Envelope
	for rows.Next() {
		e := valise.Envelope{Recipient: valise.UserID{Localpart: user}, RecipientDevice: device}
		var cursor, t int64
		var kind int
		if err := rows.Scan(&cursor, &e.ID, &e.Sender.Localpart, &e.Sender.Node, &e.SenderDevice, &t, &e.Ciphertext, &kind); err != nil {
			return nil, fmt.Errorf("sqlite: read inbox: %w", err)
		}
		e.Cursor, e.ServerTime = uint64(cursor), fromDB(t)
		if kind == storage.KindDeliveryFailure {
			f, err := storage.DecodeFailure(e.Ciphertext)
			if err != nil {
				return nil, fmt.Errorf("sqlite: read inbox: cursor %d: %w", cursor, err)
			}
			e.Failure, e.Ciphertext = f, nil
			e.Sender, e.SenderDevice = valise.UserID{}, ""
		}
		envs = append(envs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read inbox: %w", err)
	}
	return envs, nil
}

// InboxDepth returns how many envelopes wait in all inboxes.
func (s *Store) InboxDepth(ctx context.Context) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM inbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: inbox depth: %w", err)
	}
	return n, nil
}
