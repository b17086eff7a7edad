package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// OutboxStats returns, for every destination with queued envelopes, how
// many wait and the earliest ServerTime among them, ordered by
// destination (bytewise).
func (s *Store) OutboxStats(ctx context.Context) ([]storage.OutboxStat, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT d.destination, d.n,
			(SELECT o.server_time FROM outbox o WHERE o.destination = d.destination ORDER BY o.seq LIMIT 1)
		FROM (SELECT destination, count(*) AS n FROM outbox GROUP BY destination) d
		ORDER BY d.destination`)
	if err != nil {
		return nil, fmt.Errorf("postgres: outbox stats: %w", err)
	}
	stats, err := pgx.AppendRows([]storage.OutboxStat(nil), rows, func(row pgx.CollectableRow) (storage.OutboxStat, error) {
		var st storage.OutboxStat
		var dest string
		err := row.Scan(&dest, &st.Depth, &st.Oldest)
		st.Destination, st.Oldest = valise.NodeName(dest), st.Oldest.UTC()
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: outbox stats: %w", err)
	}
	return stats, nil
}

// AcquireOutboxLease gives owner the lease on dest's outbox until until,
// unless another owner holds one unexpired at now; see
// storage.Federation. It is one upsert: the conflicting row is locked and
// its owner and expiry checked afresh, so concurrent callers cannot both
// win.
func (s *Store) AcquireOutboxLease(ctx context.Context, dest valise.NodeName, owner string, now, until time.Time) (bool, error) {
	var held bool
	err := s.pool.QueryRow(ctx, `
		INSERT INTO outbox_leases AS l (destination, owner, expires_at) VALUES ($1, $2, $4)
		ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		WHERE l.owner = excluded.owner OR l.expires_at <= $3
		RETURNING true`, string(dest), owner, dbTime(now), dbTime(until)).Scan(&held)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("postgres: acquire outbox lease: %w", err)
	}
	return held, nil
}

// ReleaseOutboxLease gives up owner's lease on dest, if owner holds it.
func (s *Store) ReleaseOutboxLease(ctx context.Context, dest valise.NodeName, owner string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM outbox_leases WHERE destination = $1 AND owner = $2`,
		string(dest), owner); err != nil {
		return fmt.Errorf("postgres: release outbox lease: %w", err)
	}
	return nil
}

