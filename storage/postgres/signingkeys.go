package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// PinnedSigningKeys returns the signing keys pinned for node, ordered by
// ValidFrom then KeyID (bytewise).
func (s *Store) PinnedSigningKeys(ctx context.Context, node valise.NodeName) ([]storage.SigningKey, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT key_id, public_key, valid_from, valid_until FROM peer_signing_keys
		WHERE node = $1 ORDER BY valid_from, key_id`, string(node))
	if err != nil {
		return nil, fmt.Errorf("postgres: pinned signing keys: %w", err)
	}
	keys, err := pgx.AppendRows([]storage.SigningKey(nil), rows, func(row pgx.CollectableRow) (storage.SigningKey, error) {
		var k storage.SigningKey
		err := row.Scan(&k.KeyID, &k.PublicKey, &k.ValidFrom, &k.ValidUntil)
		k.ValidFrom, k.ValidUntil = k.ValidFrom.UTC(), k.ValidUntil.UTC()
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: pinned signing keys: %w", err)
	}
	return keys, nil
}

// PinSigningKeys pins the keys of node not pinned yet; see
// storage.Federation. One round trip inserts the new keys and then, in a
// statement of its own that sees what concurrent pins committed, looks
// for a key id pinned with other bytes (ErrConflict, and the transaction
// rolls back).
func (s *Store) PinSigningKeys(ctx context.Context, node valise.NodeName, keys []storage.SigningKey) error {
	if len(keys) == 0 {
		return nil
	}
	ids := make([]string, len(keys))
	pubs := make([][]byte, len(keys))
	froms := make([]time.Time, len(keys))
	untils := make([]time.Time, len(keys))
	for i, k := range keys {
		ids[i], pubs[i], froms[i], untils[i] = k.KeyID, k.PublicKey, dbTime(k.ValidFrom), dbTime(k.ValidUntil)
		if pubs[i] == nil {
			pubs[i] = []byte{}
		}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var conflicts int
		q := &pgx.Batch{}
		q.Queue(`
			INSERT INTO peer_signing_keys (node, key_id, public_key, valid_from, valid_until)
			SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::timestamptz[], $5::timestamptz[])
			ON CONFLICT DO NOTHING`, string(node), ids, pubs, froms, untils)
		q.Queue(`
			SELECT count(*) FROM peer_signing_keys p
			JOIN unnest($2::text[], $3::bytea[]) AS k(id, pub) ON p.key_id = k.id
			WHERE p.node = $1 AND p.public_key <> k.pub`, string(node), ids, pubs).
			QueryRow(func(row pgx.Row) error { return row.Scan(&conflicts) })
		if err := tx.SendBatch(ctx, q).Close(); err != nil {
			return err
		}
		if conflicts > 0 {
			return fmt.Errorf("%w: a key id of %s is pinned with another key", storage.ErrConflict, node)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: pin signing keys: %w", err)
	}
	return nil
}
