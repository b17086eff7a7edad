package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/valise-im/valise/internal/pki"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
)

// federationSerial handshakes with n's federation listener as the node in
// fromDir and returns the serial of the certificate n presents.
func (n *testNode) federationSerial(t *testing.T, fromDir string, roots *x509.CertPool) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", n.ready.Federation, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots,
		ServerName: n.cfg.Node.Name, Certificates: []tls.Certificate{nodeCert(t, fromDir)}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("federation handshake with %s: %v", n.cfg.Node.Name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// TestFederationCARotation follows docs/FEDERATION.md: node a moves to a
// new CA while b keeps talking to it. b trusts both CAs, a switches its
// node certificate (reloaded without a restart), b drops the old CA; no
// message is lost in either direction at any step.
func TestFederationCARotation(t *testing.T) {
	a := startFedNode(t, "sqlite", "a.example", nil)
	b := startFedNode(t, "sqlite", "b.example", nil)
	peerAll(t, a, b)
	a.createUser(t, "alice", "alice-password")
	b.createUser(t, "bob", "bob-password")
	alice := a.login(t, "alice", "alice-password")
	bob := b.login(t, "bob", "bob-password")
	aliceStream, bobStream := inboxStream(t, alice, 0), inboxStream(t, bob, 0)
	step := 0
	talk := func(what string) {
		t.Helper()
		step++
		send(t, alice, "a-"+what, []*device{bob}, []byte("a: "+what))
		send(t, bob, "b-"+what, []*device{alice}, []byte("b: "+what))
		if m := recvN(t, bobStream, 1)[0]; string(m.Ciphertext) != "a: "+what {
			t.Fatalf("%s: bob got %q", what, m.Ciphertext)
		}
		if m := recvN(t, aliceStream, 1)[0]; string(m.Ciphertext) != "b: "+what {
			t.Fatalf("%s: alice got %q", what, m.Ciphertext)
		}
	}
	talk("before the rotation")

	oldCA, err := os.ReadFile(filepath.Join(a.dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := pki.NewCA("a.example CA 2", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// 1. b trusts a's old and new CA.
	if _, err := b.admin.UpdatePeer(t.Context(), &adminv1.UpdatePeerRequest{Name: "a.example",
		CaBundle: append(append([]byte{}, oldCA...), newCA.CertPEM()...)}); err != nil {
		t.Fatal(err)
	}
	talk("b trusts both CAs")

	// 2. a trusts both CAs in its own ca.crt (what it gives its clients,
	// and what its node certificate must verify against), then its node
	// certificate comes from the new CA, reloaded live.
	writeAtomic(t, filepath.Join(a.dir, "ca.crt"), append(append([]byte{}, oldCA...), newCA.CertPEM()...))
	leaf, err := newCA.IssueServer([]string{"a.example"}, nil, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(a.dir, "node.key"), leaf.KeyPEM)
	writeAtomic(t, filepath.Join(a.dir, "node.crt"), leaf.CertPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(newCA.CertPEM())
	wantCert, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	want, err := x509.ParseCertificate(wantCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*certReloadInterval, "a presents its new certificate", func() bool {
		c, err := tls.Dial("tcp", a.ready.Federation, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots,
			ServerName: "a.example", Certificates: []tls.Certificate{nodeCert(t, b.dir)}, NextProtos: []string{"h2"}})
		if err != nil {
			return false
		}
		defer c.Close()
		return bytes.Equal(c.ConnectionState().PeerCertificates[0].Raw, want.Raw)
	})
	talk("a's certificate from the new CA")

	// 3. b drops a's old CA: a's connections opened with the old
	// certificate are refused at their next call, and a reconnects with
	// the new one.
	if _, err := b.admin.UpdatePeer(t.Context(), &adminv1.UpdatePeerRequest{Name: "a.example", CaBundle: newCA.CertPEM()}); err != nil {
		t.Fatal(err)
	}
	talk("b trusts only the new CA")
	if got := a.federationSerial(t, b.dir, roots); got.Cmp(want.SerialNumber) != 0 {
		t.Errorf("a's federation listener presents serial %v, want %v", got, want.SerialNumber)
	}
	t.Logf("%d exchanges, none lost", step)
}
