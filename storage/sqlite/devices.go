package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

const deviceColumns = `user_localpart, device_id, display_name, created_at, identity_key IS NOT NULL`

func scanDevice(row interface{ Scan(...any) error }, extra ...any) (storage.Device, error) {
	var d storage.Device
	var created int64
	dest := append([]any{&d.User, &d.ID, &d.DisplayName, &created, &d.HasKeys}, extra...)
	if err := row.Scan(dest...); err != nil {
		return storage.Device{}, err
	}
	d.CreatedAt = fromDB(created)
	return d, nil
}

// CreateDevice creates d with its token hash. A zero CreatedAt becomes the
// current time.
func (s *Store) CreateDevice(ctx context.Context, d storage.Device, tokenHash []byte) error {
	return s.write(ctx, "create device", func(tx *sql.Tx) error {
		var active bool
		err := tx.QueryRowContext(ctx, `SELECT active FROM users WHERE localpart = ?`, d.User).Scan(&active)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user: %w", storage.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if !active {
			return fmt.Errorf("user is deactivated: %w", storage.ErrPrecondition)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO devices (user_localpart, device_id, display_name, created_at, token_hash)
			VALUES (?, ?, ?, ?, ?)`, d.User, d.ID, d.DisplayName, toDB(orNow(d.CreatedAt)), tokenHash)
		return translate(err)
	})
}

// GetDevice returns one device.
func (s *Store) GetDevice(ctx context.Context, user string, id valise.DeviceID) (storage.Device, error) {
	d, err := scanDevice(s.r.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices
		WHERE user_localpart = ? AND device_id = ?`, user, id))
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Device{}, fmt.Errorf("sqlite: get device: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.Device{}, fmt.Errorf("sqlite: get device: %w", err)
	}
	return d, nil
}

// ListDevices returns up to limit devices of user ordered by id, after
// the id after.
func (s *Store) ListDevices(ctx context.Context, user string, after valise.DeviceID, limit int) ([]storage.Device, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list devices: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices
		WHERE user_localpart = ? AND device_id > ? ORDER BY device_id LIMIT ?`, user, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list devices: %w", err)
	}
	defer rows.Close()
	var ds []storage.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list devices: %w", err)
		}
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list devices: %w", err)
	}
	return ds, nil
}

// DeleteDevice deletes a device with its token, keys and inbox, and
// appends audit, in one transaction.
func (s *Store) DeleteDevice(ctx context.Context, user string, id valise.DeviceID, audit *storage.AuditRecord) error {
	return s.write(ctx, "delete device", func(tx *sql.Tx) error {
		// Keys, key ids and inbox rows go by ON DELETE CASCADE.
		res, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE user_localpart = ? AND device_id = ?`, user, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrNotFound
		}
		return appendAuditTx(ctx, tx, audit)
	})
}

// Authenticate returns the device whose token hashes to tokenHash.
func (s *Store) Authenticate(ctx context.Context, tokenHash []byte) (storage.Device, error) {
	var active bool
	d, err := scanDevice(s.r.QueryRowContext(ctx, `SELECT d.user_localpart, d.device_id, d.display_name,
			d.created_at, d.identity_key IS NOT NULL, u.active
		FROM devices d JOIN users u ON u.localpart = d.user_localpart
		WHERE d.token_hash = ?`, tokenHash), &active)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Device{}, fmt.Errorf("sqlite: authenticate: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.Device{}, fmt.Errorf("sqlite: authenticate: %w", err)
	}
	if !active {
		return storage.Device{}, fmt.Errorf("sqlite: authenticate: user is deactivated: %w", storage.ErrPrecondition)
	}
	return d, nil
}
