package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/valise-im/valise/storage/postgres/pgtest"
)

// TestPostgresDumpRestore runs the pg_dump and pg_restore commands of
// docs/ops/backups.md: it dumps a PostgreSQL node's database, restores the
// dump into a new, empty database, starts a node there from a fresh data
// directory holding the saved files, and finds every user and envelope.
func TestPostgresDumpRestore(t *testing.T) {
	dir := newNodeDir(t, "postgres") // skips without VALISE_TEST_POSTGRES
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (Debian: postgresql-client): CI must run this test", tool)
			}
			t.Skipf("%s is not installed (Debian: postgresql-client); CI has it", tool)
		}
	}
	n := startNodeIn(t, dir, testConfig(t, dir, nil))
	for _, u := range []string{"alice", "bob", "carol"} {
		n.createUser(t, u, u+"-password")
	}
	alice := n.login(t, "alice", "alice-password")
	bob := n.login(t, "bob", "bob-password")
	var ids []string
	for i := range 10 {
		id, err := sendOne(t.Context(), alice, bob, fmt.Sprintf("pg-%d", i), loadBody(0, i))
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		ids = append(ids, id)
	}
	wantUsers := allUsers(t, n.admin)
	n.stop()

	dsnBytes, err := os.ReadFile(filepath.Join(dir, "postgres.dsn"))
	if err != nil {
		t.Fatal(err)
	}
	dsn := strings.TrimSpace(string(dsnBytes))
	dump := filepath.Join(t.TempDir(), "valise.dump")
	// The commands of docs/ops/backups.md, word for word.
	if _, stderr, code := runCmd(t, "pg_dump", "-Fc", "-f", dump, dsn); code != 0 {
		t.Fatalf("pg_dump: exit %d: %s", code, stderr)
	}
	newDSN := pgtest.DSN(t)
	if _, stderr, code := runCmd(t, "pg_restore", "--no-owner", "--exit-on-error", "-d", newDSN, dump); code != 0 {
		t.Fatalf("pg_restore: exit %d: %s", code, stderr)
	}

	fresh := freshDataDir(t, dir)
	if err := os.WriteFile(filepath.Join(fresh, "postgres.dsn"), []byte(newDSN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runValised(t, "migrate", "--check", "--data", fresh)
	if code != 0 {
		t.Errorf("migrate --check on the restored database: exit %d: %s%s", code, stdout, stderr)
	}
	r := startNodeIn(t, fresh, testConfig(t, fresh, nil))
	if got := allUsers(t, r.admin); !slices.Equal(got, wantUsers) {
		t.Errorf("users after pg_restore = %v, want %v", got, wantUsers)
	}
	marker := []byte("after the restore")
	from := &device{user: alice.user, id: alice.id, token: alice.token, c: r.client(t)}
	to := &device{user: bob.user, id: bob.id, token: bob.token, c: r.client(t)}
	if _, err := sendOne(t.Context(), from, to, "marker", marker); err != nil {
		t.Fatalf("send to the restored node: %v", err)
	}
	got := readInboxUntil(t, to, marker)
	if len(got) != len(ids) {
		t.Fatalf("%d envelopes after pg_restore, want %d", len(got), len(ids))
	}
	for i, m := range got {
		if m.EnvelopeId != ids[i] || !bytes.Equal(m.Ciphertext, loadBody(0, i)) {
			t.Errorf("envelope %d after pg_restore: id %s, body %.30q; want %s, message %d", i, m.EnvelopeId, m.Ciphertext, ids[i], i)
		}
	}
	// The data directory's restore is for SQLite only: it points here.
	if _, stderr, code := runValised(t, "restore", "--data", fresh, "--from", dump); code != 1 || !strings.Contains(stderr, "pg_restore") {
		t.Errorf("valised restore on a PostgreSQL node: exit %d, %q; want 1 and pg_restore named", code, stderr)
	}
}