// ReadOutbox returns dest's oldest queued envelopes in Seq order: at most
// limit, and after the first no more than maxBytes of ciphertext counting
// the first's. The byte bound is applied in the query, so ciphertexts
// past it are not sent over.
func (s *Store) ReadOutbox(ctx context.Context, dest valise.NodeName, limit, maxBytes int, skip []int64) ([]storage.OutboxEnvelope, error) {
	if limit <= 0 {
		return nil, nil
	}
	if skip == nil {
		skip = []int64{} // a NULL array would make "<> ALL" NULL for every row
	}
	rows, err := s.pool.Query(ctx, `
		SELECT seq, envelope_id, sender_localpart, sender_device, recipient_localpart,
			recipient_device, server_time, expire_time, ciphertext, attempt
		FROM (
			SELECT o.*, row_number() OVER w AS n, sum(octet_length(ciphertext)) OVER w AS total
			FROM (SELECT * FROM outbox WHERE destination = $1 AND seq <> ALL($4::bigint[])
				ORDER BY seq LIMIT $2) o
			WINDOW w AS (ORDER BY seq)
		) q
		WHERE n = 1 OR total <= $3
		ORDER BY seq`, string(dest), limit, int64(maxBytes), skip)
	if err != nil {
		return nil, fmt.Errorf("postgres: read outbox: %w", err)
	}
	envs, err := pgx.AppendRows([]storage.OutboxEnvelope(nil), rows, func(row pgx.CollectableRow) (storage.OutboxEnvelope, error) {
		e := storage.OutboxEnvelope{Destination: dest}
		var id, senderDevice, recipientDevice string
		err := row.Scan(&e.Seq, &id, &e.Sender, &senderDevice, &e.Recipient, &recipientDevice,
			&e.ServerTime, &e.ExpireTime, &e.Ciphertext, &e.Attempt)
		e.ID, e.SenderDevice, e.RecipientDevice = valise.EnvelopeID(id), valise.DeviceID(senderDevice), valise.DeviceID(recipientDevice)
		e.ServerTime, e.ExpireTime = e.ServerTime.UTC(), e.ExpireTime.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: read outbox: %w", err)
	}
	return envs, nil
}

// deadLetter moves the outbox rows of destination $1 whose seqs $2 are
// given up, for the reasons $3, to dead_letters at time $4, in the order
// of $2, and returns what the notices need, in that order.
const deadLetter = `WITH gone AS (
		DELETE FROM outbox o
		USING unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS g(seq, reason, ord)
		WHERE o.destination = $1 AND o.seq = g.seq
		RETURNING o.destination, o.envelope_id, o.sender_localpart, o.sender_device,
			o.recipient_localpart, o.recipient_device, o.server_time, g.reason, g.ord
	)
	INSERT INTO dead_letters (destination, envelope_id, sender_localpart, sender_device,
		recipient_localpart, recipient_device, server_time, reason, given_up_at)
	SELECT destination, envelope_id, sender_localpart, sender_device,
		recipient_localpart, recipient_device, server_time, reason, $4
	FROM gone ORDER BY ord
	RETURNING seq, envelope_id, sender_localpart, sender_device,
		recipient_localpart, recipient_device, reason`

// insertNotices is insertInbox for delivery-failure notices.
const insertNotices = `INSERT INTO inbox (user_localpart, device_id, seq, envelope_id,
		sender_localpart, sender_node, sender_device, server_time, ciphertext, kind)
	SELECT *, 1 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],
		$5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::bytea[])`

// given is one dead-lettered envelope, as the notice to its sender needs it.
type given struct {
	seq             int64 // in dead_letters
	id              string
	sender          string
	senderDevice    string
	recipient       string
	recipientDevice string
	reason          string
}

// FinishOutbox applies outcomes to dest's queued envelopes; see
// storage.Federation. It locks dest's lease row first and writes nothing
// (ErrPrecondition) unless owner holds a lease unexpired at now: a
// process whose lease was taken over cannot write after the new holder
// took it, as the new holder's upsert waits for that lock. The sending
// devices of dead letters are locked in the order CommitBatch locks
// devices, before their notices are appended.
func (s *Store) FinishOutbox(ctx context.Context, dest valise.NodeName, owner string, now time.Time, outcomes []storage.OutboxOutcome) ([]storage.Delivery, error) {
	now = dbTime(now)
	var delivered, retried, dead []int64
	var reasons []string
	for _, o := range outcomes {
		switch {
		case o.Delivered:
			delivered = append(delivered, o.Seq)
		case o.DeadLetter != "":
			dead, reasons = append(dead, o.Seq), append(reasons, string(o.DeadLetter))
		default:
			retried = append(retried, o.Seq)
		}
	}
	var out []storage.Delivery
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		out = nil
		var held bool
		err := tx.QueryRow(ctx, `
			SELECT owner = $2 AND expires_at > $3 FROM outbox_leases
			WHERE destination = $1 FOR UPDATE`, string(dest), owner, now).Scan(&held)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && !held {
			return fmt.Errorf("%w: lease on %s not held by %s", storage.ErrPrecondition, dest, owner)
		}
		if err != nil {
			return err
		}
		q := &pgx.Batch{}
		if len(delivered) > 0 {
			q.Queue(`DELETE FROM outbox WHERE destination = $1 AND seq = ANY($2::bigint[])`, string(dest), delivered)
		}
		if len(retried) > 0 {
			q.Queue(`UPDATE outbox SET attempt = attempt + 1
				WHERE destination = $1 AND seq = ANY($2::bigint[])`, string(dest), retried)
		}
		var gone []given
		if len(dead) > 0 {
			q.Queue(deadLetter, string(dest), dead, reasons, now).Query(func(rows pgx.Rows) error {
				var g given
				_, err := pgx.ForEachRow(rows, []any{&g.seq, &g.id, &g.sender, &g.senderDevice,
					&g.recipient, &g.recipientDevice, &g.reason}, func() error {
					gone = append(gone, g)
					return nil
				})
				return err
			})
		}
		if q.Len() > 0 {
			if err := tx.SendBatch(ctx, q).Close(); err != nil {
				return err
			}
		}
		if len(gone) == 0 {
			return nil
		}
		slices.SortFunc(gone, func(a, b given) int { return cmpInt(a.seq, b.seq) })
		out, err = appendNotices(ctx, tx, dest, gone, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: finish outbox: %w", err)
	}
	return out, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// appendNotices appends a delivery-failure notice for each envelope of
// gone to its sending device's inbox, if that device still exists, and
// returns the rows written.
func appendNotices(ctx context.Context, tx pgx.Tx, dest valise.NodeName, gone []given, now time.Time) ([]storage.Delivery, error) {
	var devUsers, devIDs []string
	seen := make(map[devKey]bool)
	for _, g := range gone {
		if dk := (devKey{g.sender, valise.DeviceID(g.senderDevice)}); !seen[dk] {
			seen[dk] = true
			devUsers, devIDs = append(devUsers, g.sender), append(devIDs, g.senderDevice)
		}
	}
	st := make(map[devKey]int64, len(devUsers))
	q := &pgx.Batch{}
	queueRecipients(q, devUsers, devIDs, nil, st, nil)
	if err := tx.SendBatch(ctx, q).Close(); err != nil {
		return nil, err
	}
	var out []storage.Delivery
	var rows inboxRows
	next := make(map[devKey]int64)
	for _, g := range gone {
		dk := devKey{g.sender, valise.DeviceID(g.senderDevice)}
		c, ok := next[dk]
		if !ok {
			if c, ok = st[dk]; !ok {
				continue // the sending device is gone
			}
		}
		next[dk] = c + 1
		notice := storage.EncodeFailure(valise.DeliveryFailure{
			EnvelopeID:      valise.EnvelopeID(g.id),
			Recipient:       valise.UserID{Localpart: g.recipient, Node: dest},
			RecipientDevice: valise.DeviceID(g.recipientDevice),
			Reason:          valise.FailureReason(g.reason),
		})
		rows.append(dk.user, dk.device, c, valise.NewEnvelopeID(now), valise.UserID{}, "", now, notice)
		out = append(out, storage.Delivery{User: dk.user, Device: dk.device, Cursor: uint64(c)})
	}
	if len(next) == 0 {
		return nil, nil
	}
	var us, ds, events []string
	var ns []int64
	for dk, n := range next {
		us, ds, ns = append(us, dk.user), append(ds, string(dk.device)), append(ns, n)
		events = append(events, inboxPayload(dk.user, dk.device))
	}
	w := &pgx.Batch{}
	w.Queue(advanceCursors, us, ds, ns)
	w.Queue(insertNotices, rows.users, rows.devices, rows.seqs, rows.ids,
		rows.senders, rows.nodes, rows.senderDevices, rows.times, rows.ciphertexts)
	w.Queue(notifyEach, events)
	if err := tx.SendBatch(ctx, w).Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// ListDeadLetters returns up to limit dead letters of dest (every
// destination if dest is "") with Seq > after, in Seq order. Seq comes
// from a sequence: two FinishOutbox calls committing at once may commit
// in another order than their Seqs, so a listing taken meanwhile can miss
// a dead letter with a lower Seq that commits just after it.
func (s *Store) ListDeadLetters(ctx context.Context, dest valise.NodeName, after int64, limit int) ([]storage.DeadLetter, error) {
	if limit <= 0 {
		return nil, nil
	}
	const cols = `SELECT seq, envelope_id, destination, sender_localpart, sender_device,
		recipient_localpart, recipient_device, server_time, reason, given_up_at FROM dead_letters`
	var rows pgx.Rows
	var err error
	if dest == "" {
		rows, err = s.pool.Query(ctx, cols+` WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	} else {
		rows, err = s.pool.Query(ctx, cols+` WHERE destination = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
			string(dest), after, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: list dead letters: %w", err)
	}
	dls, err := pgx.AppendRows([]storage.DeadLetter(nil), rows, func(row pgx.CollectableRow) (storage.DeadLetter, error) {
		var d storage.DeadLetter
		var id, dest, senderDevice, recipientDevice, reason string
		err := row.Scan(&d.Seq, &id, &dest, &d.Sender, &senderDevice, &d.Recipient, &recipientDevice,
			&d.ServerTime, &reason, &d.Time)
		d.ID, d.Destination, d.Reason = valise.EnvelopeID(id), valise.NodeName(dest), valise.FailureReason(reason)
		d.SenderDevice, d.RecipientDevice = valise.DeviceID(senderDevice), valise.DeviceID(recipientDevice)
		d.ServerTime, d.Time = d.ServerTime.UTC(), d.Time.UTC()
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list dead letters: %w", err)
	}
	return dls, nil
}

// GetDeliveryState returns dest's delivery state; the zero state if none
// was recorded.
func (s *Store) GetDeliveryState(ctx context.Context, dest valise.NodeName) (storage.DeliveryState, error) {
	var st storage.DeliveryState
	var success, errorAt, next *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT last_success, last_error, last_error_at, failures, next_attempt
		FROM delivery_state WHERE destination = $1`, string(dest)).
		Scan(&success, &st.LastError, &errorAt, &st.Failures, &next)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return storage.DeliveryState{}, nil
	case err != nil:
		return storage.DeliveryState{}, fmt.Errorf("postgres: get delivery state: %w", err)
	}
	st.LastSuccess, st.LastErrorAt, st.NextAttempt = fromNull(success), fromNull(errorAt), fromNull(next)
	return st, nil
}

// SetDeliveryState records dest's delivery state, replacing any.
func (s *Store) SetDeliveryState(ctx context.Context, dest valise.NodeName, st storage.DeliveryState) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO delivery_state (destination, last_success, last_error, last_error_at, failures, next_attempt)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (destination) DO UPDATE SET last_success = excluded.last_success,
			last_error = excluded.last_error, last_error_at = excluded.last_error_at,
			failures = excluded.failures, next_attempt = excluded.next_attempt`,
		string(dest), toNull(st.LastSuccess), st.LastError, toNull(st.LastErrorAt), st.Failures, toNull(st.NextAttempt))
	if err != nil {
		return fmt.Errorf("postgres: set delivery state: %w", err)
	}
	return nil
}

// toNull returns t as the database keeps it, or nil (NULL) for the zero
// time.
func toNull(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = dbTime(t)
	return &t
}

func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// prunes delete one chunk of old federation records each; see
// pruneIdempotency.
var prunes = []string{
	`DELETE FROM federation_received WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM federation_received WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`,
	`DELETE FROM federation_transactions WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM federation_transactions WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`,
	`DELETE FROM dead_letters WHERE ctid = ANY(ARRAY(
		SELECT ctid FROM dead_letters WHERE given_up_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`,
}

// PruneFederation deletes received-envelope records, transaction answers
// and dead letters recorded before before, in transactions of at most
// pruneChunk rows, and returns how many rows it deleted.
func (s *Store) PruneFederation(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for _, prune := range prunes {
		for {
			var tag pgconn.CommandTag
			err := s.inTx(ctx, func(tx pgx.Tx) error {
				var err error
				tag, err = tx.Exec(ctx, prune, dbTime(before), pruneChunk)
				return err
			})
			if err != nil {
				return total, fmt.Errorf("postgres: prune federation: %w", err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < pruneChunk {
				break
			}
			if err := ctx.Err(); err != nil {
				return total, fmt.Errorf("postgres: prune federation: %w", err)
			}
		}
	}
	return total, nil
}
