package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

const peerColumns = `name, address, ca_bundle, blocked, created_at, updated_at`

func scanPeer(row interface{ Scan(...any) error }) (storage.Peer, error) {
	var p storage.Peer
	var name string
	var created, updated int64
	if err := row.Scan(&name, &p.Address, &p.CABundle, &p.Blocked, &created, &updated); err != nil {
		return storage.Peer{}, err
	}
	p.Name = valise.NodeName(name)
	if p.CABundle == nil {
		p.CABundle = []byte{}
	}
	p.CreatedAt, p.UpdatedAt = fromDB(created), fromDB(updated)
	return p, nil
}

// AddPeer adds p and appends audit in the same transaction. A zero
// CreatedAt becomes the current time, a zero UpdatedAt CreatedAt.
func (s *Store) AddPeer(ctx context.Context, p storage.Peer, audit *storage.AuditRecord) error {
	created := orNow(p.CreatedAt)
	updated := p.UpdatedAt
	if updated.IsZero() {
		updated = created
	}
	bundle := p.CABundle
	if bundle == nil {
		bundle = []byte{}
	}
	return s.write(ctx, "add peer", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO peers (`+peerColumns+`) VALUES (?, ?, ?, ?, ?, ?)`,
			string(p.Name), p.Address, bundle, p.Blocked, toDB(created), toDB(updated))
		if err != nil {
			return translate(err)
		}
		return appendAuditTx(ctx, tx, audit)
	})
}

// GetPeer returns the peer named name.
func (s *Store) GetPeer(ctx context.Context, name valise.NodeName) (storage.Peer, error) {
	p, err := scanPeer(s.r.QueryRowContext(ctx, `SELECT `+peerColumns+` FROM peers WHERE name = ?`, string(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Peer{}, fmt.Errorf("sqlite: get peer: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.Peer{}, fmt.Errorf("sqlite: get peer: %w", err)
	}
	return p, nil
}

// ListPeers returns up to limit peers ordered by name (bytewise), after
// the name after.
func (s *Store) ListPeers(ctx context.Context, after valise.NodeName, limit int) ([]storage.Peer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list peers: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+peerColumns+` FROM peers WHERE name > ? ORDER BY name LIMIT ?`, string(after), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list peers: %w", err)
	}
	defer rows.Close()
	var ps []storage.Peer
	for rows.Next() {
		p, err := scanPeer(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list peers: %w", err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list peers: %w", err)
	}
	return ps, nil
}

// SetPeerBlocked blocks or unblocks a peer, setting UpdatedAt when the
// state changes.
func (s *Store) SetPeerBlocked(ctx context.Context, name valise.NodeName, blocked bool, audit *storage.AuditRecord) error {
	return s.write(ctx, "set peer blocked", func(tx *sql.Tx) error {
		// updateUser reports ErrNotFound when no row matched, for any table.
		if err := updateUser(ctx, tx, `UPDATE peers SET blocked = ?1,
				updated_at = CASE WHEN blocked = ?1 THEN updated_at ELSE ?2 END
			WHERE name = ?3`, blocked, toDB(time.Now()), string(name)); err != nil {
			return err
		}
		return appendAuditTx(ctx, tx, audit)
	})
}

// UpdatePeer replaces a peer's address and CA bundle.
func (s *Store) UpdatePeer(ctx context.Context, p storage.Peer, audit *storage.AuditRecord) error {
	updated := p.UpdatedAt
	if updated.IsZero() {
		updated = time.Now()
	}
	return s.write(ctx, "update peer", func(tx *sql.Tx) error {
		// updateUser reports ErrNotFound when no row matched, for any table.
		if err := updateUser(ctx, tx, `UPDATE peers SET address = ?, ca_bundle = ?, updated_at = ? WHERE name = ?`,
			p.Address, nonNil(p.CABundle), toDB(updated), string(p.Name)); err != nil {
			return err
		}
		return appendAuditTx(ctx, tx, audit)
	})
}

// RemovePeer deletes a peer.
func (s *Store) RemovePeer(ctx context.Context, name valise.NodeName, audit *storage.AuditRecord) error {
	return s.write(ctx, "remove peer", func(tx *sql.Tx) error {
		if err := updateUser(ctx, tx, `DELETE FROM peers WHERE name = ?`, string(name)); err != nil {
			return err
		}
		return appendAuditTx(ctx, tx, audit)
	})
}
