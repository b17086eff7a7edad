package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/valise-im/valise/internal/config"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// loadSender sends numbered envelopes to one device, one after another,
// and records each acknowledged envelope id in order.
type loadSender struct {
	n    int
	from *device
	mu   sync.Mutex
	ids  []string // ids[i] acknowledges message i
	sent int      // messages attempted (acknowledged or not)
}

func (s *loadSender) acked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// sendNext sends the next message and records its id.
func (s *loadSender) sendNext(t *testing.T, to *device) error {
	s.mu.Lock()
	i := s.sent
	s.sent++
	s.mu.Unlock()
	id, err := sendOne(t.Context(), s.from, to, fmt.Sprintf("load-%d-%06d", s.n, i), loadBody(s.n, i))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
	return nil
}

// TestBackupUnderLoadAndRestore backs a SQLite node up with the real
// valisectl while senders keep sending through the client wire, restores
// the backup with the real valised into a fresh data directory holding only
// the files the docs say to save, starts a node there, and finds every
// user and every envelope acknowledged before the backup began. Envelopes
// acknowledged during the backup may be in it or not, but what is there
// is, per sender, exactly a prefix of what it sent, byte for byte.
func TestBackupUnderLoadAndRestore(t *testing.T) {
	n := startNode(t, "sqlite", nil)
	var users []string
	for i := range 40 {
		users = append(users, fmt.Sprintf("user%02d", i))
	}
	users = append(users, "rcpt", "s0", "s1", "s2")
	for _, u := range users {
		n.createUser(t, u, u+"-password")
	}
	rcpt := n.login(t, "rcpt", "rcpt-password")
	senders := make([]*loadSender, 3)
	for i := range senders {
		senders[i] = &loadSender{n: i, from: n.login(t, fmt.Sprintf("s%d", i), fmt.Sprintf("s%d-password", i))}
		for range 20 {
			if err := senders[i].sendNext(t, rcpt); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
	}

	// Load: every sender keeps sending until the backup is done.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := s.sendNext(t, rcpt); err != nil {
					t.Errorf("sender %d: %v", s.n, err)
					return
				}
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)
	// Let the load get going: each sender has had envelopes acknowledged
	// since it started.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		going := true
		for _, s := range senders {
			going = going && s.acked() >= 25
		}
		if going {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the load did not get going within 30s")
		}
	}
	before := make([]int, len(senders))
	for i, s := range senders {
		before[i] = s.acked()
	}
	out := filepath.Join(t.TempDir(), "valise-backup.db")
	stdout, stderr, code := n.ctl(t, "", "backup", "--out", out)
	during := make([]int, len(senders))
	for i, s := range senders {
		during[i] = s.acked()
	}
	stopLoad()
	if code != 0 {
		t.Fatalf("valisectl backup: exit %d: %s", code, stderr)
	}
	t.Logf("acknowledged before the backup %v, by its end %v", before, during)

	// The file is whole, private, and what valisectl printed.
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	mustContain(t, "valisectl backup output", stdout,
		fmt.Sprintf("backup written to %s: %d bytes, sha256 %s", out, len(data), hex.EncodeToString(sum[:])))
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode: %v, %v; want 0600", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left beside the backup: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(n.dir, "*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left in the data directory: %v", left)
	}
	// It is audited, with its SHA-256.
	audit, err := n.admin.ListAuditEvents(t.Context(), &adminv1.ListAuditEventsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range audit.Events {
		found = found || (e.Action == "database.backup" && strings.Contains(e.Detail, hex.EncodeToString(sum[:])))
	}
	if !found {
		t.Errorf("no database.backup audit event with the backup's SHA-256")
	}
	// A second backup to the same file is refused without --force.
	if _, stderr, code := n.ctl(t, "", "backup", "--out", out); code != 1 || !strings.Contains(stderr, "--force") {
		t.Errorf("backup onto an existing file: exit %d, %q; want 1 and a hint at --force", code, stderr)
	}
	if again, _ := os.ReadFile(out); !slices.Equal(again, data) {
		t.Errorf("the refused backup changed the existing file")
	}
	wantUsers := allUsers(t, n.admin)

	// Restore into a fresh directory holding only the saved files.
	dir := freshDataDir(t, n.dir)
	stdout, stderr, code = runValised(t, "restore", "--data", dir, "--from", out)
	if code != 0 {
		t.Fatalf("valised restore: exit %d: %s", code, stderr)
	}
	mustContain(t, "valised restore output", stdout, "restored "+out)
	r := startNodeIn(t, dir, testConfig(t, dir, nil))
	if got := allUsers(t, r.admin); !slices.Equal(got, wantUsers) {
		t.Errorf("users after restore = %v, want %v", got, wantUsers)
	}
	// The devices and tokens are in the backup too.
	marker := []byte("after the restore")
	from := &device{user: senders[0].from.user, id: senders[0].from.id, token: senders[0].from.token, c: r.client(t)}
	to := &device{user: rcpt.user, id: rcpt.id, token: rcpt.token, c: r.client(t)}
	if _, err := sendOne(t.Context(), from, to, "marker", marker); err != nil {
		t.Fatalf("send the marker to the restored node: %v", err)
	}
	got := make([][]string, len(senders))
	for _, m := range readInboxUntil(t, to, marker) {
		s, i, ok := parseLoadBody(m.Ciphertext)
		if !ok || s < 0 || s >= len(senders) {
			t.Fatalf("envelope at cursor %d is not a whole load message: %.40q", m.Cursor, m.Ciphertext)
		}
		if m.SenderUser != senders[s].from.user || m.SenderDeviceId != senders[s].from.id {
			t.Errorf("message %d of sender %d comes from %s/%s", i, s, m.SenderUser, m.SenderDeviceId)
		}
		if i != len(got[s]) {
			t.Fatalf("sender %d: message %d follows %d messages: not a prefix of what it sent", s, i, len(got[s]))
		}
		got[s] = append(got[s], m.EnvelopeId)
	}
	t.Logf("restored per sender: %d, %d, %d", len(got[0]), len(got[1]), len(got[2]))
	for i, s := range senders {
		if len(got[i]) < before[i] {
			t.Errorf("sender %d: %d messages restored, but %d were acknowledged before the backup began", i, len(got[i]), before[i])
		}
		if len(got[i]) > s.sent {
			t.Errorf("sender %d: %d messages restored, but only %d were sent", i, len(got[i]), s.sent)
		}
		for j, id := range got[i] {
			if j < len(s.ids) && id != s.ids[j] {
				t.Errorf("sender %d message %d: restored id %s, acknowledged as %s", i, j, id, s.ids[j])
			}
		}
	}
}

