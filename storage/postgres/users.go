package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/valise-im/valise/storage"
)

// CreateUser creates u and appends audit, if not nil, in the same
// transaction. A zero CreatedAt is set to now, a zero UpdatedAt to
// CreatedAt; both are kept to the microsecond. ErrConflict if the
// localpart is taken.
func (s *Store) CreateUser(ctx context.Context, u storage.User, audit *storage.AuditRecord) error {
	created := dbTime(u.CreatedAt)
	if u.CreatedAt.IsZero() {
		created = s.timestamp()
	}
	updated := dbTime(u.UpdatedAt)
	if u.UpdatedAt.IsZero() {
		updated = created
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO users (localpart, password_hash, active, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5)`,
			u.Localpart, u.PasswordHash, u.Active, created, updated); err != nil {
			return translate(err)
		}
		return s.appendAuditIf(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("postgres: create user: %w", err)
	}
	return nil
}

// GetUser returns the user. ErrNotFound if there is none.
func (s *Store) GetUser(ctx context.Context, localpart string) (storage.User, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT localpart, password_hash, active, created_at, updated_at
		FROM users WHERE localpart = $1`, localpart)
	if err != nil {
		return storage.User{}, fmt.Errorf("postgres: get user: %w", err)
	}
	u, err := pgx.CollectExactlyOneRow(rows, scanUser)
	if err != nil {
		return storage.User{}, fmt.Errorf("postgres: get user: %w", notFound(err))
	}
	return u, nil
}

// ListUsers returns up to limit users ordered by localpart (bytewise),
// starting after the localpart after ("" for the first page).
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]storage.User, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT localpart, password_hash, active, created_at, updated_at
		FROM users WHERE localpart > $1 ORDER BY localpart LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: list users: %w", err)
	}
	users, err := pgx.AppendRows([]storage.User(nil), rows, scanUser)
	if err != nil {
		return nil, fmt.Errorf("postgres: list users: %w", err)
	}
	return users, nil
}

func scanUser(row pgx.CollectableRow) (storage.User, error) {
	var u storage.User
	err := row.Scan(&u.Localpart, &u.PasswordHash, &u.Active, &u.CreatedAt, &u.UpdatedAt)
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return u, err
}

// SetUserActive activates or deactivates a user, setting UpdatedAt when
// the state changes. Deactivation deletes every device of the user with
// its token, keys and inbox, in the same transaction as audit, and
// notifies a user-wide EventRevoke (see ListenEvents). ErrNotFound
// if the user does not exist; setting the state the user already has
// succeeds and still records audit.
func (s *Store) SetUserActive(ctx context.Context, localpart string, active bool, audit *storage.AuditRecord) error {
	now := s.timestamp()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if !active {
			// Lock the devices in the order CommitBatch locks them, so
			// that the two cannot deadlock.
			if _, err := tx.Exec(ctx, `
				SELECT 1 FROM devices WHERE user_localpart = $1
				ORDER BY user_localpart, device_id FOR NO KEY UPDATE`, localpart); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `
			UPDATE users SET active = $2,
				updated_at = CASE WHEN active = $2 THEN updated_at ELSE $3 END
			WHERE localpart = $1`, localpart, active, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrNotFound
		}
		if !active {
			if _, err := tx.Exec(ctx, `DELETE FROM devices WHERE user_localpart = $1`, localpart); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, notifyOne, revokePayload(localpart, "")); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
		}
		return s.appendAuditIf(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("postgres: set user active: %w", err)
	}
	return nil
}

// SetPasswordHash replaces the user's password hash and sets UpdatedAt,
// appending audit, if not nil, in the same transaction. ErrNotFound if the
// user does not exist.
func (s *Store) SetPasswordHash(ctx context.Context, localpart, hash string, audit *storage.AuditRecord) error {
	now := s.timestamp()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE users SET password_hash = $2, updated_at = $3 WHERE localpart = $1`,
			localpart, hash, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return storage.ErrNotFound
		}
		return s.appendAuditIf(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("postgres: set password hash: %w", err)
	}
	return nil
}
