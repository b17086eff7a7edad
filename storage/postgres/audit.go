package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise/storage"
)

// AppendAudit appends r on its own and returns the stored event. A zero
// Time becomes the current time; the stored Time is truncated to
// microseconds, in UTC.
func (s *Store) AppendAudit(ctx context.Context, r storage.AuditRecord) (storage.AuditEvent, error) {
	var ev storage.AuditEvent
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		ev, err = s.appendAudit(ctx, tx, r)
		return err
	})
	if err != nil {
		return storage.AuditEvent{}, fmt.Errorf("postgres: append audit: %w", err)
	}
	return ev, nil
}

// ListAudit returns up to limit events with Seq > after, in order.
func (s *Store) ListAudit(ctx context.Context, after int64, limit int) ([]storage.AuditEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT seq, at, actor, action, target, detail, prev_hash, hash
		FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list audit: %w", err)
	}
	events, err := pgx.AppendRows([]storage.AuditEvent(nil), rows, func(row pgx.CollectableRow) (storage.AuditEvent, error) {
		var e storage.AuditEvent
		var actor, action, target, detail []byte
		err := row.Scan(&e.Seq, &e.Time, &actor, &action, &target, &detail, &e.PrevHash, &e.Hash)
		e.Time = e.Time.UTC()
		e.Actor, e.Action, e.Target, e.Detail = string(actor), string(action), string(target), string(detail)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list audit: %w", err)
	}
	return events, nil
}

// appendAuditIf appends r in tx unless it is nil.
func (s *Store) appendAuditIf(ctx context.Context, tx pgx.Tx, r *storage.AuditRecord) error {
	if r == nil {
		return nil
	}
	_, err := s.appendAudit(ctx, tx, *r)
	return err
}

// appendAudit appends r in tx. It locks the audit head row until tx ends,
// so appenders take consecutive sequence numbers and chain onto one
// another. Callers take this lock last in their transaction, after the
// rows they change, so it is never held while waiting for another lock.
func (s *Store) appendAudit(ctx context.Context, tx pgx.Tx, r storage.AuditRecord) (storage.AuditEvent, error) {
	if r.Time.IsZero() {
		r.Time = s.now()
	}
	r.Time = dbTime(r.Time)
	var last int64
	var prev []byte
	if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head FOR UPDATE`).Scan(&last, &prev); err != nil {
		return storage.AuditEvent{}, fmt.Errorf("lock audit head: %w", err)
	}
	ev := storage.AuditEvent{AuditRecord: r, Seq: last + 1, PrevHash: prev}
	ev.Hash = storage.AuditHash(prev, ev.Seq, r)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO audit_log (seq, at, actor, action, target, detail, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		ev.Seq, r.Time, []byte(r.Actor), []byte(r.Action), []byte(r.Target), []byte(r.Detail), prev, ev.Hash)
	b.Queue(`UPDATE audit_head SET seq = $1, hash = $2`, ev.Seq, ev.Hash)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return storage.AuditEvent{}, fmt.Errorf("write audit event: %w", err)
	}
	return ev, nil
}
