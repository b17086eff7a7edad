// Package postgres is the PostgreSQL backend of storage.Store, for
// production nodes and for several valised replicas sharing one database.
//
// It speaks pgx v5 natively (a pgxpool.Pool, pipelined batches, multi-row
// statements over unnest), applies its embedded, numbered migrations on
// Open, and commits with synchronous_commit=on: a write that returned is
// on disk. It implements storage.Events over LISTEN/NOTIFY, so that
// replicas wake each other's inbox streams. Only cmd/* and tests pick a
// backend; the rest of the code sees storage.Store.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/valise-im/valise/storage"
)

// Options tunes a Store. The zero value is ready to use.
type Options struct {
	// MaxConns bounds the connection pool. Zero keeps the DSN's
	// pool_max_conns, or pgxpool's default (the greater of 4 and the
	// number of CPUs).
	MaxConns int32
	// Now returns the current time. The store uses it for the times it
	// sets itself (a user's UpdatedAt, a time left zero by the caller).
	// Nil means time.Now.
	Now func() time.Time
	// Logger receives the store's few log lines (migrations applied, the
	// event listener reconnecting). Nil discards them.
	Logger *slog.Logger
}

// Store is a storage.Store kept in PostgreSQL. It is safe for concurrent
// use, also by several processes sharing one database.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
	log  *slog.Logger
	// origin tags the events of this Store's CommitBatch, so that its
	// listener can tell them apart (storage.Event.Local).
	origin string
}

var (
	_ storage.Store  = (*Store)(nil)
	_ storage.Events = (*Store)(nil)
)

// maxTxAttempts bounds how often a transaction the server aborted for a
// deadlock or a serialization failure is run again.
const maxTxAttempts = 5

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value connection string, as pgxpool.ParseConfig accepts), applies
// any pending migrations and returns the Store. Every connection runs with
// synchronous_commit=on, whatever the DSN or the server default says.
// Open fails if the database's schema is newer than this binary knows
// (ErrSchemaTooNew).
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse dsn: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "storage.postgres")
	if err := migrate(ctx, pool, log); err != nil {
		pool.Close()
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Store{pool: pool, now: now, log: log, origin: newOrigin()}, nil
}

// Pool returns the store's connection pool, for what the Store interface
// does not cover (such as tests inspecting the database). The pool
// belongs to the Store: callers must not close it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the pool, waiting for connections in use to be released.
// Calls after Close fail.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// timestamp returns the current time as the database keeps it:
// microseconds, UTC.
func (s *Store) timestamp() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// dbTime returns t as the database keeps it: microseconds, UTC.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// inTx runs fn in a transaction and commits it, or rolls it back if fn
// fails. A transaction the server aborted for a deadlock or a
// serialization failure is run again from the start, so fn must not keep
// state across calls other than what it rebuilds each time.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || attempt >= maxTxAttempts || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
}

// retryable reports whether err means that the server aborted the
// transaction, which therefore committed nothing, and may succeed if run
// again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return true
	}
	return false
}

// translate turns driver errors the storage contract names into its
// sentinels: a unique violation becomes storage.ErrConflict, a foreign key
// violation storage.ErrNotFound. Only the constraint name is kept, never
// the offending values. Other errors are returned unchanged.
func translate(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.Code {
	case "23505": // unique_violation
		return fmt.Errorf("%w: constraint %s", storage.ErrConflict, pgErr.ConstraintName)
	case "23503": // foreign_key_violation
		return fmt.Errorf("%w: constraint %s", storage.ErrNotFound, pgErr.ConstraintName)
	}
	return err
}

// notFound turns pgx.ErrNoRows into storage.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.ErrNotFound
	}
	return err
}
