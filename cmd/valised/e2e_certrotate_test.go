package main

import (
	"crypto/tls"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/pki"
)

// clientSerial handshakes with the client listener and returns the serial
// of the certificate it presents.
func (n *testNode) clientSerial(t *testing.T) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", n.ready.Client, n.tlsConfig())
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// writeAtomic replaces path through a temporary file and a rename, as an
// operator or a certificate manager would.
func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A new node.crt/node.key is picked up by the running node without a
// restart, and a connection opened before the rotation keeps working.
func TestCertRotation(t *testing.T) {
	n := startNode(t, "sqlite", nil)
	before := n.clientSerial(t)

	conn := n.dial(t)
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health before rotation: %v", err)
	}

	ca, err := pki.LoadCA(filepath.Join(n.dir, "ca.crt"), filepath.Join(n.dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer([]string{"localhost"}, nil, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then certificate: a poll in between sees a mismatched
	// pair, which the node must refuse and keep serving the old one.
	writeAtomic(t, config.Path(n.dir, n.cfg.TLS.KeyFile), leaf.KeyPEM)
	writeAtomic(t, config.Path(n.dir, n.cfg.TLS.CertFile), leaf.CertPEM)
	cert, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	want := cert.Leaf.SerialNumber

	deadline := time.Now().Add(3 * certReloadInterval)
	for {
		got := n.clientSerial(t)
		if got.Cmp(want) == 0 {
			break
		}
		if got.Cmp(before) != 0 {
			t.Fatalf("client listener presents serial %v, neither the old %v nor the new %v", got, before, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate not reloaded within %v\nlogs:\n%s", 3*certReloadInterval, n.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}

	if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health on the pre-rotation connection: %v", err)
	}
	if _, err := healthpb.NewHealthClient(n.dial(t)).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health on a new connection: %v", err)
	}
	if logs := n.logs.String(); !strings.Contains(logs, "certificate reloaded") || !strings.Contains(logs, want.String()) {
		t.Fatalf("no reload log with the new serial:\nlogs:\n%s", logs)
	}

	// A certificate from the right CA that names another node is refused
	// on reload, as `valised check` refuses it at start: the node keeps
	// presenting the one it has.
	other, err := ca.IssueServer([]string{"elsewhere.example"}, nil, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, config.Path(n.dir, n.cfg.TLS.KeyFile), other.KeyPEM)
	writeAtomic(t, config.Path(n.dir, n.cfg.TLS.CertFile), other.CertPEM)
	eventually(t, 3*certReloadInterval, "the node refuses a certificate for another name", func() bool {
		return strings.Contains(n.logs.String(), "does not name node localhost")
	})
	if got := n.clientSerial(t); got.Cmp(want) != 0 {
		t.Fatalf("after a certificate for another name: the node presents serial %v, want the kept %v", got, want)
	}
	if strings.Contains(n.logs.String(), "PRIVATE KEY") {
		t.Fatal("logs contain key material")
	}
}
