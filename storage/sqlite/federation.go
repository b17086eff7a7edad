package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// OutboxStats returns the depth and oldest ServerTime of every non-empty
// outbox, ordered by destination. See storage.Federation.
func (s *Store) OutboxStats(ctx context.Context) ([]storage.OutboxStat, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT d.destination, d.n,
			(SELECT o.server_time FROM outbox o WHERE o.destination = d.destination ORDER BY o.seq LIMIT 1)
		FROM (SELECT destination, count(*) AS n FROM outbox GROUP BY destination) d
		ORDER BY d.destination`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: outbox stats: %w", err)
	}
	defer rows.Close()
	var stats []storage.OutboxStat
	for rows.Next() {
		var st storage.OutboxStat
		var dest string
		var oldest int64
		if err := rows.Scan(&dest, &st.Depth, &oldest); err != nil {
			return nil, fmt.Errorf("sqlite: outbox stats: %w", err)
		}
		st.Destination, st.Oldest = valise.NodeName(dest), fromDB(oldest)
		stats = append(stats, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: outbox stats: %w", err)
	}
	return stats, nil
}

// AcquireOutboxLease takes or renews owner's lease on dest's outbox.
func (s *Store) AcquireOutboxLease(ctx context.Context, dest valise.NodeName, owner string, now, until time.Time) (bool, error) {
	var held bool
	err := s.write(ctx, "acquire outbox lease", func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `INSERT INTO outbox_leases (destination, owner, expires_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
			WHERE outbox_leases.owner = excluded.owner OR outbox_leases.expires_at <= ?4`,
			string(dest), owner, toDB(until), toDB(now))
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		held = n > 0
		return err
	})
	if err != nil {
		return false, err
	}
	return held, nil
}

// ReleaseOutboxLease gives up owner's lease on dest, if owner holds it.
func (s *Store) ReleaseOutboxLease(ctx context.Context, dest valise.NodeName, owner string) error {
	return s.write(ctx, "release outbox lease", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM outbox_leases WHERE destination = ? AND owner = ?`, string(dest), owner)
		return err
	})
}

const outboxColumns = `seq, envelope_id, destination, sender_localpart, sender_device, recipient_localpart,
	recipient_device, server_time, expire_time, ciphertext, attempt`

func scanOutbox(row interface{ Scan(...any) error }) (storage.OutboxEnvelope, error) {
	var e storage.OutboxEnvelope
	var dest string
	var serverTime, expireTime int64
	if err := row.Scan(&e.Seq, &e.ID, &dest, &e.Sender, &e.SenderDevice, &e.Recipient, &e.RecipientDevice,
		&serverTime, &expireTime, &e.Ciphertext, &e.Attempt); err != nil {
		return storage.OutboxEnvelope{}, err
	}
	e.Destination, e.ServerTime, e.ExpireTime = valise.NodeName(dest), fromDB(serverTime), fromDB(expireTime)
	if e.Ciphertext == nil {
		e.Ciphertext = []byte{}
	}
	return e, nil
}

// ReadOutbox returns dest's oldest queued envelopes in Seq order, at most
// limit of them and, after the first, at most maxBytes of ciphertext in
// all (counting the first).
func (s *Store) ReadOutbox(ctx context.Context, dest valise.NodeName, limit, maxBytes int, skip []int64) ([]storage.OutboxEnvelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read outbox: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	q := `SELECT ` + outboxColumns + ` FROM outbox WHERE destination = ?`
	args := []any{string(dest)}
	if len(skip) > 0 {
		q += ` AND seq NOT IN (?` + strings.Repeat(`,?`, len(skip)-1) + `)`
		for _, seq := range skip {
			args = append(args, seq)
		}
	}
	rows, err := s.r.QueryContext(ctx, q+` ORDER BY seq LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read outbox: %w", err)
	}
	defer rows.Close()
	var envs []storage.OutboxEnvelope
	size := 0
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: read outbox: %w", err)
		}
		size += len(e.Ciphertext)
		if len(envs) > 0 && size > maxBytes {
			break
		}
		envs = append(envs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read outbox: %w", err)
	}
	return envs, nil
}

// FinishOutbox applies outcomes to dest's queue, fenced by owner's lease.
// An outcome with both Delivered and DeadLetter set counts as delivered.
func (s *Store) FinishOutbox(ctx context.Context, dest valise.NodeName, owner string, now time.Time, outcomes []storage.OutboxOutcome) ([]storage.Delivery, error) {
	var notices []storage.Delivery
	err := s.write(ctx, "finish outbox", func(tx *sql.Tx) error {
		notices = nil
		var held bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM outbox_leases
			WHERE destination = ? AND owner = ? AND expires_at > ?)`, string(dest), owner, toDB(now)).Scan(&held); err != nil {
			return err
		}
		if !held {
			return fmt.Errorf("lease on %s not held by %q: %w", dest, owner, storage.ErrPrecondition)
		}
		st := newBatchState(ctx, tx)
		defer st.close()
		for _, o := range outcomes {
			e, err := scanOutbox(tx.QueryRowContext(ctx, `SELECT `+outboxColumns+` FROM outbox
				WHERE seq = ? AND destination = ?`, o.Seq, string(dest)))
			if errors.Is(err, sql.ErrNoRows) {
				continue // no longer queued
			}
			if err != nil {
				return err
			}
			switch {
			case o.Delivered || o.DeadLetter != "":
				if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, e.Seq); err != nil {
					return err
				}
				if o.Delivered {
					continue
				}
				d, ok, err := st.deadLetter(e, o.DeadLetter, now)
				if err != nil {
					return err
				}
				if ok {
					notices = append(notices, d)
				}
			default:
				if _, err := tx.ExecContext(ctx, `UPDATE outbox SET attempt = attempt + 1 WHERE seq = ?`, e.Seq); err != nil {
					return err
				}
			}
		}
		return st.flush()
	})
	if err != nil {
		return nil, err
	}
	return notices, nil
}

