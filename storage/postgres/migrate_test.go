package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/valise-im/valise/storage/postgres"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

// openStore opens a Store on dsn, closed when t ends.
func openStore(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// connect opens a plain connection to dsn, closed when t ends.
func connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func recordedVersions(t *testing.T, dsn string) []int64 {
	t.Helper()
	rows, err := connect(t, dsn).Query(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	return versions
}

func wantVersions() []int64 {
	var vs []int64
	for v := int64(1); v <= postgres.SchemaVersion(); v++ {
		vs = append(vs, v)
	}
	return vs
}

func TestOpenRecordsMigrationsOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	if postgres.SchemaVersion() < 1 {
		t.Fatalf("SchemaVersion() = %d, want >= 1", postgres.SchemaVersion())
	}
	for i, wantLogged := range []int{len(wantVersions()), 0} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		s, err := postgres.Open(t.Context(), dsn, postgres.Options{Logger: log})
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		s.Close()
		if got, want := recordedVersions(t, dsn), wantVersions(); !slices.Equal(got, want) {
			t.Errorf("after Open #%d: schema_migrations = %v, want %v", i+1, got, want)
		}
		if got := strings.Count(logs.String(), "migration applied"); got != wantLogged {
			t.Errorf("Open #%d logged %d applied migrations, want %d:\n%s", i+1, got, wantLogged, logs.String())
		}
	}
}

func TestOpenConcurrentReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	const replicas = 6
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), dsn, postgres.Options{MaxConns: 2})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open: %v", i, err)
		}
	}
	if got, want := recordedVersions(t, dsn), wantVersions(); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.DSN(t)
	openStore(t, dsn).Close()
	newer := postgres.SchemaVersion() + 1
	if _, err := connect(t, dsn).Exec(t.Context(),
		`INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future.sql')`, newer); err != nil {
		t.Fatalf("record future migration: %v", err)
	}
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{})
	if err == nil {
		s.Close()
		t.Fatalf("Open on a schema at version %d succeeded, want an error", newer)
	}
	_, serr := postgres.Status(t.Context(), dsn)
	want := fmt.Sprintf("this database was migrated by a newer valised (schema %d); this binary knows up to %d: run the newer valised or restore a backup",
		newer, postgres.SchemaVersion())
	for name, err := range map[string]error{"Open": err, "Status": serr} {
		if !errors.Is(err, postgres.ErrSchemaTooNew) || !strings.Contains(fmt.Sprint(err), want) {
			t.Errorf("%s: %v, want ErrSchemaTooNew saying %q", name, err, want)
		}
	}
}

func TestSynchronousCommitOn(t *testing.T) {
	dsn := pgtest.DSN(t)
	conn := connect(t, dsn)
	var name string
	if err := conn.QueryRow(t.Context(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	// Make the database's own default the unsafe one, so that only the
	// store's setting can make the check pass.
	if _, err := conn.Exec(t.Context(), `ALTER DATABASE `+pgx.Identifier{name}.Sanitize()+` SET synchronous_commit = off`); err != nil {
		t.Fatalf("set database default: %v", err)
	}
	var plain string
	if err := connect(t, dsn).QueryRow(t.Context(), `SHOW synchronous_commit`).Scan(&plain); err != nil {
		t.Fatal(err)
	}
	if plain != "off" {
		t.Fatalf("a plain connection has synchronous_commit = %q, want off (the test cannot tell)", plain)
	}

	s := openStore(t, dsn)
	// Hold several connections at once so that more than one is checked.
	var conns []*pgxpool.Conn
	for range 3 {
		c, err := s.Pool().Acquire(t.Context())
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		var got string
		if err := c.QueryRow(t.Context(), `SHOW synchronous_commit`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != "on" {
			t.Errorf("pool connection %d: synchronous_commit = %q, want on", i, got)
		}
		c.Release()
	}
}
