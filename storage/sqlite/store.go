// Package sqlite is the embedded storage.Store backend: a single SQLite
// database file in WAL mode, written by one connection and read by a pool,
// through the pure-Go modernc.org/sqlite driver.
//
// Only cmd/* and tests pick a backend; everything else uses storage.Store.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/valise-im/valise/storage"
)

// Options tunes a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's few log lines (migrations applied). Nil
	// discards them.
	Logger *slog.Logger
	// BusyTimeout is how long a statement waits for a lock held by another
	// process before failing. Zero means 5 seconds.
	BusyTimeout time.Duration
	// MaxReaders bounds the read connections. Zero means max(4, GOMAXPROCS).
	MaxReaders int
}

// Store is a storage.Store kept in one SQLite file. All writes go through
// one connection, each in a BEGIN IMMEDIATE transaction committed with
// synchronous=FULL; reads use a separate pool of query-only connections. A
// Store is safe for concurrent use.
type Store struct {
	path string
	w    *sql.DB // exactly one connection; every write
	r    *sql.DB // query-only connections
	log  *slog.Logger
	// freeSpace returns the bytes available to this process in a
	// directory (statfs; tests replace it).
	freeSpace func(dir string) (uint64, error)
}

var _ storage.Store = (*Store)(nil)

// Open opens the database at path, creating the file if needed, and applies
// any migrations it lacks. It fails if the database has a schema newer than
// this binary knows. The caller must Close the Store.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: open: invalid database path %q", path)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	readers := opts.MaxReaders
	if readers <= 0 {
		readers = max(4, runtime.GOMAXPROCS(0))
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)", busy.Milliseconds())

	w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{path: path, w: w, log: log.With("component", "storage.sqlite"), freeSpace: statfsFree}
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	removeStaleBackups(path)
	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	s.r = r
	return s, nil
}

// Path returns the path of the database file.
func (s *Store) Path() string { return s.path }

// Ping checks that both the write and the read connections answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes the database. Closing twice is not an error; any other call
// after Close fails.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// write runs fn in one BEGIN IMMEDIATE transaction on the write connection
// and commits it. Errors are wrapped with "sqlite: op: ".
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %s: begin: %w", op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: %s: commit: %w", op, err)
	}
	return nil
}

// translate turns a unique or primary-key violation into storage.ErrConflict.
func translate(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", storage.ErrConflict, err)
		}
	}
	return err
}

// toDB returns t as stored: unix microseconds.
func toDB(t time.Time) int64 { return t.UnixMicro() }

// fromDB returns a stored time in UTC.
func fromDB(us int64) time.Time { return time.UnixMicro(us).UTC() }

// orNow returns t, or the current time if t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
