package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// PublishKeys stores keys for a device and returns how many unclaimed
// one-time keys it now holds. ErrNotFound if the device does not exist;
// ErrConflict if the identity key differs from the one stored or a
// one-time key id was used before (or twice in k); ErrPrecondition if the
// stock would pass maxStored, or if the device has no identity key and
// none is given. Nothing is written when an error is returned.
func (s *Store) PublishKeys(ctx context.Context, user string, device valise.DeviceID, k storage.PublishKeys, maxStored int) (int, error) {
	ids := make([]int64, len(k.OneTimeKeys))
	pubs := make([][]byte, len(k.OneTimeKeys))
	sigs := make([][]byte, len(k.OneTimeKeys))
	seen := make(map[uint32]bool, len(k.OneTimeKeys))
	for i, otk := range k.OneTimeKeys {
		if seen[otk.KeyID] {
			return 0, fmt.Errorf("postgres: publish keys: %w: one-time key id %d given twice", storage.ErrConflict, otk.KeyID)
		}
		seen[otk.KeyID] = true
		ids[i], pubs[i], sigs[i] = int64(otk.KeyID), otk.PublicKey, otk.Signature
	}
	var stock int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var identity []byte
		err := tx.QueryRow(ctx, `
			SELECT identity_key FROM devices
			WHERE user_localpart = $1 AND device_id = $2 FOR NO KEY UPDATE`,
			user, string(device)).Scan(&identity)
		if err != nil {
			return notFound(err)
		}
		switch {
		case identity == nil && len(k.IdentityKey) == 0:
			return fmt.Errorf("%w: device has no identity key and none is given", storage.ErrPrecondition)
		case identity != nil && len(k.IdentityKey) > 0 && !bytes.Equal(identity, k.IdentityKey):
			return fmt.Errorf("%w: identity key differs from the one stored", storage.ErrConflict)
		}
		var unclaimed, reused int
		err = tx.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE NOT claimed), count(*) FILTER (WHERE key_id = ANY($3))
			FROM one_time_keys WHERE user_localpart = $1 AND device_id = $2`,
			user, string(device), ids).Scan(&unclaimed, &reused)
		if err != nil {
			return err
		}
		if reused > 0 {
			return fmt.Errorf("%w: one-time key id used before", storage.ErrConflict)
		}
		stock = unclaimed + len(ids)
		if stock > maxStored {
			return fmt.Errorf("%w: one-time key stock would pass %d", storage.ErrPrecondition, maxStored)
		}
		b := &pgx.Batch{}
		if identity == nil {
			b.Queue(`UPDATE devices SET identity_key = $3 WHERE user_localpart = $1 AND device_id = $2`,
				user, string(device), k.IdentityKey)
		}
		if spk := k.SignedPreKey; len(spk.PublicKey) > 0 {
			b.Queue(`UPDATE devices SET signed_prekey_id = $3, signed_prekey = $4, signed_prekey_sig = $5
				WHERE user_localpart = $1 AND device_id = $2`,
				user, string(device), int64(spk.KeyID), spk.PublicKey, spk.Signature)
		}
		if len(ids) > 0 {
			b.Queue(`INSERT INTO one_time_keys (user_localpart, device_id, key_id, public_key, signature)
				SELECT $1, $2, k.id, k.pub, k.sig FROM unnest($3::bigint[], $4::bytea[], $5::bytea[]) AS k(id, pub, sig)`,
				user, string(device), ids, pubs, sigs)
		}
		return translate(tx.SendBatch(ctx, b).Close())
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: publish keys: %w", err)
	}
	return stock, nil
}

// CountOneTimeKeys returns the device's unclaimed one-time keys.
// ErrNotFound if the device does not exist.
func (s *Store) CountOneTimeKeys(ctx context.Context, user string, device valise.DeviceID) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM one_time_keys o
			WHERE o.user_localpart = d.user_localpart AND o.device_id = d.device_id AND NOT o.claimed)
		FROM devices d WHERE d.user_localpart = $1 AND d.device_id = $2`,
		user, string(device)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres: count one-time keys: %w", notFound(err))
	}
	return n, nil
}

// GetDeviceKeys returns the keys of every device of user that has
// published an identity key, ordered by device id. An unknown user has
// none.
func (s *Store) GetDeviceKeys(ctx context.Context, user string) ([]valise.DeviceKeys, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT device_id, identity_key, coalesce(signed_prekey_id, 0), signed_prekey, signed_prekey_sig
		FROM devices WHERE user_localpart = $1 AND identity_key IS NOT NULL
		ORDER BY device_id`, user)
	if err != nil {
		return nil, fmt.Errorf("postgres: get device keys: %w", err)
	}
	keys, err := pgx.AppendRows([]valise.DeviceKeys(nil), rows, func(row pgx.CollectableRow) (valise.DeviceKeys, error) {
		var dk valise.DeviceKeys
		var id string
		var keyID int64
		err := row.Scan(&id, &dk.IdentityKey, &keyID, &dk.SignedPreKey.PublicKey, &dk.SignedPreKey.Signature)
		dk.Device, dk.SignedPreKey.KeyID = valise.DeviceID(id), uint32(keyID)
		return dk, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: get device keys: %w", err)
	}
	return keys, nil
}

// ClaimOneTimeKey removes and returns the device's unclaimed one-time key
// with the lowest id; each key is returned at most once, even under
// concurrent claims from several processes. When none is left it returns
// the signed prekey with fallback true. ErrNotFound if the device does not
// exist or has published no identity key, or if it has neither a one-time
// key nor a signed prekey left to give.
func (s *Store) ClaimOneTimeKey(ctx context.Context, user string, device valise.DeviceID) (valise.PreKey, bool, error) {
	var key valise.PreKey
	var fallback bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// Claimers of one device take turns on its row: a claim that only
		// skipped rows locked by another claimer could wrongly see an empty
		// stock.
		var hasIdentity bool
		var spkID *int64
		var spk, spkSig []byte
		err := tx.QueryRow(ctx, `
			SELECT identity_key IS NOT NULL, signed_prekey_id, signed_prekey, signed_prekey_sig
			FROM devices WHERE user_localpart = $1 AND device_id = $2 FOR NO KEY UPDATE`,
			user, string(device)).Scan(&hasIdentity, &spkID, &spk, &spkSig)
		if err != nil {
			return notFound(err)
		}
		if !hasIdentity {
			return fmt.Errorf("%w: device has published no keys", storage.ErrNotFound)
		}
		var id int64
		err = tx.QueryRow(ctx, `
			UPDATE one_time_keys o SET claimed = true, public_key = NULL, signature = NULL
			FROM (SELECT key_id, public_key, signature FROM one_time_keys
				WHERE user_localpart = $1 AND device_id = $2 AND NOT claimed
				ORDER BY key_id LIMIT 1) k
			WHERE o.user_localpart = $1 AND o.device_id = $2 AND o.key_id = k.key_id
			RETURNING k.key_id, k.public_key, k.signature`,
			user, string(device)).Scan(&id, &key.PublicKey, &key.Signature)
		switch {
		case err == nil:
			key.KeyID, fallback = uint32(id), false
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		case spkID == nil || len(spk) == 0:
			return fmt.Errorf("%w: device has no one-time key and no signed prekey", storage.ErrNotFound)
		}
		key = valise.PreKey{KeyID: uint32(*spkID), PublicKey: spk, Signature: spkSig}
		fallback = true
		return nil
	})
	if err != nil {
		return valise.PreKey{}, false, fmt.Errorf("postgres: claim one-time key: %w", err)
	}
	return key, fallback, nil
}
