package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/valise-im/valise/storage"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrSchemaTooNew is returned by Open when the database was migrated by a
// newer valised than this one: its schema may not be what this binary
// expects, so it refuses to touch it.
// Open returns a *storage.SchemaTooNewError, which matches it.
var ErrSchemaTooNew = storage.ErrSchemaTooNew

// migrationLockKey is the pg_advisory_xact_lock key that serializes
// migrations among replicas starting at once ("valise.mig" in ASCII).
const migrationLockKey int64 = 0x76616c6973652e6d

// migration is one embedded schema change, numbered from 1.
type migration struct {
	version int64
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in order. Their names are
// NNNN_description.sql, numbered consecutively from 0001.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("postgres: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("postgres: migration %q is not named NNNN_description.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("postgres: read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != int64(i+1) {
			return nil, fmt.Errorf("postgres: migration %s: want version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion returns the number of the newest migration this binary
// carries.
func SchemaVersion() int64 {
	ms, err := loadMigrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies the pending migrations, each in its own transaction
// under an advisory lock, and records each in schema_migrations. Replicas
// starting at once wait for one another; each migration runs once.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for {
		done := false
		var applied migration
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			current, err := lockSchema(ctx, tx)
			if err != nil {
				return err
			}
			latest := int64(len(ms))
			switch {
			case current > latest:
				return &storage.SchemaTooNewError{Database: current, Binary: latest}
			case current == latest:
				done = true
				return nil
			}
			m := ms[current]
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx,
				`INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`,
				m.version, m.name); err != nil {
				return fmt.Errorf("record migration %s: %w", m.name, err)
			}
			applied = m
			return nil
		})
		if err != nil {
			if tooNew := (*storage.SchemaTooNewError)(nil); errors.As(err, &tooNew) {
				return fmt.Errorf("postgres: %w", tooNew)
			}
			return fmt.Errorf("postgres: migrate: %w", err)
		}
		if done {
			return nil
		}
		log.InfoContext(ctx, "migration applied", "version", applied.version, "name", applied.name)
	}
}

// lockSchema takes the migration lock for the rest of tx, creates the
// schema_migrations table if needed and returns the recorded version (0
// for a fresh database).
func lockSchema(ctx context.Context, tx pgx.Tx) (int64, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
		return 0, fmt.Errorf("take migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	var current int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return current, nil
}

// Status reports the schema version of the database dsn names and the
// migrations that Open would apply, without changing anything (it creates
// no table). It fails with a *storage.SchemaTooNewError when the database
// is newer than this binary.
func Status(ctx context.Context, dsn string) (storage.SchemaStatus, error) {
	ms, err := loadMigrations()
	if err != nil {
		return storage.SchemaStatus{}, err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st := storage.SchemaStatus{Latest: int64(len(ms))}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("postgres: read schema version: %w", err)
	}
	if exists {
		if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&st.Current); err != nil {
			return storage.SchemaStatus{}, fmt.Errorf("postgres: read schema version: %w", err)
		}
	}
	if st.Current > st.Latest {
		return st, fmt.Errorf("postgres: %w", &storage.SchemaTooNewError{Database: st.Current, Binary: st.Latest})
	}
	for _, m := range ms[st.Current:] {
		st.Pending = append(st.Pending, storage.Migration{Version: m.version, Name: m.name})
	}
	return st, nil
}
