package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valise-im/valise/storage"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. Files are
// named NNNN_description.sql and numbered from 1 without gaps.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and '_'", base)
		}
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies the migrations the database lacks, each in its own
// transaction together with its schema_migrations row.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	const create = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`
	if _, err := s.w.ExecContext(ctx, create); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	for _, m := range ms {
		applied := false
		err := s.write(ctx, "migrate", func(tx *sql.Tx) error {
			var current int
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
				return err
			}
			if current > len(ms) {
				return &storage.SchemaTooNewError{Database: int64(current), Binary: int64(len(ms))}
			}
			if current >= m.version {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, toDB(time.Now()))
			applied = err == nil
			return err
		})
		if err != nil {
			if tooNew := (*storage.SchemaTooNewError)(nil); errors.As(err, &tooNew) {
				return fmt.Errorf("sqlite: %s: %w", s.path, tooNew)
			}
			return err
		}
		if applied {
			s.log.InfoContext(ctx, "migration applied", "version", m.version, "name", m.name)
		}
	}
	return nil
}

// SchemaVersion returns the number of the newest migration this binary
// carries.
func SchemaVersion() int64 {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return int64(len(ms))
}

// Status reports the schema version of the database at path and the
// migrations that Open would apply, without changing anything: an absent
// file is an empty database that needs every migration. It fails with a
// *storage.SchemaTooNewError when the database is newer than this binary.
func Status(ctx context.Context, path string) (storage.SchemaStatus, error) {
	ms, err := migrations()
	if err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: migrate: %w", err)
	}
	st := storage.SchemaStatus{Latest: int64(len(ms))}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		for _, m := range ms {
			st.Pending = append(st.Pending, storage.Migration{Version: int64(m.version), Name: m.name})
		}
		return st, nil
	}
	db, err := openReadOnly(path)
	if err != nil {
		return storage.SchemaStatus{}, err
	}
	defer db.Close()
	if st.Current, err = recordedVersion(ctx, db); err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: %s: %w", path, err)
	}
	if st.Current > st.Latest {
		return st, fmt.Errorf("sqlite: %s: %w", path, &storage.SchemaTooNewError{Database: st.Current, Binary: st.Latest})
	}
	for _, m := range ms[st.Current:] {
		st.Pending = append(st.Pending, storage.Migration{Version: int64(m.version), Name: m.name})
	}
	return st, nil
}

// openReadOnly opens the existing database at path on query-only
// connections.
func openReadOnly(path string) (*sql.DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: open: invalid database path %q", path)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// recordedVersion returns the newest migration recorded in db, 0 when
// there is no schema_migrations table.
func recordedVersion(ctx context.Context, db *sql.DB) (int64, error) {
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&tables); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if tables == 0 {
		return 0, nil
	}
	var v int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
