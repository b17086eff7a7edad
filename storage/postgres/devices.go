package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// CreateDevice creates d with the token whose SHA-256 is tokenHash. A zero
// CreatedAt is set to now; HasKeys is ignored (a new device has no keys).
// ErrNotFound if the user does not exist, ErrPrecondition if the user is
// deactivated, ErrConflict if the device id (per user) or token hash is
// taken.
func (s *Store) CreateDevice(ctx context.Context, d storage.Device, tokenHash []byte) error {
	created := dbTime(d.CreatedAt)
	if d.CreatedAt.IsZero() {
		created = s.timestamp()
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// FOR SHARE holds off a concurrent deactivation, which would
		// otherwise miss the new device.
		var active bool
		err := tx.QueryRow(ctx, `SELECT active FROM users WHERE localpart = $1 FOR SHARE`, d.User).Scan(&active)
		if err != nil {
			return notFound(err)
		}
		if !active {
			return fmt.Errorf("%w: user is deactivated", storage.ErrPrecondition)
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO devices (user_localpart, device_id, display_name, created_at, token_hash)
			VALUES ($1, $2, $3, $4, $5)`,
			d.User, string(d.ID), d.DisplayName, created, tokenHash)
		return translate(err)
	})
	if err != nil {
		return fmt.Errorf("postgres: create device: %w", err)
	}
	return nil
}

// deviceColumns are the columns scanDevice reads, in order.
const deviceColumns = `user_localpart, device_id, display_name, created_at, identity_key IS NOT NULL`

func scanDevice(row pgx.CollectableRow) (storage.Device, error) {
	var d storage.Device
	var id string
	err := row.Scan(&d.User, &id, &d.DisplayName, &d.CreatedAt, &d.HasKeys)
	d.ID = valise.DeviceID(id)
	d.CreatedAt = d.CreatedAt.UTC()
	return d, err
}

// GetDevice returns one device. ErrNotFound if there is none.
func (s *Store) GetDevice(ctx context.Context, user string, id valise.DeviceID) (storage.Device, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+deviceColumns+`
		FROM devices WHERE user_localpart = $1 AND device_id = $2`, user, string(id))
	if err != nil {
		return storage.Device{}, fmt.Errorf("postgres: get device: %w", err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanDevice)
	if err != nil {
		return storage.Device{}, fmt.Errorf("postgres: get device: %w", notFound(err))
	}
	return d, nil
}

// ListDevices returns up to limit devices of user ordered by id
// (bytewise), starting after id after ("" for the first page). An unknown
// user has no devices.
func (s *Store) ListDevices(ctx context.Context, user string, after valise.DeviceID, limit int) ([]storage.Device, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+deviceColumns+`
		FROM devices WHERE user_localpart = $1 AND device_id > $2
		ORDER BY device_id LIMIT $3`, user, string(after), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list devices: %w", err)
	}
	ds, err := pgx.AppendRows([]storage.Device(nil), rows, scanDevice)
	if err != nil {
		return nil, fmt.Errorf("postgres: list devices: %w", err)
	}
	return ds, nil
}

// DeleteDevice deletes a device with its token, keys and inbox, and
// appends audit if not nil, in one transaction that also notifies an
// EventRevoke (see ListenEvents). ErrNotFound if the device does not
// exist.
func (s *Store) DeleteDevice(ctx context.Context, user string, id valise.DeviceID, audit *storage.AuditRecord) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM devices WHERE user_localpart = $1 AND device_id = $2`,
			user, string(id))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrNotFound
		}
		if _, err := tx.Exec(ctx, notifyOne, revokePayload(user, id)); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		return s.appendAuditIf(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("postgres: delete device: %w", err)
	}
	return nil
}

// Authenticate returns the device whose token hashes to tokenHash.
// ErrNotFound for an unknown token; ErrPrecondition if the user is
// deactivated.
func (s *Store) Authenticate(ctx context.Context, tokenHash []byte) (storage.Device, error) {
	var d storage.Device
	var id string
	var active bool
	err := s.pool.QueryRow(ctx, `
		SELECT d.user_localpart, d.device_id, d.display_name, d.created_at,
			d.identity_key IS NOT NULL, u.active
		FROM devices d JOIN users u ON u.localpart = d.user_localpart
		WHERE d.token_hash = $1`, tokenHash).
		Scan(&d.User, &id, &d.DisplayName, &d.CreatedAt, &d.HasKeys, &active)
	if err != nil {
		return storage.Device{}, fmt.Errorf("postgres: authenticate: %w", notFound(err))
	}
	if !active {
		return storage.Device{}, fmt.Errorf("postgres: authenticate: %w: user is deactivated", storage.ErrPrecondition)
	}
	d.ID = valise.DeviceID(id)
	d.CreatedAt = d.CreatedAt.UTC()
	return d, nil
}
