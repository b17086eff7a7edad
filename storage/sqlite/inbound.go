package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// ReceiveTransaction commits one transaction delivered by another node in
// one write transaction; the single writer serializes concurrent calls.
// See storage.Federation.
func (s *Store) ReceiveTransaction(ctx context.Context, in *storage.InboundTransaction) (*storage.InboundResult, error) {
	var res *storage.InboundResult
	err := s.write(ctx, "receive transaction", func(tx *sql.Tx) error {
		res = &storage.InboundResult{}
		var answer string
		err := tx.QueryRowContext(ctx, `SELECT statuses FROM federation_transactions WHERE origin = ? AND transaction_id = ?`,
			string(in.Origin), in.ID).Scan(&answer)
		if err == nil {
			res.Replayed = true
			if err := json.Unmarshal([]byte(answer), &res.Statuses); err != nil {
				return fmt.Errorf("transaction record: %w", err)
			}
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		st := newBatchState(ctx, tx)
		defer st.close()
		received := toDB(orNow(in.Received))
		res.Statuses = make([]storage.InboundStatus, len(in.Envelopes))
		for i := range in.Envelopes {
			e := &in.Envelopes[i]
			if e.Status != storage.InboundPending {
				res.Statuses[i] = e.Status
				continue
			}
			status, d, err := st.receive(in.Origin, e, received)
			if err != nil {
				return fmt.Errorf("envelope %d: %w", i, err)
			}
			res.Statuses[i] = status
			if status == storage.InboundAccepted {
				res.Deliveries = append(res.Deliveries, d)
			}
		}
		statuses, err := json.Marshal(res.Statuses)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO federation_transactions (origin, transaction_id, statuses, received_at)
			VALUES (?, ?, ?, ?)`, string(in.Origin), in.ID, string(statuses), received); err != nil {
			return translate(err)
		}
		return st.flush()
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// receive judges one pending envelope from origin and, if it is accepted,
// appends it to its recipient's inbox and records it as received.
func (st *batchState) receive(origin valise.NodeName, e *storage.InboundEnvelope, received int64) (storage.InboundStatus, storage.Delivery, error) {
	var seen bool
	if err := st.tx.QueryRowContext(st.ctx, `SELECT EXISTS (SELECT 1 FROM federation_received
		WHERE origin = ? AND envelope_id = ?)`, string(origin), e.ID).Scan(&seen); err != nil {
		return 0, storage.Delivery{}, err
	}
	if seen {
		return storage.InboundDuplicate, storage.Delivery{}, nil
	}
	refusal, err := st.check(e.Recipient, e.RecipientDevice)
	if err != nil {
		return 0, storage.Delivery{}, err
	}
	if refusal != nil {
		if valise.KindOf(refusal) == valise.KindPermission {
			return storage.InboundRecipientDeactivated, storage.Delivery{}, nil
		}
		return storage.InboundUnknownRecipient, storage.Delivery{}, nil
	}
	d, err := st.appendInbox(e.Recipient, e.RecipientDevice, inboxRow{
		id:           e.ID,
		sender:       valise.UserID{Localpart: e.Sender.Localpart, Node: origin},
		senderDevice: e.SenderDevice,
		serverTime:   toDB(e.OriginTime),
		ciphertext:   e.Ciphertext,
		kind:         storage.KindEnvelope,
	})
	if err != nil {
		return 0, storage.Delivery{}, err
	}
	if _, err := st.tx.ExecContext(st.ctx, `INSERT INTO federation_received (origin, envelope_id, received_at) VALUES (?, ?, ?)`,
		string(origin), e.ID, received); err != nil {
		return 0, storage.Delivery{}, translate(err)
	}
	return storage.InboundAccepted, d, nil
}

// PruneFederation deletes received-envelope records, transaction answers
// and dead letters recorded before before, in transactions of at most
// pruneChunk rows, and returns how many rows it deleted.
func (s *Store) PruneFederation(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for _, q := range []struct{ table, column string }{
		{"federation_received", "received_at"},
		{"federation_transactions", "received_at"},
		{"dead_letters", "time"},
	} {
		query := `DELETE FROM ` + q.table + ` WHERE rowid IN
			(SELECT rowid FROM ` + q.table + ` WHERE ` + q.column + ` < ? LIMIT ?)`
		for {
			var n int64
			err := s.write(ctx, "prune federation", func(tx *sql.Tx) error {
				r, err := tx.ExecContext(ctx, query, toDB(before), pruneChunk)
				if err != nil {
					return err
				}
				n, err = r.RowsAffected()
				return err
			})
			if err != nil {
				return total, err
			}
			total += n
			if n < pruneChunk {
				break
			}
			if err := ctx.Err(); err != nil {
				return total, fmt.Errorf("sqlite: prune federation: %w", err)
			}
		}
	}
	return total, nil
}
