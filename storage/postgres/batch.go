package postgres

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// devKey names one device.
type devKey struct {
	user   string
	device valise.DeviceID
}

// idemKey names one idempotency record.
type idemKey struct {
	node, local, device, key string
}

func (k idemKey) args() []any { return []any{k.node, k.local, k.device, []byte(k.key)} }

func compareIdemKeys(a, b idemKey) int {
	if c := strings.Compare(a.node, b.node); c != 0 {
		return c
	}
	if c := strings.Compare(a.local, b.local); c != 0 {
		return c
	}
	if c := strings.Compare(a.device, b.device); c != 0 {
		return c
	}
	return strings.Compare(a.key, b.key)
}

func sendKey(op *storage.SendOp) idemKey {
	return idemKey{string(op.Sender.Node), op.Sender.Localpart, string(op.SenderDevice), op.IdempotencyKey}
}

func envelopeIDs(op *storage.SendOp) []string {
	ids := make([]string, len(op.Envelopes))
	for i, e := range op.Envelopes {
		ids[i] = string(e.ID)
	}
	return ids
}

// batchState is what the first round trip of commitBatch learns.
type batchState struct {
	inserted map[idemKey]bool                // keys whose record this batch created
	stored   map[idemKey][]valise.EnvelopeID // every key's recorded ids
	next     map[devKey]int64                // each locked device's next cursor
	active   map[string]bool                 // each recipient user's state
}

const (
	insertIdempotency = `INSERT INTO idempotency_keys
		(sender_node, sender_localpart, sender_device, idempotency_key, envelope_ids, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`
	selectIdempotency = `SELECT envelope_ids FROM idempotency_keys
		WHERE sender_node = $1 AND sender_localpart = $2 AND sender_device = $3 AND idempotency_key = $4`
	lockDevices = `SELECT user_localpart, device_id, next_cursor FROM devices
		WHERE (user_localpart, device_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
		ORDER BY user_localpart, device_id FOR NO KEY UPDATE`
	insertInbox = `INSERT INTO inbox (user_localpart, device_id, seq, envelope_id,
			sender_localpart, sender_node, sender_device, server_time, ciphertext)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],
			$5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::bytea[])`
	advanceCursors = `UPDATE devices d SET next_cursor = c.n
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS c(u, dv, n)
		WHERE d.user_localpart = c.u AND d.device_id = c.dv`
	// insertOutbox appends rows to the outbox in array order: each row
	// takes its seq from the identity's sequence as it is inserted. Within
	// one process a single group-commit writer commits sends, so seq
	// follows commit order and, within a send, request order. Replicas
	// sharing the database draw from the same sequence but may commit in
	// another order than they drew: a destination's outbox can then list
	// an envelope of one replica's batch before one of another's that
	// committed first. What delivery must keep is the order of each
	// sending device's envelopes, and a client sends one request after
	// the other, so one device's sends never race each other.
	insertOutbox = `INSERT INTO outbox (destination, envelope_id, sender_localpart, sender_device,
			recipient_localpart, recipient_device, server_time, expire_time, ciphertext)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
			$5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[], $9::bytea[])`
)