// deadLetter records e as given up for reason at now and appends a
// delivery-failure notice to its sending device's inbox if that device
// still exists; ok reports whether it did.
func (st *batchState) deadLetter(e storage.OutboxEnvelope, reason valise.FailureReason, now time.Time) (d storage.Delivery, ok bool, err error) {
	if _, err := st.tx.ExecContext(st.ctx, `INSERT INTO dead_letters (envelope_id, destination, sender_localpart,
			sender_device, recipient_localpart, recipient_device, server_time, reason, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, string(e.Destination), e.Sender, e.SenderDevice, e.Recipient, e.RecipientDevice,
		toDB(e.ServerTime), string(reason), toDB(now)); err != nil {
		return storage.Delivery{}, false, err
	}
	refusal, err := st.check(e.Sender, e.SenderDevice)
	if err != nil || refusal != nil {
		return storage.Delivery{}, false, err
	}
	notice := storage.EncodeFailure(valise.DeliveryFailure{
		EnvelopeID:      e.ID,
		Recipient:       valise.UserID{Localpart: e.Recipient, Node: e.Destination},
		RecipientDevice: e.RecipientDevice,
		Reason:          reason,
	})
	d, err = st.appendInbox(e.Sender, e.SenderDevice, inboxRow{id: valise.NewEnvelopeID(now), serverTime: toDB(now),
		ciphertext: notice, kind: storage.KindDeliveryFailure})
	if err != nil {
		return storage.Delivery{}, false, err
	}
	return d, true, nil
}

// ListDeadLetters returns up to limit dead letters of dest (of every
// destination if dest is "") with Seq > after, in Seq order.
func (s *Store) ListDeadLetters(ctx context.Context, dest valise.NodeName, after int64, limit int) ([]storage.DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list dead letters: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT seq, envelope_id, destination, sender_localpart, sender_device,
			recipient_localpart, recipient_device, server_time, reason, time
		FROM dead_letters WHERE (?1 = '' OR destination = ?1) AND seq > ?2 ORDER BY seq LIMIT ?3`,
		string(dest), after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list dead letters: %w", err)
	}
	defer rows.Close()
	var dls []storage.DeadLetter
	for rows.Next() {
		var dl storage.DeadLetter
		var dest, reason string
		var serverTime, at int64
		if err := rows.Scan(&dl.Seq, &dl.ID, &dest, &dl.Sender, &dl.SenderDevice, &dl.Recipient, &dl.RecipientDevice,
			&serverTime, &reason, &at); err != nil {
			return nil, fmt.Errorf("sqlite: list dead letters: %w", err)
		}
		dl.Destination, dl.Reason = valise.NodeName(dest), valise.FailureReason(reason)
		dl.ServerTime, dl.Time = fromDB(serverTime), fromDB(at)
		dls = append(dls, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list dead letters: %w", err)
	}
	return dls, nil
}

// GetDeliveryState returns dest's delivery state, or the zero state.
func (s *Store) GetDeliveryState(ctx context.Context, dest valise.NodeName) (storage.DeliveryState, error) {
	var st storage.DeliveryState
	var success, errorAt, next sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT last_success, last_error, last_error_at, failures, next_attempt
		FROM delivery_state WHERE destination = ?`, string(dest)).Scan(&success, &st.LastError, &errorAt, &st.Failures, &next)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.DeliveryState{}, nil
	}
	if err != nil {
		return storage.DeliveryState{}, fmt.Errorf("sqlite: get delivery state: %w", err)
	}
	st.LastSuccess, st.LastErrorAt, st.NextAttempt = fromNullDB(success), fromNullDB(errorAt), fromNullDB(next)
	return st, nil
}

// SetDeliveryState records dest's delivery state, replacing any.
func (s *Store) SetDeliveryState(ctx context.Context, dest valise.NodeName, st storage.DeliveryState) error {
	return s.write(ctx, "set delivery state", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO delivery_state (destination, last_success, last_error,
			last_error_at, failures, next_attempt) VALUES (?, ?, ?, ?, ?, ?)`, string(dest), toNullDB(st.LastSuccess),
			st.LastError, toNullDB(st.LastErrorAt), st.Failures, toNullDB(st.NextAttempt))
		return err
	})
}

// toNullDB returns t as stored, NULL for the zero time.
func toNullDB(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return toDB(t)
}

// fromNullDB returns a stored time in UTC, the zero time for NULL.
func fromNullDB(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return fromDB(us.Int64)
}
