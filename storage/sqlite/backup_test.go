package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valise-im/valise/storage"
)

func TestBackupIsAConsistentCopy(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(t.Context(), filepath.Join(dir, "valise.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	ctx := t.Context()
	u := storage.User{Localpart: "alice", PasswordHash: "hash", Active: true, CreatedAt: time.Unix(1700000000, 0)}
	if err := s.CreateUser(ctx, u, nil); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	b, err := s.Backup(ctx)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	// A write after the snapshot is not in it.
	if err := s.CreateUser(ctx, storage.User{Localpart: "bob", PasswordHash: "hash", Active: true}, nil); err != nil {
		t.Fatalf("CreateUser after Backup: %v", err)
	}
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read backup: %v", err)
	}
	if int64(len(data)) != b.Size() {
		t.Errorf("read %d bytes, Size() = %d", len(data), b.Size())
	}
	if got, want := b.SchemaVersion(), SchemaVersion(); got != want {
		t.Errorf("SchemaVersion() = %d, want %d", got, want)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Nothing of the backup is left in the data directory.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), backupSuffix) {
			t.Errorf("%s left in the data directory", e.Name())
		}
	}

	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := CheckFile(ctx, copyPath)
	if err != nil {
		t.Fatalf("CheckFile of the backup: %v", err)
	}
	if st.Current != SchemaVersion() || len(st.Pending) != 0 {
		t.Errorf("CheckFile: %+v, want current %d and nothing pending", st, SchemaVersion())
	}
	c := reopen(t, copyPath)
	if _, err := c.GetUser(ctx, "alice"); err != nil {
		t.Errorf("GetUser(alice) in the copy: %v", err)
	}
	if _, err := c.GetUser(ctx, "bob"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetUser(bob), created after the snapshot, in the copy: %v, want ErrNotFound", err)
	}
}

func TestOpenRemovesStaleBackupFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "valise.db")
	stale := path + ".12345" + backupSuffix
	if err := os.WriteFile(stale, []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	reopen(t, path)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale backup file after Open: %v, want it removed", err)
	}
}

