package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/valise-im/valise/storage"
)

// ErrNotValise: the file is not a Valise SQLite database (not SQLite at
// all, damaged, or without Valise's schema).
var ErrNotValise = errors.New("not a sound Valise SQLite database")

// CheckFile checks, without writing to it, that the file at path is a
// sound Valise SQLite database that this binary can serve: SQLite's
// integrity_check passes, the schema has recorded at least the first
// Valise migration and its users table, and the recorded version is not
// newer than this binary knows (a *storage.SchemaTooNewError otherwise).
// Other failures wrap ErrNotValise. It returns the database's schema
// status. No other connection may be writing to the file.
func CheckFile(ctx context.Context, path string) (storage.SchemaStatus, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: check: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: check %s: %w: not a regular file", path, ErrNotValise)
	}
	db, err := openReadOnly(path)
	if err != nil {
		return storage.SchemaStatus{}, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: check %s: %w: %w", path, ErrNotValise, err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return storage.SchemaStatus{}, fmt.Errorf("sqlite: check %s: %w: %w", path, ErrNotValise, err)
		}
		if line != "ok" && len(problems) < 5 {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: check %s: %w: %w", path, ErrNotValise, err)
	}
	rows.Close()
	if len(problems) > 0 {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: check %s: %w: integrity_check: %s", path, ErrNotValise, strings.Join(problems, "; "))
	}
	st := storage.SchemaStatus{Latest: SchemaVersion()}
	if st.Current, err = recordedVersion(ctx, db); err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: check %s: %w: %w", path, ErrNotValise, err)
	}
	var users int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'users'`).Scan(&users); err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: check %s: %w: %w", path, ErrNotValise, err)
	}
	if st.Current < 1 || users == 0 {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: check %s: %w: no Valise schema in it", path, ErrNotValise)
	}
	if st.Current > st.Latest {
		return st, fmt.Errorf("sqlite: check %s: %w", path, &storage.SchemaTooNewError{Database: st.Current, Binary: st.Latest})
	}
	ms, err := migrations()
	if err != nil {
		return storage.SchemaStatus{}, fmt.Errorf("sqlite: check: %w", err)
	}
	for _, m := range ms[st.Current:] {
		st.Pending = append(st.Pending, storage.Migration{Version: int64(m.version), Name: m.name})
	}
	return st, nil
}

// Checkpoint folds the write-ahead log of the database at path into the
// database file and empties it (PRAGMA wal_checkpoint(TRUNCATE)), so that
// the file alone holds every committed transaction. No other process may
// have the database open. A missing database is an error: opening it
// would create an empty one.
func Checkpoint(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("sqlite: checkpoint: %w", err)
	}
	if strings.ContainsAny(path, "?#") {
		return fmt.Errorf("sqlite: checkpoint: invalid database path %q", path)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return fmt.Errorf("sqlite: checkpoint %s: %w", path, err)
	}
	defer db.Close()
	var busy, logFrames, checkpointed int
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &checkpointed); err != nil {
		return fmt.Errorf("sqlite: checkpoint %s: %w", path, err)
	}
	if busy != 0 {
		return fmt.Errorf("sqlite: checkpoint %s: the database is in use", path)
	}
	return db.Close()
}
