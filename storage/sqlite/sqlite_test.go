package sqlite

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/storagetest"
)

// openTemp opens a fresh store in a temporary directory and closes it when
// the test ends.
func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "valise.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return openTemp(t) })
}

func TestMigrationsRecorded(t *testing.T) {
	s := openTemp(t)
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	var n, latest int
	if err := s.r.QueryRowContext(t.Context(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &latest); err != nil {
		t.Fatalf("query schema_migrations: %v", err)
	}
	if n != len(ms) || latest != len(ms) {
		t.Errorf("schema_migrations: got %d rows up to version %d, want %d up to %d", n, latest, len(ms), len(ms))
	}
}

func TestPragmas(t *testing.T) {
	s := openTemp(t)
	tests := []struct {
		name   string
		db     *sql.DB
		pragma string
		want   string
	}{
		{"writer journal_mode", s.w, "journal_mode", "wal"},
		{"writer synchronous", s.w, "synchronous", "2"},
		{"writer foreign_keys", s.w, "foreign_keys", "1"},
		{"writer busy_timeout", s.w, "busy_timeout", "5000"},
		{"reader journal_mode", s.r, "journal_mode", "wal"},
		{"reader query_only", s.r, "query_only", "1"},
		{"reader foreign_keys", s.r, "foreign_keys", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			if err := tt.db.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA %s: got %q, want %q", tt.pragma, got, tt.want)
			}
		})
	}
	if _, err := s.r.ExecContext(t.Context(), `DELETE FROM users`); err == nil {
		t.Errorf("write through the read pool: got nil error, want query_only to refuse it")
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "valise.db")
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if s.Path() != path {
		t.Errorf("Path: got %q, want %q", s.Path(), path)
	}
	u := storage.User{Localpart: "alice", PasswordHash: "h", Active: true, CreatedAt: time.Unix(1700000000, 123456000)}
	if err := s.CreateUser(t.Context(), u, &storage.AuditRecord{Actor: "admin", Action: "create_user", Target: "alice"}); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = reopen(t, path)
	got, err := s.GetUser(t.Context(), "alice")
	if err != nil {
		t.Fatalf("GetUser after reopen: %v", err)
	}
	if !got.CreatedAt.Equal(u.CreatedAt) || !got.Active {
		t.Errorf("GetUser after reopen: got %+v, want %+v", got, u)
	}
	evs, err := s.ListAudit(t.Context(), 0, 10)
	if err != nil || len(evs) != 1 || storage.VerifyAuditChain(nil, evs) != 0 {
		t.Errorf("ListAudit after reopen: got %+v, %v; want one chained event", evs, err)
	}
	ms, err := migrations()
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	var n int
	if err := s.r.QueryRowContext(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(ms) {
		t.Errorf("schema_migrations after reopen: got %d rows, %v; want %d (no migration applied twice)", n, err, len(ms))
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "valise.db")
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := s.w.ExecContext(t.Context(), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future.sql', 0)`); err != nil {
		t.Fatalf("insert future migration: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, err = Open(t.Context(), path, Options{})
	if err == nil {
		s.Close()
		t.Fatalf("Open of a newer schema: got nil error, want one")
	}
	if !strings.Contains(err.Error(), "9999") {
		t.Errorf("Open of a newer schema: got %q, want the version in the message", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
	}{
		{"empty path", ""},
		{"query in path", filepath.Join(dir, "x.db?mode=ro")},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "x.db")},
		{"directory", dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.Context(), tt.path, Options{})
			if err == nil {
				s.Close()
				t.Errorf("Open(%q): got nil error, want one", tt.path)
			}
		})
	}
}

func reopen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
