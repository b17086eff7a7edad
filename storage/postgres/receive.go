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

const (
	// claimTransaction records a transaction with a placeholder answer,
	// which receive replaces before it commits. A concurrent call with the
	// same (origin, id) waits on the unique index until this one ends, and
	// then finds its answer (or, if this one rolled back, claims it).
	claimTransaction = `INSERT INTO federation_transactions (origin, transaction_id, statuses, received_at)
		VALUES ($1, $2, '{}', $3) ON CONFLICT DO NOTHING`
	selectTransaction = `SELECT statuses FROM federation_transactions
		WHERE origin = $1 AND transaction_id = $2`
	answerTransaction = `UPDATE federation_transactions SET statuses = $3
		WHERE origin = $1 AND transaction_id = $2`
	// claimReceived records envelope ids and returns those not recorded
	// before. A concurrent transaction inserting the same id waits until
	// this one ends, so two never both learn that an id is new.
	claimReceived = `INSERT INTO federation_received (origin, envelope_id, received_at)
		SELECT $1, id, $3 FROM unnest($2::text[]) AS id
		ON CONFLICT DO NOTHING RETURNING envelope_id`
	unclaimReceived = `DELETE FROM federation_received
		WHERE origin = $1 AND envelope_id = ANY($2::text[])`
)

// errReplayed rolls back the claims a replayed transaction made while its
// first round trip found out that it is a replay.
var errReplayed = errors.New("transaction replayed")

// ReceiveTransaction commits one transaction from another node; see
// storage.Federation. It takes two round trips inside one database
// transaction. The first claims the transaction's (origin, id), claims the
// ids of the pending envelopes (in sorted order, so that concurrent
// transactions sharing ids wait for each other instead of deadlocking),
// locks the recipient devices in the order CommitBatch locks them and
// reads the recipient users. If the transaction was committed before, the
// claims are rolled back and the first answer returned. Otherwise the
// second round trip releases the ids of the envelopes not accepted, writes
// the inbox rows and cursors, notifies an EventInbox for every device that
// got envelopes (see ListenEvents) and records the answer.
func (s *Store) ReceiveTransaction(ctx context.Context, in *storage.InboundTransaction) (*storage.InboundResult, error) {
	received := dbTime(in.Received)
	if in.Received.IsZero() {
		received = s.timestamp()
	}
	var res *storage.InboundResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		res, err = receive(ctx, tx, in, received)
		if err == nil && res.Replayed {
			return errReplayed
		}
		return err
	})
	switch {
	case errors.Is(err, errReplayed):
		return res, nil
	case err != nil:
		return nil, fmt.Errorf("postgres: receive transaction: %w", err)
	}
	return res, nil
}

// receiveState is what the first round trip of receive learns.
type receiveState struct {
	claimed bool            // the transaction is new
	stored  []int16         // the recorded answer, if it is not
	fresh   map[string]bool // pending envelope ids not received before
	next    map[devKey]int64
	active  map[string]bool
}

