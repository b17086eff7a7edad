package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// peerDir initializes another organization's node (its own CA) named name.
func peerDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dir = filepath.Join(dir, "node")
	if _, err := initNode(initParams{Dir: dir, Name: name, Client: "127.0.0.1:0", Federation: "127.0.0.1:0", Metrics: ""}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// federationHealth dials n's federation listener as the node whose data
// directory is from, and reports whether a health check got through.
func (n *testNode) federationHealth(t *testing.T, from string) error {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(from, "node.crt"), filepath.Join(from, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(n.dir, "ca.crt"))
	roots.AppendCertsFromPEM(ca)
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}}
	conn, err := grpc.NewClient(n.ready.Federation, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	return err
}

// TestFederationIsClosed checks closed federation at the real federation
// listener: only a listed, unblocked peer proven by its own CA gets
// through the handshake, and admin changes apply at once.
func TestFederationIsClosed(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, nil)
		b := peerDir(t, "b.example")
		c := peerDir(t, "c.example")
		if err := n.federationHealth(t, b); err == nil {
			t.Fatal("an unlisted node got through the federation handshake")
		}
		caB, _ := os.ReadFile(filepath.Join(b, "ca.crt"))
		if _, err := n.admin.AddPeer(t.Context(), &adminv1.AddPeerRequest{Name: "b.example", Address: "127.0.0.1:1", CaBundle: caB}); err != nil {
			t.Fatal(err)
		}
		if err := n.federationHealth(t, b); err != nil {
			t.Fatalf("listed peer b refused: %v", err)
		}
		if err := n.federationHealth(t, c); err == nil {
			t.Fatal("unlisted c got through")
		}
		if _, err := n.admin.BlockPeer(t.Context(), &adminv1.BlockPeerRequest{Name: "b.example"}); err != nil {
			t.Fatal(err)
		}
		if err := n.federationHealth(t, b); err == nil {
			t.Fatal("a blocked peer got through")
		}
		if _, err := n.admin.UnblockPeer(t.Context(), &adminv1.UnblockPeerRequest{Name: "b.example"}); err != nil {
			t.Fatal(err)
		}
		if err := n.federationHealth(t, b); err != nil {
			t.Fatalf("unblocked peer b refused: %v", err)
		}
		if _, err := n.admin.RemovePeer(t.Context(), &adminv1.RemovePeerRequest{Name: "b.example"}); err != nil {
			t.Fatal(err)
		}
		if err := n.federationHealth(t, b); err == nil {
			t.Fatal("a removed peer got through")
		}
	})
}
