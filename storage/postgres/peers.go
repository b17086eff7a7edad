package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// AddPeer adds p and appends audit, if not nil, in the same transaction.
// A zero CreatedAt is set to now, a zero UpdatedAt to CreatedAt; both are
// kept to the microsecond. ErrConflict if a peer of that name exists.
func (s *Store) AddPeer(ctx context.Context, p storage.Peer, audit *storage.AuditRecord) error {
	created := dbTime(p.CreatedAt)
	if p.CreatedAt.IsZero() {
		created = s.timestamp()
	}
	updated := dbTime(p.UpdatedAt)
	if p.UpdatedAt.IsZero() {
		updated = created
	}
	bundle := p.CABundle
	if bundle == nil {
		bundle = []byte{}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO peers (name, address, ca_bundle, blocked, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			string(p.Name), p.Address, bundle, p.Blocked, created, updated); err != nil {
			return translate(err)
		}
		return s.appendAuditIf(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("postgres: add peer: %w", err)
	}
	return nil
}

// GetPeer returns the peer. ErrNotFound if there is none.
func (s *Store) GetPeer(ctx context.Context, name valise.NodeName) (storage.Peer, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT name, address, ca_bundle, blocked, created_at, updated_at
		FROM peers WHERE name = $1`, string(name))
	if err != nil {
		return storage.Peer{}, fmt.Errorf("postgres: get peer: %w", err)
	}
	p, err := pgx.CollectExactlyOneRow(rows, scanPeer)
	if err != nil {
		return storage.Peer{}, fmt.Errorf("postgres: get peer: %w", notFound(err))
	}
	return p, nil
}

// ListPeers returns up to limit peers ordered by name (bytewise), starting
// after the name after ("" for the first page).
func (s *Store) ListPeers(ctx context.Context, after valise.NodeName, limit int) ([]storage.Peer, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT name, address, ca_bundle, blocked, created_at, updated_at
		FROM peers WHERE name > $1 ORDER BY name LIMIT $2`, string(after), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list peers: %w", err)
	}
	peers, err := pgx.AppendRows([]storage.Peer(nil), rows, scanPeer)
	if err != nil {
		return nil, fmt.Errorf("postgres: list peers: %w", err)
	}
	return peers, nil
}

func scanPeer(row pgx.CollectableRow) (storage.Peer, error) {
	var p storage.Peer
	var name string
	err := row.Scan(&name, &p.Address, &p.CABundle, &p.Blocked, &p.CreatedAt, &p.UpdatedAt)
	p.Name = valise.NodeName(name)
	if p.CABundle == nil {
		p.CABundle = []byte{}
	}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

// SetPeerBlocked blocks or unblocks a peer, setting UpdatedAt when the
// state changes, and appends audit, if not nil, in the same transaction.
// ErrNotFound if the peer does not exist.
func (s *Store) SetPeerBlocked(ctx context.Context, name valise.NodeName, blocked bool, audit *storage.AuditRecord) error {
	now := s.timestamp()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE peers SET blocked = $2,
				updated_at = CASE WHEN blocked = $2 THEN updated_at ELSE $3 END
			WHERE name = $1`, string(name), blocked, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrNotFound
		}
		return s.appendAuditIf(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("postgres: set peer blocked: %w", err)
	}
	return nil
}

// UpdatePeer replaces a peer's address and CA bundle, setting UpdatedAt,
// and appends audit, if not nil, in the same transaction.
func (s *Store) UpdatePeer(ctx context.Context, p storage.Peer, audit *storage.AuditRecord) error {
	updated := s.timestamp()
	if !p.UpdatedAt.IsZero() {
		updated = dbTime(p.UpdatedAt)
	}
	bundle := p.CABundle
	if bundle == nil {
		bundle = []byte{}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE peers SET address = $2, ca_bundle = $3, updated_at = $4 WHERE name = $1`,
			string(p.Name), p.Address, bundle, updated)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrNotFound
		}
		return s.appendAuditIf(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("postgres: update peer: %w", err)
	}
	return nil
}

// RemovePeer deletes a peer and appends audit, if not nil, in the same
// transaction. ErrNotFound if the peer does not exist.
func (s *Store) RemovePeer(ctx context.Context, name valise.NodeName, audit *storage.AuditRecord) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM peers WHERE name = $1`, string(name))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrNotFound
		}
		return s.appendAuditIf(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("postgres: remove peer: %w", err)
	}
	return nil
}
