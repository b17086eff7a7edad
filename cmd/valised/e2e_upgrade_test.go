package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	"github.com/valise-im/valise/storage/postgres"
	"github.com/valise-im/valise/storage/sqlite"
)

// recordFutureSQLite records, in the SQLite database at path, a migration
// one past this binary's.
func recordFutureSQLite(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future.sql', 0)`, sqlite.SchemaVersion()+1); err != nil {
		t.Fatalf("record a future migration: %v", err)
	}
}

// execStatements runs statements against the node's database: the SQLite
// file or the PostgreSQL database its config names.
func execStatements(t *testing.T, backend, dir string, stmts ...string) {
	t.Helper()
	if backend == "sqlite" {
		db, err := sql.Open("sqlite", filepath.Join(dir, "valise.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, q := range stmts {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("sqlite: %v", err)
			}
		}
		return
	}
	dsn, err := os.ReadFile(filepath.Join(dir, "postgres.dsn"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), strings.TrimSpace(string(dsn)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range stmts {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("postgres: %v", err)
		}
	}
}

// TestUpgradeFromFirstMigration builds a node's database as the first
// schema migration made it, with a user in it, and upgrades it with the
// real valised: migrate --check lists every later migration and exits 3,
// migrate applies them, migrate --check then exits 0, and the node serves
// the old user. A database newer than the binary then stops both serve and
// migrate with a message naming both versions.
func TestUpgradeFromFirstMigration(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		dir := newNodeDir(t, backend)
		latest, schemaTable, userRow := sqlite.SchemaVersion(), `CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`,
			`INSERT INTO users (localpart, password_hash, active, created_at, updated_at) VALUES ('olduser', 'h', 1, 1700000000000000, 1700000000000000)`
		future := fmt.Sprintf(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (%d, 'from_the_future.sql', 0)`, sqlite.SchemaVersion()+1)
		if backend == "postgres" {
			latest, schemaTable, userRow = postgres.SchemaVersion(), `CREATE TABLE schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
				`INSERT INTO users (localpart, password_hash, active, created_at, updated_at) VALUES ('olduser', 'h', true, now(), now())`
			future = fmt.Sprintf(`INSERT INTO schema_migrations (version, name) VALUES (%d, 'from_the_future.sql')`, postgres.SchemaVersion()+1)
		}
		first, err := filepath.Glob(filepath.Join("..", "..", "storage", backend, "migrations", "0001_*.sql"))
		if err != nil || len(first) != 1 {
			t.Fatalf("the first migration: %v, %v", first, err)
		}
		firstSQL, err := os.ReadFile(first[0])
		if err != nil {
			t.Fatal(err)
		}
		recordFirst := fmt.Sprintf(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, '%s', 0)`, filepath.Base(first[0]))
		if backend == "postgres" {
			recordFirst = fmt.Sprintf(`INSERT INTO schema_migrations (version, name) VALUES (1, '%s')`, filepath.Base(first[0]))
		}
		execStatements(t, backend, dir, string(firstSQL), schemaTable, recordFirst, userRow)

		stdout, stderr, code := runValised(t, "migrate", "--check", "--data", dir)
		if code != 3 {
			t.Fatalf("migrate --check on schema 1: exit %d, want 3: %s%s", code, stdout, stderr)
		}
		mustContain(t, "migrate --check", stdout, fmt.Sprintf("schema version 1, this valised knows up to %d; %d migration(s) would run:", latest, latest-1), "0002_")
		if strings.Contains(stdout, "0001_") {
			t.Errorf("migrate --check lists the applied first migration: %s", stdout)
		}
		if stdout, stderr, code := runValised(t, "migrate", "--data", dir); code != 0 {
			t.Fatalf("migrate: exit %d: %s%s", code, stdout, stderr)
		}
		stdout, stderr, code = runValised(t, "migrate", "--check", "--data", dir)
		if code != 0 {
			t.Fatalf("migrate --check after migrate: exit %d: %s%s", code, stdout, stderr)
		}
		mustContain(t, "migrate --check after migrate", stdout, fmt.Sprintf("schema version %d: up to date", latest))

		n := startNodeIn(t, dir, testConfig(t, dir, nil))
		if u, err := n.admin.GetUser(t.Context(), &adminv1.GetUserRequest{User: "olduser"}); err != nil || !u.User.Active {
			t.Errorf("GetUser(olduser) after the upgrade: %v, %v", u, err)
		}
		n.createUser(t, "newuser", "newuser-password")
		n.stop()

		execStatements(t, backend, dir, future)
		want := fmt.Sprintf("this database was migrated by a newer valised (schema %d); this binary knows up to %d: run the newer valised or restore a backup", latest+1, latest)
		for _, args := range [][]string{{"serve", "--data", dir}, {"migrate", "--check", "--data", dir}, {"migrate", "--data", dir}} {
			_, stderr, code := runValised(t, args...)
			if code != 1 || !strings.Contains(stderr, want) {
				t.Errorf("valised %s on a newer database: exit %d, %q; want 1 and %q", args[0], code, stderr, want)
			}
		}
	})
}
