package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/valise-im/valise/storage"
)

const userColumns = `localpart, password_hash, active, created_at, updated_at`

func scanUser(row interface{ Scan(...any) error }) (storage.User, error) {
	var u storage.User
	var created, updated int64
	if err := row.Scan(&u.Localpart, &u.PasswordHash, &u.Active, &created, &updated); err != nil {
		return storage.User{}, err
	}
	u.CreatedAt, u.UpdatedAt = fromDB(created), fromDB(updated)
	return u, nil
}

// CreateUser creates u and appends audit in the same transaction. Zero
// CreatedAt or UpdatedAt become the current time.
func (s *Store) CreateUser(ctx context.Context, u storage.User, audit *storage.AuditRecord) error {
	created := orNow(u.CreatedAt)
	updated := u.UpdatedAt
	if updated.IsZero() {
		updated = created
	}
	return s.write(ctx, "create user", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?, ?, ?, ?, ?)`,
			u.Localpart, u.PasswordHash, u.Active, toDB(created), toDB(updated))
		if err != nil {
			return translate(err)
		}
		return appendAuditTx(ctx, tx, audit)
	})
}

// GetUser returns the user named localpart.
func (s *Store) GetUser(ctx context.Context, localpart string) (storage.User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE localpart = ?`, localpart))
	if errors.Is(err, sql.ErrNoRows) {
		return storage.User{}, fmt.Errorf("sqlite: get user: %w", storage.ErrNotFound)
	}
	if err != nil {
		return storage.User{}, fmt.Errorf("sqlite: get user: %w", err)
	}
	return u, nil
}

// ListUsers returns up to limit users ordered by localpart (bytewise),
// after the localpart after.
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]storage.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list users: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+userColumns+` FROM users WHERE localpart > ? ORDER BY localpart LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list users: %w", err)
	}
	defer rows.Close()
	var us []storage.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list users: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list users: %w", err)
	}
	return us, nil
}

// SetUserActive sets the user's active flag; deactivation deletes every
// device of the user with its token, keys and inbox.
func (s *Store) SetUserActive(ctx context.Context, localpart string, active bool, audit *storage.AuditRecord) error {
	return s.write(ctx, "set user active", func(tx *sql.Tx) error {
		if err := updateUser(ctx, tx, `UPDATE users SET active = ?, updated_at = ? WHERE localpart = ?`,
			active, toDB(time.Now()), localpart); err != nil {
			return err
		}
		if !active {
			// Keys, key ids and inbox rows go by ON DELETE CASCADE.
			if _, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE user_localpart = ?`, localpart); err != nil {
				return err
			}
		}
		return appendAuditTx(ctx, tx, audit)
	})
}

// SetPasswordHash replaces the user's password hash.
func (s *Store) SetPasswordHash(ctx context.Context, localpart, hash string, audit *storage.AuditRecord) error {
	return s.write(ctx, "set password hash", func(tx *sql.Tx) error {
		if err := updateUser(ctx, tx, `UPDATE users SET password_hash = ?, updated_at = ? WHERE localpart = ?`,
			hash, toDB(time.Now()), localpart); err != nil {
			return err
		}
		return appendAuditTx(ctx, tx, audit)
	})
}

// updateUser runs an UPDATE of one user row; ErrNotFound if none matched.
func updateUser(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
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
	return nil
}
