package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// PinnedSigningKeys returns the signing keys pinned for node, ordered by
// ValidFrom then KeyID.
func (s *Store) PinnedSigningKeys(ctx context.Context, node valise.NodeName) ([]storage.SigningKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT key_id, public_key, valid_from, valid_until FROM peer_signing_keys
		WHERE node = ? ORDER BY valid_from, key_id`, string(node))
	if err != nil {
		return nil, fmt.Errorf("sqlite: pinned signing keys: %w", err)
	}
	defer rows.Close()
	var keys []storage.SigningKey
	for rows.Next() {
		var k storage.SigningKey
		var from, until int64
		if err := rows.Scan(&k.KeyID, &k.PublicKey, &from, &until); err != nil {
			return nil, fmt.Errorf("sqlite: pinned signing keys: %w", err)
		}
		k.ValidFrom, k.ValidUntil = fromDB(from), fromDB(until)
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: pinned signing keys: %w", err)
	}
	return keys, nil
}

// PinSigningKeys pins the keys of node not pinned yet, all or none. A key
// pinned already keeps its stored validity.
func (s *Store) PinSigningKeys(ctx context.Context, node valise.NodeName, keys []storage.SigningKey) error {
	return s.write(ctx, "pin signing keys", func(tx *sql.Tx) error {
		for _, k := range keys {
			var pinned []byte
			err := tx.QueryRowContext(ctx, `SELECT public_key FROM peer_signing_keys WHERE node = ? AND key_id = ?`,
				string(node), k.KeyID).Scan(&pinned)
			if err == nil {
				if !bytes.Equal(pinned, k.PublicKey) {
					return fmt.Errorf("key %q of %s is pinned with another public key: %w", k.KeyID, node, storage.ErrConflict)
				}
				continue
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO peer_signing_keys (node, key_id, public_key, valid_from, valid_until)
				VALUES (?, ?, ?, ?, ?)`, string(node), k.KeyID, nonNil(k.PublicKey), toDB(k.ValidFrom), toDB(k.ValidUntil)); err != nil {
				return translate(err)
			}
		}
		return nil
	})
}
