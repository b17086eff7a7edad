package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/valise-im/valise/internal/config"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
)

// fedTweak makes federation retries quick enough for tests.
func fedTweak(c *config.Config) {
	c.Federation.BackoffMin = config.Duration(50 * time.Millisecond)
	c.Federation.BackoffMax = config.Duration(500 * time.Millisecond)
}

// startFedNode starts a node called name, with its own CA, on backend.
func startFedNode(t testing.TB, backend, name string, tweak func(*config.Config)) *testNode {
	t.Helper()
	dir := newNamedNodeDir(t, backend, name)
	return startNodeIn(t, dir, testConfig(t, dir, func(c *config.Config) {
		fedTweak(c)
		if tweak != nil {
			tweak(c)
		}
	}))
}

// addPeer lists the node in peerDir, serving federation at addr, as a
// peer of n, trusting that node's CA.
func addPeer(t testing.TB, n *testNode, peerDir, addr string) {
	t.Helper()
	cfg, err := config.Load(peerDir)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(peerDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.AddPeer(t.Context(), &adminv1.AddPeerRequest{Name: cfg.Node.Name, Address: addr, CaBundle: ca}); err != nil {
		t.Fatalf("%s: add peer %s: %v", n.cfg.Node.Name, cfg.Node.Name, err)
	}
}

// peerAll lists every node as a peer of every other.
func peerAll(t testing.TB, nodes ...*testNode) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				addPeer(t, a, b.dir, b.ready.Federation)
			}
		}
	}
}

// federationClient dials addr, the federation listener of the node named
// serverName whose CA is in caFile, presenting cert.
func federationClient(t testing.TB, addr, serverName, caFile string, cert tls.Certificate) federationv1.FederationServiceClient {
	t.Helper()
	roots := x509.NewCertPool()
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(ca)
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: serverName, Certificates: []tls.Certificate{cert}}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return federationv1.NewFederationServiceClient(conn)
}

// nodeCert returns the node certificate of the node in dir.
func nodeCert(t testing.TB, dir string) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// asPeer returns a FederationService client of n, speaking as the node
// in fromDir (with that node's certificate).
func (n *testNode) asPeer(t testing.TB, fromDir string) federationv1.FederationServiceClient {
	return federationClient(t, n.ready.Federation, n.cfg.Node.Name, filepath.Join(n.dir, "ca.crt"), nodeCert(t, fromDir))
}

// metric returns the sum of the samples of the metric family name whose
// labels include every pair of labels (`key="value"`), scraped from n.
func (n *testNode) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.ready.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// eventually polls cond every 20 ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peerState returns n's delivery state for peer.
func (n *testNode) peerState(t testing.TB, peer string) *adminv1.PeerDelivery {
	t.Helper()
	resp, err := n.admin.ListPeers(t.Context(), &adminv1.ListPeersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Peers {
		if p.Name == peer {
			return p.Delivery
		}
	}
	t.Fatalf("%s is not a peer of %s", peer, n.cfg.Node.Name)
	return nil
}

func fedBody(from string, i int) []byte { return fmt.Appendf(nil, "%s #%06d", from, i) }
