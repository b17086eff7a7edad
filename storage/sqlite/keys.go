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

// PublishKeys stores keys for a device and returns its unclaimed one-time
// key count. Nothing is written when it returns an error.
func (s *Store) PublishKeys(ctx context.Context, user string, device valise.DeviceID, k storage.PublishKeys, maxStored int) (int, error) {
	var count int
	err := s.write(ctx, "publish keys", func(tx *sql.Tx) error {
		var stored []byte
		err := tx.QueryRowContext(ctx, `SELECT identity_key FROM devices WHERE user_localpart = ? AND device_id = ?`,
			user, device).Scan(&stored)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device: %w", storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		switch {
		case len(k.IdentityKey) == 0 && stored == nil:
			return fmt.Errorf("device has no identity key: %w", storage.ErrPrecondition)
		case len(k.IdentityKey) > 0 && stored != nil && !bytes.Equal(k.IdentityKey, stored):
			return fmt.Errorf("identity key differs: %w", storage.ErrConflict)
		case len(k.IdentityKey) > 0 && stored == nil:
			if _, err := tx.ExecContext(ctx, `UPDATE devices SET identity_key = ? WHERE user_localpart = ? AND device_id = ?`,
				k.IdentityKey, user, device); err != nil {
				return err
			}
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM one_time_keys WHERE user_localpart = ? AND device_id = ?`,
			user, device).Scan(&count); err != nil {
			return err
		}
		if count+len(k.OneTimeKeys) > maxStored {
			return fmt.Errorf("%d one-time keys would pass the limit of %d: %w", count+len(k.OneTimeKeys), maxStored, storage.ErrPrecondition)
		}
		for _, otk := range k.OneTimeKeys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO one_time_key_ids (user_localpart, device_id, key_id) VALUES (?, ?, ?)`,
				user, device, otk.KeyID); err != nil {
				return fmt.Errorf("one-time key %d: %w", otk.KeyID, translate(err))
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO one_time_keys (user_localpart, device_id, key_id, public_key, signature)
				VALUES (?, ?, ?, ?, ?)`, user, device, otk.KeyID, nonNil(otk.PublicKey), nonNil(otk.Signature)); err != nil {
				return fmt.Errorf("one-time key %d: %w", otk.KeyID, translate(err))
			}
		}
		count += len(k.OneTimeKeys)
		if spk := k.SignedPreKey; len(spk.PublicKey) > 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE devices SET spk_id = ?, spk_public = ?, spk_signature = ?
				WHERE user_localpart = ? AND device_id = ?`, spk.KeyID, spk.PublicKey, nonNil(spk.Signature), user, device); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return count, nil
}

// CountOneTimeKeys returns the device's unclaimed one-time keys.
func (s *Store) CountOneTimeKeys(ctx context.Context, user string, device valise.DeviceID) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM one_time_keys k
			WHERE k.user_localpart = d.user_localpart AND k.device_id = d.device_id)
		FROM devices d WHERE d.user_localpart = ? AND d.device_id = ?`, user, device).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("sqlite: count one-time keys: %w", storage.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: count one-time keys: %w", err)
	}
	return n, nil
}

// GetDeviceKeys returns the keys of every device of user with an identity
// key, ordered by device id.
func (s *Store) GetDeviceKeys(ctx context.Context, user string) ([]valise.DeviceKeys, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT device_id, identity_key, COALESCE(spk_id, 0), spk_public, spk_signature
		FROM devices WHERE user_localpart = ? AND identity_key IS NOT NULL ORDER BY device_id`, user)
	if err != nil {
		return nil, fmt.Errorf("sqlite: get device keys: %w", err)
	}
	defer rows.Close()
	var ks []valise.DeviceKeys
	for rows.Next() {
		var k valise.DeviceKeys
		if err := rows.Scan(&k.Device, &k.IdentityKey, &k.SignedPreKey.KeyID, &k.SignedPreKey.PublicKey, &k.SignedPreKey.Signature); err != nil {
			return nil, fmt.Errorf("sqlite: get device keys: %w", err)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: get device keys: %w", err)
	}
	return ks, nil
}

// ClaimOneTimeKey removes and returns the device's lowest unclaimed
// one-time key, or its signed prekey with fallback true when none is left.
// It fails with ErrNotFound if the device has no identity key, or has
// neither one-time keys nor a signed prekey.
func (s *Store) ClaimOneTimeKey(ctx context.Context, user string, device valise.DeviceID) (valise.PreKey, bool, error) {
	var key valise.PreKey
	var fallback bool
	err := s.write(ctx, "claim one-time key", func(tx *sql.Tx) error {
		var hasIdentity bool
		var spk valise.PreKey
		err := tx.QueryRowContext(ctx, `SELECT identity_key IS NOT NULL, COALESCE(spk_id, 0), spk_public, spk_signature
			FROM devices WHERE user_localpart = ? AND device_id = ?`, user, device).
			Scan(&hasIdentity, &spk.KeyID, &spk.PublicKey, &spk.Signature)
		if errors.Is(err, sql.ErrNoRows) || err == nil && !hasIdentity {
			return fmt.Errorf("device or its keys: %w", storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `DELETE FROM one_time_keys
			WHERE user_localpart = ?1 AND device_id = ?2 AND key_id = (
				SELECT min(key_id) FROM one_time_keys WHERE user_localpart = ?1 AND device_id = ?2)
			RETURNING key_id, public_key, signature`, user, device).Scan(&key.KeyID, &key.PublicKey, &key.Signature)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		case len(spk.PublicKey) == 0:
			return fmt.Errorf("no one-time key and no signed prekey: %w", storage.ErrNotFound)
		}
		key, fallback = spk, true
		return nil
	})
	if err != nil {
		return valise.PreKey{}, false, err
	}
	return key, fallback, nil
}

// nonNil returns b, or an empty slice for nil, so that NOT NULL columns
// accept an empty value.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
