package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite" // the test opens the node's SQLite file beside it

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/pki"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

const expiryMetric = "valise_certificate_expiry_timestamp_seconds"

// certLabels are the labels of c's expiry series of kind and name.
func certLabels(kind, name string, c *x509.Certificate) []string {
	sum := sha256.Sum256(c.Raw)
	return []string{`kind="` + kind + `"`, `name="` + name + `"`, `sha256="` + hex.EncodeToString(sum[:]) + `"`}
}

// wantExpiry checks that n exports c's NotAfter under kind and name.
func wantExpiry(t *testing.T, n *testNode, kind, name string, c *x509.Certificate) {
	t.Helper()
	if got, want := n.metric(t, expiryMetric, certLabels(kind, name, c)...), float64(c.NotAfter.Unix()); got != want {
		t.Errorf("%s{kind=%q,name=%q} for %s = %v, want %v", expiryMetric, kind, name, c.Subject, got, want)
	}
}

// firstCert returns the first certificate of a PEM file.
func firstCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	cs, err := pki.LoadCerts(path)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

// TestCertificateExpiryMetric checks that a node exports the expiry of
// every certificate it holds: its node certificate (and the rotated one
// after a reload), its CA file (re-read when it changes) and each
// certificate of each peer's CA bundle (following peer updates and
// removals).
func TestCertificateExpiryMetric(t *testing.T) {
	a := startFedNode(t, "sqlite", "a.example", nil)
	b := startFedNode(t, "sqlite", "b.example", nil)
	peerAll(t, a, b)

	nodeCrt := firstCert(t, filepath.Join(a.dir, "node.crt"))
	caA := firstCert(t, filepath.Join(a.dir, "ca.crt"))
	caB := firstCert(t, filepath.Join(b.dir, "ca.crt"))
	wantExpiry(t, a, pki.KindNode, "a.example", nodeCrt)
	wantExpiry(t, a, pki.KindCA, caA.Subject.CommonName, caA)
	wantExpiry(t, a, pki.KindPeerCA, "b.example", caB)
	if got := a.metric(t, expiryMetric, `kind="peer_ca"`); got != float64(caB.NotAfter.Unix()) {
		t.Errorf("a exports peer CAs summing to %v, want only b's %v", got, float64(caB.NotAfter.Unix()))
	}

	// The node certificate is rotated (10 days left): the metric follows
	// the reload, and the expiry is within the alert's 14 days.
	ca, err := pki.LoadCA(filepath.Join(a.dir, "ca.crt"), filepath.Join(a.dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer([]string{"a.example"}, nil, 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, config.Path(a.dir, a.cfg.TLS.KeyFile), leaf.KeyPEM)
	writeAtomic(t, config.Path(a.dir, a.cfg.TLS.CertFile), leaf.CertPEM)
	rotated, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*certReloadInterval, "rotated node certificate in the metric", func() bool {
		return a.metric(t, expiryMetric, certLabels(pki.KindNode, "a.example", rotated.Leaf)...) == float64(rotated.Leaf.NotAfter.Unix())
	})
	if got := a.metric(t, expiryMetric, `kind="node"`); got != float64(rotated.Leaf.NotAfter.Unix()) {
		t.Errorf("node certificate series sum to %v after the rotation, want only the new one's %v", got, rotated.Leaf.NotAfter.Unix())
	}

	// b's admin rotates b's CA: a trusts both, then the old one alone is
	// dropped; then b is removed.
	newCA, err := pki.NewCA("b.example new CA", 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	both := append(bytes.Clone(pemOf(caB)), newCA.CertPEM()...)
	if _, err := a.admin.UpdatePeer(t.Context(), &adminv1.UpdatePeerRequest{Name: "b.example", CaBundle: both}); err != nil {
		t.Fatal(err)
	}
	wantExpiry(t, a, pki.KindPeerCA, "b.example", caB)
	wantExpiry(t, a, pki.KindPeerCA, "b.example", newCA.Cert)
	if _, err := a.admin.UpdatePeer(t.Context(), &adminv1.UpdatePeerRequest{Name: "b.example", CaBundle: newCA.CertPEM()}); err != nil {
		t.Fatal(err)
	}
	if got := a.metric(t, expiryMetric, certLabels(pki.KindPeerCA, "b.example", caB)...); got != 0 {
		t.Errorf("b's dropped CA is still exported (%v)", got)
	}
	wantExpiry(t, a, pki.KindPeerCA, "b.example", newCA.Cert)

	// The organization's CA file gains a second CA (a's own CA rotation).
	nextCA, err := pki.NewCA("a.example next CA", 400*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(a.dir, "ca.crt"), append(pemOf(caA), nextCA.CertPEM()...))
	wantExpiry(t, a, pki.KindCA, caA.Subject.CommonName, caA)
	wantExpiry(t, a, pki.KindCA, "a.example next CA", nextCA.Cert)

	if _, err := a.admin.RemovePeer(t.Context(), &adminv1.RemovePeerRequest{Name: "b.example"}); err != nil {
		t.Fatal(err)
	}
	if got := a.metric(t, expiryMetric, `kind="peer_ca"`); got != 0 {
		t.Errorf("peer CAs still exported after the only peer was removed (%v)", got)
	}
}

// pemOf encodes a certificate as PEM.
func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// TestStorageMetrics checks the database metrics on both backends: the
// periodic ping answers (valise_storage_up, valise_storage_ping_seconds),
// commits are timed, and a commit the database refuses (a trigger stands in
// for a full disk) is counted in valise_storage_commit_failures_total
// while the sender gets an error. On PostgreSQL the database is then made
// unreachable: valise_storage_up drops to 0 with one log line, and comes
// back.
func TestStorageMetrics(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, nil)
		eventually(t, 30*time.Second, "first database ping", func() bool {
			return n.metric(t, "valise_storage_ping_seconds_count") >= 1
		})
		if got := n.metric(t, "valise_storage_up"); got != 1 {
			t.Fatalf("valise_storage_up = %v, want 1", got)
		}
		n.createUser(t, "alice", "alice-password")
		alice := n.login(t, "alice", "alice-password")
		send(t, alice, "k1", []*device{alice}, []byte("one"))
		if got := n.metric(t, "valise_storage_commit_seconds_count"); got < 1 {
			t.Errorf("valise_storage_commit_seconds_count = %v after a send, want ≥ 1", got)
		}
		if got := n.metric(t, "valise_storage_commit_failures_total"); got != 0 {
			t.Errorf("valise_storage_commit_failures_total = %v before any failure", got)
		}

		// The database refuses inbox rows: the send fails and is counted.
		dropTrigger := refuseInboxInserts(t, n, backend)
		req := &clientv1.SendEnvelopesRequest{IdempotencyKey: "k2", Envelopes: []*clientv1.OutgoingEnvelope{
			{RecipientUser: alice.user, RecipientDeviceId: alice.id, Ciphertext: []byte("two")}}}
		if _, err := alice.c.SendEnvelopes(alice.ctx(t.Context()), req); err == nil {
			t.Fatal("a send the database refused was acknowledged")
		} else if status.Code(err) != codes.Internal || status.Convert(err).Message() != "internal error" {
			t.Errorf("a send the database refused: %v, want Internal \"internal error\" (docs/OPERATIONS.md)", err)
		}
		if logs := n.logs.String(); !strings.Contains(logs, `"msg":"group commit failed"`) || !strings.Contains(logs, "simulated full disk") {
			t.Errorf("no \"group commit failed\" log line with the database's error:\n%s", logs)
		}
		if got := n.metric(t, "valise_storage_commit_failures_total"); got < 1 {
			t.Errorf("valise_storage_commit_failures_total = %v after a refused commit, want ≥ 1", got)
		}
		dropTrigger()
		send(t, alice, "k3", []*device{alice}, []byte("three"))

		if backend != "postgres" {
			return
		}
		setConnectable := cutPostgres(t, n)
		setConnectable(false)
		eventually(t, 4*10*time.Second, "valise_storage_up = 0 with the database unreachable", func() bool {
			return n.metric(t, "valise_storage_up") == 0
		})
		if logs := n.logs.String(); !strings.Contains(logs, `"msg":"database not answering"`) {
			t.Errorf("no \"database not answering\" log line:\n%s", logs)
		}
		setConnectable(true)
		eventually(t, 4*10*time.Second, "valise_storage_up = 1 with the database back", func() bool {
			return n.metric(t, "valise_storage_up") == 1
		})
		if logs := n.logs.String(); strings.Count(logs, `"msg":"database not answering"`) != 1 ||
			!strings.Contains(logs, `"msg":"database answering again"`) {
			t.Errorf("want one \"database not answering\" and one \"database answering again\" line:\n%s", logs)
		}
	})
}

