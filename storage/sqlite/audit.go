package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/valise-im/valise/storage"
)

// AppendAudit appends r to the hash-chained audit log. A zero Time becomes
// the current time; the stored Time is truncated to microseconds, in UTC.
func (s *Store) AppendAudit(ctx context.Context, r storage.AuditRecord) (storage.AuditEvent, error) {
	var ev storage.AuditEvent
	err := s.write(ctx, "append audit", func(tx *sql.Tx) error {
		var err error
		ev, err = appendAudit(ctx, tx, r)
		return err
	})
	return ev, err
}

// appendAuditTx appends r, if not nil, inside tx.
func appendAuditTx(ctx context.Context, tx *sql.Tx, r *storage.AuditRecord) error {
	if r == nil {
		return nil
	}
	_, err := appendAudit(ctx, tx, *r)
	return err
}

// appendAudit appends r after the last event inside tx. The write
// connection is the only writer, so reading the last event and inserting
// the next cannot race.
func appendAudit(ctx context.Context, tx *sql.Tx, r storage.AuditRecord) (storage.AuditEvent, error) {
	r.Time = orNow(r.Time).UTC().Truncate(time.Microsecond)
	var seq int64
	var prev []byte
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return storage.AuditEvent{}, fmt.Errorf("audit: %w", err)
	}
	seq++
	ev := storage.AuditEvent{AuditRecord: r, Seq: seq, PrevHash: prev, Hash: storage.AuditHash(prev, seq, r)}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit (seq, time, actor, action, target, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		ev.Seq, toDB(r.Time), r.Actor, r.Action, r.Target, r.Detail, ev.PrevHash, ev.Hash)
	if err != nil {
		return storage.AuditEvent{}, fmt.Errorf("audit: %w", translate(err))
	}
	return ev, nil
}

// ListAudit returns up to limit events with Seq > after, in order.
func (s *Store) ListAudit(ctx context.Context, after int64, limit int) ([]storage.AuditEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT seq, time, actor, action, target, detail, prev_hash, hash
		FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %w", err)
	}
	defer rows.Close()
	var evs []storage.AuditEvent
	for rows.Next() {
		var ev storage.AuditEvent
		var t int64
		if err := rows.Scan(&ev.Seq, &t, &ev.Actor, &ev.Action, &ev.Target, &ev.Detail, &ev.PrevHash, &ev.Hash); err != nil {
			return nil, fmt.Errorf("sqlite: list audit: %w", err)
		}
		ev.Time = fromDB(t)
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list audit: %w", err)
	}
	return evs, nil
}