func receive(ctx context.Context, tx pgx.Tx, in *storage.InboundTransaction, received time.Time) (*storage.InboundResult, error) {
	origin := string(in.Origin)
	var ids, devUsers, devIDs, users []string
	seenDev, seenUser := make(map[devKey]bool), make(map[string]bool)
	for _, e := range in.Envelopes {
		if e.Status != storage.InboundPending {
			continue
		}
		ids = append(ids, string(e.ID))
		if dk := (devKey{e.Recipient, e.RecipientDevice}); !seenDev[dk] {
			seenDev[dk] = true
			devUsers, devIDs = append(devUsers, e.Recipient), append(devIDs, string(e.RecipientDevice))
		}
		if !seenUser[e.Recipient] {
			seenUser[e.Recipient] = true
			users = append(users, e.Recipient)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)

	st := receiveState{
		fresh:  make(map[string]bool, len(ids)),
		next:   make(map[devKey]int64, len(devUsers)),
		active: make(map[string]bool, len(users)),
	}
	q := &pgx.Batch{}
	q.Queue(claimTransaction, origin, []byte(in.ID), received).Exec(func(tag pgconn.CommandTag) error {
		st.claimed = tag.RowsAffected() == 1
		return nil
	})
	q.Queue(selectTransaction, origin, []byte(in.ID)).QueryRow(func(row pgx.Row) error {
		return row.Scan(&st.stored)
	})
	if len(ids) > 0 {
		q.Queue(claimReceived, origin, ids, received).Query(func(rows pgx.Rows) error {
			var id string
			_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
				st.fresh[id] = true
				return nil
			})
			return err
		})
		queueRecipients(q, devUsers, devIDs, users, st.next, st.active)
	}
	if err := tx.SendBatch(ctx, q).Close(); err != nil {
		return nil, err
	}
	if !st.claimed {
		statuses := make([]storage.InboundStatus, len(st.stored))
		for i, v := range st.stored {
			statuses[i] = storage.InboundStatus(v)
		}
		return &storage.InboundResult{Statuses: statuses, Replayed: true}, nil
	}

	res := &storage.InboundResult{Statuses: make([]storage.InboundStatus, len(in.Envelopes))}
	answer := make([]int16, len(in.Envelopes))
	accepted := make(map[string]bool)
	next := make(map[devKey]int64)
	var rows inboxRows
	for i, e := range in.Envelopes {
		v := judge(&e, &st, accepted)
		res.Statuses[i], answer[i] = v, int16(v)
		if v != storage.InboundAccepted || e.Status != storage.InboundPending {
			continue
		}
		accepted[string(e.ID)] = true
		dk := devKey{e.Recipient, e.RecipientDevice}
		c, ok := next[dk]
		if !ok {
			c = st.next[dk]
		}
		next[dk] = c + 1
		rows.append(e.Recipient, e.RecipientDevice, c, e.ID,
			valise.UserID{Localpart: e.Sender.Localpart, Node: in.Origin}, e.SenderDevice,
			dbTime(e.OriginTime), e.Ciphertext)
		res.Deliveries = append(res.Deliveries, storage.Delivery{User: e.Recipient, Device: e.RecipientDevice, Cursor: uint64(c)})
	}

	w := &pgx.Batch{}
	var unclaim []string
	for _, id := range ids {
		if st.fresh[id] && !accepted[id] {
			unclaim = append(unclaim, id)
		}
	}
	if len(unclaim) > 0 {
		w.Queue(unclaimReceived, origin, unclaim)
	}
	if len(next) > 0 {
		var us, ds, events []string
		var ns []int64
		for dk, n := range next {
			us, ds, ns = append(us, dk.user), append(ds, string(dk.device)), append(ns, n)
			events = append(events, inboxPayload(dk.user, dk.device))
		}
		w.Queue(advanceCursors, us, ds, ns)
		w.Queue(insertInbox, rows.users, rows.devices, rows.seqs, rows.ids,
			rows.senders, rows.nodes, rows.senderDevices, rows.times, rows.ciphertexts)
		w.Queue(notifyEach, events)
	}
	w.Queue(answerTransaction, origin, []byte(in.ID), answer)
	if err := tx.SendBatch(ctx, w).Close(); err != nil {
		return nil, err
	}
	return res, nil
}

// judge returns the verdict on e, given what the first round trip learnt
// and the ids accepted earlier in the transaction.
func judge(e *storage.InboundEnvelope, st *receiveState, accepted map[string]bool) storage.InboundStatus {
	if e.Status != storage.InboundPending {
		return e.Status
	}
	if !st.fresh[string(e.ID)] || accepted[string(e.ID)] {
		return storage.InboundDuplicate
	}
	active, ok := st.active[e.Recipient]
	switch {
	case !ok:
		return storage.InboundUnknownRecipient
	case !active:
		return storage.InboundRecipientDeactivated
	}
	if _, ok := st.next[devKey{e.Recipient, e.RecipientDevice}]; !ok {
		return storage.InboundUnknownRecipient
	}
	return storage.InboundAccepted
}

// queueRecipients queues the locking of the devices named by devUsers and
// devIDs, in one global order (see lockDevices), filling next with their
// next cursors, and, unless active is nil, the reading of the users'
// states into active.
func queueRecipients(q *pgx.Batch, devUsers, devIDs, users []string, next map[devKey]int64, active map[string]bool) {
	q.Queue(lockDevices, devUsers, devIDs).Query(func(rows pgx.Rows) error {
		var user, id string
		var n int64
		_, err := pgx.ForEachRow(rows, []any{&user, &id, &n}, func() error {
			next[devKey{user, valise.DeviceID(id)}] = n
			return nil
		})
		return err
	})
	if active == nil {
		return
	}
	q.Queue(`SELECT localpart, active FROM users WHERE localpart = ANY($1::text[])`, users).
		Query(func(rows pgx.Rows) error {
			var user string
			var a bool
			_, err := pgx.ForEachRow(rows, []any{&user, &a}, func() error {
				active[user] = a
				return nil
			})
			return err
		})
}
