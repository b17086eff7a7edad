package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/sqlite"
)

// sqliteWithUser creates a Valise database at path holding user u.
func sqliteWithUser(t *testing.T, path, u string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(t.Context(), storage.User{Localpart: u, PasswordHash: "x", Active: true}, nil); err != nil {
		t.Fatal(err)
	}
	return st
}

// hasUser reports whether the database at path holds user u.
func hasUser(t *testing.T, path, u string) bool {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer st.Close()
	_, err = st.GetUser(t.Context(), u)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestRestoreKeepsUncheckpointedDatabase replaces a database whose last
// transactions are still in its write-ahead log (a node killed without a
// clean stop): the kept .bak must hold them, db must name a whole
// database, a second restore within the same second must not overwrite
// the first .bak, and a backup with a log beside it is refused.
func TestRestoreKeepsUncheckpointedDatabase(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "valise.db")
	// The node's database as kill -9 leaves it: the file and its -wal,
	// copied while the store was open.
	live := sqliteWithUser(t, filepath.Join(t.TempDir(), "live.db"), "olduser")
	copyFile(t, live.Path(), db, 0o600)
	copyFile(t, live.Path()+"-wal", db+"-wal", 0o600)
	live.Close()
	if fi, err := os.Stat(db + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("the test's database has no write-ahead log to lose: %v", err)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	sqliteWithUser(t, backup, "newuser").Close()
	os.Remove(backup + "-wal")
	os.Remove(backup + "-shm")

	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	res, err := restoreSQLite(t.Context(), db, backup, true, now)
	if err != nil {
		t.Fatal(err)
	}
	if !hasUser(t, res.kept, "olduser") {
		t.Errorf("the kept database %s lacks the user that was only in the write-ahead log", res.kept)
	}
	if !hasUser(t, db, "newuser") || hasUser(t, db, "olduser") {
		t.Errorf("%s is not the restored database", db)
	}

	// Again within the same second: the .bak exists, nothing changes.
	other := filepath.Join(t.TempDir(), "other.db")
	sqliteWithUser(t, other, "otheruser").Close()
	if _, err := restoreSQLite(t.Context(), db, other, true, now); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("a second restore onto an existing .bak name = %v, want a refusal that changed nothing", err)
	}
	if !hasUser(t, db, "newuser") || !hasUser(t, res.kept, "olduser") {
		t.Error("a refused restore changed the database or the kept one")
	}

	// A backup with a non-empty log beside it is refused.
	withLog := filepath.Join(t.TempDir(), "withlog.db")
	st := sqliteWithUser(t, withLog, "loguser")
	defer st.Close()
	if _, err := restoreSQLite(t.Context(), db, withLog, true, now.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "-wal is beside") {
		t.Fatalf("restore from a database with its log beside it = %v, want a refusal", err)
	}

	// Temporary copies of an interrupted restore are removed.
	stale := db + ".restore-123.tmp"
	copyFile(t, backup, stale, 0o600)
	if _, err := restoreSQLite(t.Context(), db, backup, true, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale restore copy %s left behind: %v", stale, err)
	}
}