func commitBatch(ctx context.Context, tx pgx.Tx, b *storage.Batch, now time.Time, origin string) (*storage.BatchResult, error) {
	res := &storage.BatchResult{
		Sends: make([]storage.SendResult, len(b.Sends)),
		Acks:  make([]int, len(b.Acks)),
	}
	first := make(map[idemKey]int) // the first send of the batch with each key
	var keys []idemKey
	var devUsers, devIDs, users []string
	seenDev, seenUser := make(map[devKey]bool), make(map[string]bool)
	for i := range b.Sends {
		op := &b.Sends[i]
		if op.IdempotencyKey != "" {
			if k := sendKey(op); !containsKey(first, k) {
				first[k] = i
				keys = append(keys, k)
			}
		}
		for _, e := range op.Envelopes {
			if e.RecipientNode != "" {
				continue // for another node: queued, not checked
			}
			if dk := (devKey{e.Recipient, e.RecipientDevice}); !seenDev[dk] {
				seenDev[dk] = true
				devUsers, devIDs = append(devUsers, e.Recipient), append(devIDs, string(e.RecipientDevice))
			}
			if !seenUser[e.Recipient] {
				seenUser[e.Recipient] = true
				users = append(users, e.Recipient)
			}
		}
	}
	// Claim keys in one global order: two batches racing for the same keys
	// then wait for each other instead of deadlocking.
	slices.SortFunc(keys, compareIdemKeys)

	st := batchState{
		inserted: make(map[idemKey]bool, len(keys)),
		stored:   make(map[idemKey][]valise.EnvelopeID, len(keys)),
		next:     make(map[devKey]int64, len(devUsers)),
		active:   make(map[string]bool, len(users)),
	}
	q := &pgx.Batch{}
	for _, k := range keys {
		// The insert waits for a concurrent transaction holding the same
		// key; the select, a statement of its own, then sees its record.
		args := append(k.args(), envelopeIDs(&b.Sends[first[k]]), recordTime(&b.Sends[first[k]], now))
		q.Queue(insertIdempotency, args...).Exec(func(tag pgconn.CommandTag) error {
			st.inserted[k] = tag.RowsAffected() == 1
			return nil
		})
		q.Queue(selectIdempotency, k.args()...).QueryRow(func(row pgx.Row) error {
			var ids []string
			if err := row.Scan(&ids); err != nil {
				return fmt.Errorf("read idempotency record: %w", err)
			}
			st.stored[k] = toEnvelopeIDs(ids)
			return nil
		})
	}
	if len(devUsers) > 0 {
		queueRecipients(q, devUsers, devIDs, users, st.next, st.active)
	}
	// Acks run after the device locks (a device both sent to and acked is
	// locked before its inbox rows, as DeleteDevice locks them) and before
	// this batch's inbox rows are written, so an ack never deletes an
	// envelope of its own batch.
	// In (user, device) order, like every other writer's locks, so that
	// two replicas' batches never wait for each other in a cycle.
	order := make([]int, len(b.Acks))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int {
		ax, ay := b.Acks[x], b.Acks[y]
		if c := strings.Compare(ax.User, ay.User); c != 0 {
			return c
		}
		return strings.Compare(string(ax.Device), string(ay.Device))
	})
	for _, i := range order {
		a := b.Acks[i]
		q.Queue(`DELETE FROM inbox WHERE user_localpart = $1 AND device_id = $2 AND seq <= $3`,
			a.User, string(a.Device), clamp(a.Cursor)).Exec(func(tag pgconn.CommandTag) error {
			res.Acks[i] = int(tag.RowsAffected())
			return nil
		})
	}
	if err := tx.SendBatch(ctx, q).Close(); err != nil {
		return nil, err
	}

	w, err := decideSends(b, res, &st, first, now, origin)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if !st.inserted[k] {
			continue
		}
		owner, ok := w.owner[k]
		switch {
		case ok && owner == first[k]:
		case !ok: // every send with the key failed
			w.q.Queue(`DELETE FROM idempotency_keys WHERE sender_node = $1 AND sender_localpart = $2
				AND sender_device = $3 AND idempotency_key = $4`, k.args()...)
		default: // the first send with the key failed, a later one did not
			w.q.Queue(`UPDATE idempotency_keys SET envelope_ids = $5 WHERE sender_node = $1
				AND sender_localpart = $2 AND sender_device = $3 AND idempotency_key = $4`,
				append(k.args(), envelopeIDs(&b.Sends[owner]))...)
		}
	}
	if w.q.Len() > 0 {
		if err := tx.SendBatch(ctx, w.q).Close(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func containsKey(m map[idemKey]int, k idemKey) bool {
	_, ok := m[k]
	return ok
}

// writes is what the sends of a batch decided to store.
type writes struct {
	q     *pgx.Batch
	owner map[idemKey]int // the send whose ids a key's record must hold
}

// decideSends fills in res.Sends from what the first round trip learnt:
// replays, refusals and, for the sends that go through, their cursors. It
// returns the statements that store them.
func decideSends(b *storage.Batch, res *storage.BatchResult, st *batchState, first map[idemKey]int, now time.Time, origin string) (writes, error) {
	w := writes{q: &pgx.Batch{}, owner: make(map[idemKey]int, len(first))}
	next := make(map[devKey]int64, len(st.next))
	var rows inboxRows
	var out outboxRows
	for i := range b.Sends {
		op, r := &b.Sends[i], &res.Sends[i]
		keyed := op.IdempotencyKey != ""
		k := sendKey(op)
		if keyed && !st.inserted[k] {
			ids, ok := st.stored[k]
			if !ok {
				return writes{}, fmt.Errorf("idempotency record of send %d vanished", i)
			}
			*r = storage.SendResult{IDs: ids, Replayed: true}
			continue
		}
		if j, ok := w.owner[k]; keyed && ok {
			*r = storage.SendResult{IDs: slices.Clone(res.Sends[j].IDs), Replayed: true}
			continue
		}
		if err := checkRecipients(op, st); err != nil {
			r.Err = err
			continue
		}
		t := now
		if !op.ServerTime.IsZero() {
			t = dbTime(op.ServerTime)
		}
		r.IDs = make([]valise.EnvelopeID, len(op.Envelopes))
		r.Deliveries = make([]storage.Delivery, 0, len(op.Envelopes))
		for j, e := range op.Envelopes {
			r.IDs[j] = e.ID
			if e.RecipientNode != "" {
				out.add(op, e, t)
				if !slices.Contains(r.Outbound, e.RecipientNode) {
					r.Outbound = append(r.Outbound, e.RecipientNode)
				}
				continue
			}
			dk := devKey{e.Recipient, e.RecipientDevice}
			c, ok := next[dk]
			if !ok {
				c = st.next[dk]
			}
			next[dk] = c + 1
			rows.add(op, e, c, t)
			r.Deliveries = append(r.Deliveries, storage.Delivery{User: e.Recipient, Device: e.RecipientDevice, Cursor: uint64(c)})
		}
		if keyed {
			w.owner[k] = i
		}
	}
	if len(next) > 0 {
		var us, ds, events []string
		var ns []int64
		for dk, n := range next {
			us, ds, ns = append(us, dk.user), append(ds, string(dk.device)), append(ns, n)
			events = append(events, sentPayload(dk.user, dk.device, origin))
		}
		w.q.Queue(advanceCursors, us, ds, ns)
		w.q.Queue(insertInbox, rows.users, rows.devices, rows.seqs, rows.ids,
			rows.senders, rows.nodes, rows.senderDevices, rows.times, rows.ciphertexts)
		// Delivered to the listeners of every replica once, and only if,
		// the batch commits.
		w.q.Queue(notifyEach, events)
	}
	if len(out.ids) > 0 {
		w.q.Queue(insertOutbox, out.dests, out.ids, out.senders, out.senderDevices,
			out.recipients, out.recipientDevices, out.times, out.expires, out.ciphertexts)
	}
	return w, nil
}

// checkRecipients returns why op cannot be delivered, or nil: the first
// envelope, in request order, whose recipient is unknown or deactivated.
func checkRecipients(op *storage.SendOp, st *batchState) error {
	for _, e := range op.Envelopes {
		if e.RecipientNode != "" {
			if op.ExpireTime.IsZero() {
				return valise.Errorf(valise.KindInvalid, "a send to another node needs an expire time")
			}
			continue
		}
		active, ok := st.active[e.Recipient]
		switch {
		case !ok:
			return valise.Errorf(valise.KindNotFound, "recipient user %q not found", e.Recipient)
		case !active:
			return valise.Errorf(valise.KindPermission, "recipient user %q is deactivated", e.Recipient)
		}
		if _, ok := st.next[devKey{e.Recipient, e.RecipientDevice}]; !ok {
			return valise.Errorf(valise.KindNotFound, "recipient device %q of user %q not found",
				e.RecipientDevice, e.Recipient)
		}
	}
	return nil
}

// inboxRows holds inbox rows column by column, for one insert over unnest.
type inboxRows struct {
	users, devices, ids, senders, nodes, senderDevices []string
	seqs                                               []int64
	times                                              []time.Time
	ciphertexts                                        [][]byte
}

func (r *inboxRows) add(op *storage.SendOp, e storage.NewEnvelope, seq int64, t time.Time) {
	r.append(e.Recipient, e.RecipientDevice, seq, e.ID, op.Sender, op.SenderDevice, t, e.Ciphertext)
}

func (r *inboxRows) append(user string, device valise.DeviceID, seq int64, id valise.EnvelopeID,
	sender valise.UserID, senderDevice valise.DeviceID, t time.Time, ct []byte) {
	if ct == nil {
		ct = []byte{}
	}
	r.users = append(r.users, user)
	r.devices = append(r.devices, string(device))
	r.seqs = append(r.seqs, seq)
	r.ids = append(r.ids, string(id))
	r.senders = append(r.senders, sender.Localpart)
	r.nodes = append(r.nodes, string(sender.Node))
	r.senderDevices = append(r.senderDevices, string(senderDevice))
	r.times = append(r.times, t)
	r.ciphertexts = append(r.ciphertexts, ct)
}

// outboxRows holds outbox rows column by column, for one insert over
// unnest.
type outboxRows struct {
	dests, ids, senders, senderDevices, recipients, recipientDevices []string
	times, expires                                                   []time.Time
	ciphertexts                                                      [][]byte
}

func (r *outboxRows) add(op *storage.SendOp, e storage.NewEnvelope, t time.Time) {
	ct := e.Ciphertext
	if ct == nil {
		ct = []byte{}
	}
	r.dests = append(r.dests, string(e.RecipientNode))
	r.ids = append(r.ids, string(e.ID))
	r.senders = append(r.senders, op.Sender.Localpart)
	r.senderDevices = append(r.senderDevices, string(op.SenderDevice))
	r.recipients = append(r.recipients, e.Recipient)
	r.recipientDevices = append(r.recipientDevices, string(e.RecipientDevice))
	r.times = append(r.times, t)
	r.expires = append(r.expires, dbTime(op.ExpireTime))
	r.ciphertexts = append(r.ciphertexts, ct)
}

func toEnvelopeIDs(ids []string) []valise.EnvelopeID {
	out := make([]valise.EnvelopeID, len(ids))
	for i, id := range ids {
		out[i] = valise.EnvelopeID(id)
	}
	return out
}

// clamp converts a cursor to the database's bigint, saturating.
func clamp(c uint64) int64 {
	if c > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(c)
}