// refuseInboxInserts installs a trigger that makes the node's database
// refuse every new inbox row, as a full disk would refuse the commit, and
// returns a function that removes it.
func refuseInboxInserts(t *testing.T, n *testNode, backend string) func() {
	t.Helper()
	ctx := t.Context()
	if backend == "postgres" {
		dsn := nodeDSN(t, n)
		exec := func(sql string) {
			t.Helper()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		exec(`CREATE FUNCTION refuse_inbox() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'simulated full disk'; END $$;
			CREATE TRIGGER refuse_inbox BEFORE INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION refuse_inbox()`)
		return func() { exec(`DROP TRIGGER refuse_inbox ON inbox; DROP FUNCTION refuse_inbox()`) }
	}
	db, err := sql.Open("sqlite", config.Path(n.dir, n.cfg.Storage.SQLite.Path)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER refuse_inbox BEFORE INSERT ON inbox BEGIN SELECT RAISE(ABORT, 'simulated full disk'); END`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := db.ExecContext(ctx, `DROP TRIGGER refuse_inbox`); err != nil {
			t.Fatal(err)
		}
	}
}

// nodeDSN returns the PostgreSQL DSN of the node n.
func nodeDSN(t *testing.T, n *testNode) string {
	t.Helper()
	b, err := os.ReadFile(config.Path(n.dir, n.cfg.Storage.Postgres.DSNFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// cutPostgres returns a function that makes n's database refuse (false)
// or accept (true) connections; refusing also ends the open ones. The
// database accepts connections again when the test ends.
func cutPostgres(t *testing.T, n *testNode) func(bool) {
	t.Helper()
	u, err := url.Parse(nodeDSN(t, n))
	if err != nil {
		t.Fatal(err)
	}
	db := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	name := strings.TrimPrefix(u.Path, "/")
	set := func(ok bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, os.Getenv(pgtest.EnvVar))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", db, ok)); err != nil {
			t.Fatal(err)
		}
		if !ok {
			if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() { set(true) })
	return set
}
