// Package pgtest gives tests a fresh PostgreSQL database of their own.
//
// Tests of any package may import it. It reads the server to use from the
// VALISE_TEST_POSTGRES environment variable; tests skip when it is unset,
// and fail, never skip, when it is set but the server cannot be reached.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the environment variable that holds the DSN of the
// PostgreSQL server tests use, such as
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. The role
// it names must be allowed to create databases.
const EnvVar = "VALISE_TEST_POSTGRES"

// cleanupTimeout bounds dropping a test database.
const cleanupTimeout = 30 * time.Second

// DSN creates an empty database named valise_test_<random hex> on the
// server that VALISE_TEST_POSTGRES names, registers a cleanup that drops
// it (closing any connection left open) when t ends, and returns the DSN
// of the new database: the given DSN with its database name replaced.
// Both URL DSNs (postgres://...) and key=value DSNs are accepted.
//
// DSN skips t when VALISE_TEST_POSTGRES is unset and fails t when the
// server cannot be reached or the database cannot be created.
func DSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvVar)
	if base == "" {
		t.Skip(EnvVar + " not set")
	}
	ctx, cancel := context.WithTimeout(t.Context(), cleanupTimeout)
	defer cancel()
	dsn, drop, err := Create(ctx, base, "valise_test_")
	if err != nil {
		t.Fatalf("pgtest: %s: %v", EnvVar, err)
	}
	t.Cleanup(func() {
		// t.Context is done by now.
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := drop(ctx); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return dsn
}

// Create creates an empty database named prefix<random hex> on the server
// of the DSN base and returns the DSN of the new database (base with its
// database name replaced) and a function that drops it, closing any
// connection left open. Tools that need databases of their own outside a
// test (valise-bench) use it too.
func Create(ctx context.Context, base, prefix string) (dsn string, drop func(context.Context) error, err error) {
	name, err := databaseName(prefix)
	if err != nil {
		return "", nil, err
	}
	if dsn, err = withDatabase(base, name); err != nil {
		return "", nil, err
	}
	if err := exec(ctx, base, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop = func(ctx context.Context) error {
		if err := exec(ctx, base, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	return dsn, drop, nil
}

// databaseName returns a fresh, unique database name starting with prefix.
func databaseName(prefix string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random database name: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// withDatabase returns dsn with its database name replaced by name.
func withDatabase(dsn, name string) (string, error) {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return "", err
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path, u.RawPath = "/"+name, ""
		return u.String(), nil
	}
	// In a key=value string the last setting of a key wins.
	return dsn + " dbname=" + name, nil
}

// exec runs one statement on a connection of its own to dsn.
func exec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}