// TestBackupRefusedOnPostgres: a PostgreSQL node tells valisectl to use
// pg_dump, and no file is written.
func TestBackupRefusedOnPostgres(t *testing.T) {
	n := startNode(t, "postgres", nil)
	out := filepath.Join(t.TempDir(), "backup.db")
	_, stderr, code := n.ctl(t, "", "backup", "--out", out)
	if code != 1 {
		t.Errorf("backup of a PostgreSQL node: exit %d, want 1", code)
	}
	mustContain(t, "valisectl stderr", stderr, "pg_dump", "FailedPrecondition")
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Errorf("files left after a refused backup: %v", entries)
	}
}

// TestRestoreRefusals: valised restore refuses while a node serves the
// data directory, over an existing database without --force, and a file
// that is not a sound Valise database of a schema it knows; with --force
// it keeps the replaced database as a .bak.
func TestRestoreRefusals(t *testing.T) {
	n := startNode(t, "sqlite", nil)
	n.createUser(t, "alice", "alice-password")
	good := filepath.Join(t.TempDir(), "good.db")
	if _, stderr, code := n.ctl(t, "", "backup", "--out", good); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	if _, stderr, code := runValised(t, "restore", "--data", n.dir, "--from", good, "--force"); code != 1 || !strings.Contains(stderr, "locked") {
		t.Errorf("restore while the node serves: exit %d, %q; want 1 and the lock named", code, stderr)
	}
	n.createUser(t, "bob", "bob-password") // only in the live database
	n.stop()
	db := filepath.Join(n.dir, n.cfg.Storage.SQLite.Path)

	garbage := filepath.Join(t.TempDir(), "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("garbage ", 1000)), 0o600)
	newer := filepath.Join(t.TempDir(), "newer.db")
	b, _ := os.ReadFile(good)
	os.WriteFile(newer, b, 0o600)
	recordFutureSQLite(t, newer)
	for _, tc := range []struct {
		name, from string
		force      bool
		want       string
	}{
		{"existing database", good, false, "exists; pass --force"},
		{"not a database", garbage, true, "not a sound Valise SQLite database"},
		{"newer schema", newer, true, "this database was migrated by a newer valised"},
		{"missing file", filepath.Join(t.TempDir(), "nope.db"), true, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"restore", "--data", n.dir, "--from", tc.from}
			if tc.force {
				args = append(args, "--force")
			}
			_, stderr, code := runValised(t, args...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, %q; want 1 and %q", code, stderr, tc.want)
			}
		})
	}
	if left, _ := filepath.Glob(filepath.Join(n.dir, "*.tmp*")); len(left) > 0 {
		t.Errorf("refused restores left %v", left)
	}
	stdout, stderr, code := runValised(t, "restore", "--data", n.dir, "--from", good, "--force")
	if code != 0 {
		t.Fatalf("restore --force: exit %d: %s", code, stderr)
	}
	baks, _ := filepath.Glob(db + ".*.bak")
	if len(baks) != 1 {
		t.Fatalf("want one .bak of the replaced database, got %v", baks)
	}
	mustContain(t, "restore --force output", stdout, "kept the previous database as "+baks[0])
	r := startNodeIn(t, n.dir, n.cfg)
	if got := allUsers(t, r.admin); !slices.Equal(got, []string{"alice@localhost"}) {
		t.Errorf("users after restore = %v, want only alice (bob came after the backup)", got)
	}
}

