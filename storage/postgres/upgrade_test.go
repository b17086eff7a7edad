package postgres_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/postgres"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

func TestUpgradeFromFirstMigration(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := t.Context()
	st, err := postgres.Status(ctx, dsn)
	if err != nil || st.Current != 0 || int64(len(st.Pending)) != postgres.SchemaVersion() {
		t.Fatalf("Status of an empty database: %+v, %v; want every migration pending", st, err)
	}
	first, err := filepath.Glob("migrations/0001_*.sql")
	if err != nil || len(first) != 1 {
		t.Fatalf("find the first migration: %v, %v", first, err)
	}
	sql, err := os.ReadFile(first[0])
	if err != nil {
		t.Fatal(err)
	}
	// A database as the first release made it: migration 1 only, with a
	// user written in that schema.
	conn := connect(t, dsn)
	for _, q := range []string{
		string(sql),
		`CREATE TABLE schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
		`INSERT INTO schema_migrations (version, name) VALUES (1, '` + filepath.Base(first[0]) + `')`,
		`INSERT INTO users (localpart, password_hash, active, created_at, updated_at) VALUES ('olduser', 'h', true, '2023-11-14 22:13:20+00', '2023-11-14 22:13:20+00')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("build a version-1 database: %v", err)
		}
	}
	st, err = postgres.Status(ctx, dsn)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Current != 1 || int64(len(st.Pending)) != postgres.SchemaVersion()-1 || st.Pending[0].Version != 2 {
		t.Fatalf("Status of a version-1 database: %+v, want current 1 and migrations 2..%d pending", st, postgres.SchemaVersion())
	}
	s := openStore(t, dsn)
	u, err := s.GetUser(ctx, "olduser")
	if err != nil || !u.Active || !u.CreatedAt.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("GetUser(olduser) after the upgrade: %+v, %v", u, err)
	}
	if err := s.CreateUser(ctx, storage.User{Localpart: "newuser", PasswordHash: "h", Active: true}, nil); err != nil {
		t.Errorf("CreateUser after the upgrade: %v", err)
	}
	if st, err := postgres.Status(ctx, dsn); err != nil || st.Current != postgres.SchemaVersion() || len(st.Pending) != 0 {
		t.Errorf("Status after the upgrade: %+v, %v; want current %d, nothing pending", st, err, postgres.SchemaVersion())
	}
}

func TestBackupUnsupported(t *testing.T) {
	s := openStore(t, pgtest.DSN(t))
	if b, err := s.Backup(t.Context()); !errors.Is(err, storage.ErrUnsupported) {
		if b != nil {
			b.Close()
		}
		t.Errorf("Backup: %v, want ErrUnsupported", err)
	}
}