func TestCheckFileRefuses(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyDB := filepath.Join(dir, "empty.db")
	db, err := sql.Open("sqlite", emptyDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE other (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	truncated := filepath.Join(dir, "truncated.db")
	full := filepath.Join(dir, "full.db")
	s := reopen(t, full)
	for i := range 200 {
		if err := s.CreateUser(t.Context(), storage.User{Localpart: strings.Repeat("u", 50) + string(rune('a'+i%26)) + time.Now().Format("150405.000000000"), PasswordHash: strings.Repeat("h", 200), Active: true}, nil); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Backup(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(b)
	b.Close()
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, path string }{
		{"not sqlite", garbage},
		{"no valise schema", emptyDB},
		{"truncated", truncated},
		{"directory", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := CheckFile(t.Context(), tc.path); !errors.Is(err, ErrNotValise) {
				t.Errorf("CheckFile: %v, want ErrNotValise", err)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := CheckFile(t.Context(), filepath.Join(dir, "nope.db")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("CheckFile: %v, want ErrNotExist", err)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		newer := filepath.Join(t.TempDir(), "newer.db")
		if err := os.WriteFile(newer, data, 0o600); err != nil {
			t.Fatal(err)
		}
		recordFutureMigration(t, newer)
		_, err := CheckFile(t.Context(), newer)
		var tooNew *storage.SchemaTooNewError
		if !errors.As(err, &tooNew) || tooNew.Database != SchemaVersion()+1 || tooNew.Binary != SchemaVersion() {
			t.Errorf("CheckFile: %v, want a SchemaTooNewError naming %d and %d", err, SchemaVersion()+1, SchemaVersion())
		}
	})
}

// recordFutureMigration records a migration one past this binary's in the
// database at path.
func recordFutureMigration(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future.sql', 0)`, SchemaVersion()+1); err != nil {
		t.Fatalf("record future migration: %v", err)
	}
}

func TestUpgradeFromFirstMigration(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "valise.db")
	st, err := Status(ctx, path)
	if err != nil || st.Current != 0 || int64(len(st.Pending)) != SchemaVersion() {
		t.Fatalf("Status of an absent database: %+v, %v; want every migration pending", st, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Status created the database: %v", err)
	}
	// A database as the first release made it: migration 1 only, with a
	// user written in that schema.
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		ms[0].sql,
		`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`,
		`INSERT INTO schema_migrations VALUES (1, '` + ms[0].name + `', 0)`,
		`INSERT INTO users (localpart, password_hash, active, created_at, updated_at) VALUES ('olduser', 'h', 1, 1700000000000000, 1700000000000000)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("build a version-1 database: %v", err)
		}
	}
	db.Close()

	st, err = Status(ctx, path)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Current != 1 || st.Latest != SchemaVersion() || int64(len(st.Pending)) != SchemaVersion()-1 || st.Pending[0].Version != 2 {
		t.Fatalf("Status of a version-1 database: %+v, want current 1 and migrations 2..%d pending", st, SchemaVersion())
	}
	s := reopen(t, path)
	u, err := s.GetUser(ctx, "olduser")
	if err != nil || !u.Active || !u.CreatedAt.Equal(time.UnixMicro(1700000000000000)) {
		t.Errorf("GetUser(olduser) after the upgrade: %+v, %v", u, err)
	}
	if st, err := Status(ctx, path); err != nil || st.Current != SchemaVersion() || len(st.Pending) != 0 {
		t.Errorf("Status after the upgrade: %+v, %v; want current %d, nothing pending", st, err, SchemaVersion())
	}
	// The upgraded schema works: a write that the later migrations enable.
	if err := s.CreateUser(ctx, storage.User{Localpart: "newuser", PasswordHash: "h", Active: true}, nil); err != nil {
		t.Errorf("CreateUser after the upgrade: %v", err)
	}
}

func TestStatusAndOpenRefuseNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "valise.db")
	reopen(t, path).Close()
	recordFutureMigration(t, path)
	for name, fn := range map[string]func() error{
		"Status": func() error { _, err := Status(t.Context(), path); return err },
		"Open": func() error {
			s, err := Open(t.Context(), path, Options{})
			if err == nil {
				s.Close()
			}
			return err
		},
	} {
		err := fn()
		var tooNew *storage.SchemaTooNewError
		if !errors.As(err, &tooNew) || !errors.Is(err, storage.ErrSchemaTooNew) {
			t.Errorf("%s: %v, want a SchemaTooNewError", name, err)
			continue
		}
		want := fmt.Sprintf("this database was migrated by a newer valised (schema %d); this binary knows up to %d: run the newer valised or restore a backup",
			SchemaVersion()+1, SchemaVersion())
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q, want it to contain %q", name, err, want)
		}
	}
}

// TestBackupRefusedWithoutSpace checks that a backup whose copy would
// leave the data directory without headroom is refused before anything is
// written, saying what is free and needed, and goes ahead with room.
func TestBackupRefusedWithoutSpace(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(t.Context(), filepath.Join(dir, "valise.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	s.freeSpace = func(string) (uint64, error) { return backupHeadroom, nil } // no room for the copy
	if _, err := s.Backup(t.Context()); !errors.Is(err, storage.ErrNoSpace) || !strings.Contains(err.Error(), "MiB free") {
		t.Fatalf("Backup with no room = %v, want ErrNoSpace with the sizes", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*"+backupSuffix)); len(left) != 0 {
		t.Errorf("a refused backup left %v", left)
	}
	s.freeSpace = func(string) (uint64, error) { return 1 << 40, nil }
	b, err := s.Backup(t.Context())
	if err != nil {
		t.Fatalf("Backup with room: %v", err)
	}
	b.Close()
	if free, err := statfsFree(dir); err != nil || free == 0 {
		t.Errorf("statfsFree(%s) = %d, %v; want the free space of the test's file system", dir, free, err)
	}
}