// TestBackupOverRemoteAdmin backs a node up over the remote admin mTLS
// listener with --json and --force, across several 1 MiB chunks, and
// restores it.
func TestBackupOverRemoteAdmin(t *testing.T) {
	dir := newNodeDir(t, "sqlite")
	n := startNodeIn(t, dir, testConfig(t, dir, func(c *config.Config) { c.Listen.AdminRemote = "127.0.0.1:0" }))
	n.createUser(t, "alice", "alice-password")
	n.createUser(t, "bob", "bob-password")
	alice := n.login(t, "alice", "alice-password")
	bob := n.login(t, "bob", "bob-password")
	// About 2.7 MiB of ciphertext: the backup takes several chunks.
	body := func(i int) []byte { return bytes.Repeat([]byte{byte(i), 0xa5, byte(i * 7)}, 80_000) }
	for i := range 12 {
		if _, err := sendOne(t.Context(), alice, bob, fmt.Sprintf("big-%d", i), body(i)); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	out := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(out, []byte("an older backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	remote := []string{"--addr", n.ready.AdminRemote, "--server-name", "localhost",
		"--cert", filepath.Join(dir, "admin.crt"), "--key", filepath.Join(dir, "admin.key"), "--ca", filepath.Join(dir, "ca.crt")}
	stdout, stderr, code := n.ctl(t, "", append(remote, "--json", "backup", "--out", out, "--force")...)
	if code != 0 {
		t.Fatalf("remote backup --force: exit %d: %s", code, stderr)
	}
	var sum adminv1.BackupSummary
	if err := protojson.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("backup --json printed %q: %v", stdout, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(data)
	if sum.SizeBytes != int64(len(data)) || !bytes.Equal(sum.Sha256, h[:]) || sum.SizeBytes < 2*1<<20 {
		t.Errorf("summary %v; file has %d bytes, sha256 %x (want over 2 MiB)", &sum, len(data), h)
	}
	fresh := freshDataDir(t, dir)
	if _, stderr, code := runValised(t, "restore", "--data", fresh, "--from", out); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	r := startNodeIn(t, fresh, testConfig(t, fresh, nil))
	from := &device{user: alice.user, id: alice.id, token: alice.token, c: r.client(t)}
	to := &device{user: bob.user, id: bob.id, token: bob.token, c: r.client(t)}
	if _, err := sendOne(t.Context(), from, to, "marker", []byte("marker")); err != nil {
		t.Fatal(err)
	}
	got := readInboxUntil(t, to, []byte("marker"))
	if len(got) != 12 {
		t.Fatalf("%d envelopes restored, want 12", len(got))
	}
	for i, m := range got {
		if !bytes.Equal(m.Ciphertext, body(i)) {
			t.Errorf("envelope %d restored with different bytes", i)
		}
	}
}
