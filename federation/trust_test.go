package federation

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/pki"
	"github.com/valise-im/valise/storage"
)

const (
	nodeA = valise.NodeName("a.example")
	nodeB = valise.NodeName("b.example")
	nodeC = valise.NodeName("c.example")
	nodeD = valise.NodeName("d.example")
)

// fakePeers is a PeerSource over a mutable, name-ordered list.
type fakePeers struct {
	mu    sync.Mutex
	peers []storage.Peer
	err   error
}

func (f *fakePeers) ListPeers(_ context.Context, after valise.NodeName, limit int) ([]storage.Peer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	ps := slices.Clone(f.peers)
	slices.SortFunc(ps, func(x, y storage.Peer) int { return strings.Compare(string(x.Name), string(y.Name)) })
	var out []storage.Peer
	for _, p := range ps {
		if p.Name > after && len(out) < limit {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakePeers) set(p storage.Peer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.peers {
		if f.peers[i].Name == p.Name {
			f.peers[i] = p
			return
		}
	}
	f.peers = append(f.peers, p)
}

func newCA(t testing.TB, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t testing.TB, ca *pki.CA, names ...string) *tls.Certificate {
	t.Helper()
	leaf, err := ca.IssueServer(names, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// issueExpired mints a certificate for name from ca that expired an hour
// ago.
func issueExpired(t *testing.T, ca *pki.CA, name string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-2 * time.Hour),
		NotAfter:     now.Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func static(c *tls.Certificate) func() (*tls.Certificate, error) {
	return func() (*tls.Certificate, error) { return c, nil }
}

func pool(cas ...*pki.CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// result is what the test server saw of one connection.
type result struct {
	err  error
	peer valise.NodeName
}

// serve runs a TLS listener with cfg on 127.0.0.1 and reports every
// connection's handshake outcome. On success it writes one byte and reads
// one back.
func serve(t *testing.T, cfg *tls.Config) (string, <-chan result) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results := make(chan result, 16)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
				conn := tls.Server(raw, cfg)
				if err := conn.Handshake(); err != nil {
					results <- result{err: err}
					return
				}
				name, err := PeerName(conn.ConnectionState())
				if err != nil {
					results <- result{err: err}
					return
				}
				if _, err := conn.Write([]byte{1}); err != nil {
					results <- result{err: err}
					return
				}
				var b [1]byte
				if _, err := io.ReadFull(conn, b[:]); err != nil {
					results <- result{err: err}
					return
				}
				results <- result{peer: name}
			}()
		}
	}()
	return ln.Addr().String(), results
}

// dial connects with cfg, exchanges one byte each way and returns the
// client-side error, if any.
func dial(addr string, cfg *tls.Config) error {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	conn := tls.Client(raw, cfg)
	if err := conn.Handshake(); err != nil {
		return err
	}
	// With TLS 1.3 the server checks the client certificate after the
	// client's handshake completes: only a read shows the verdict.
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return err
	}
	_, err = conn.Write([]byte{1})
	return err
}

func wait(t *testing.T, results <-chan result) result {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no server result")
		return result{}
	}
}

type world struct {
	caA, caB, caC, caD *pki.CA
	certA, certB       *tls.Certificate
	src                *fakePeers
	trustB             *Trust
	addr               string
	results            <-chan result
}

// newWorld starts node b's federation listener; b's peers are a (a's CA)
// and c (c's CA).
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{caA: newCA(t, "org a"), caB: newCA(t, "org b"), caC: newCA(t, "org c"), caD: newCA(t, "org d")}
	w.certA = issue(t, w.caA, string(nodeA))
	w.certB = issue(t, w.caB, string(nodeB))
	w.src = &fakePeers{peers: []storage.Peer{
		{Name: nodeA, Address: "127.0.0.1:1", CABundle: w.caA.CertPEM()},
		{Name: nodeC, Address: "127.0.0.1:1", CABundle: w.caC.CertPEM()},
	}}
	w.trustB = NewTrust(nodeB, w.src, slog.New(slog.DiscardHandler))
	if err := w.trustB.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.addr, w.results = serve(t, w.trustB.ServerTLS(static(w.certB)))
	return w
}

// clientCfg is a plain crypto/tls client of b presenting cert.
func (w *world) clientCfg(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool(w.caB), ServerName: string(nodeB)}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func (w *world) accepted(t *testing.T, cfg *tls.Config, want valise.NodeName) {
	t.Helper()
	if err := dial(w.addr, cfg); err != nil {
		t.Errorf("client: %v", err)
	}
	r := wait(t, w.results)
	if r.err != nil || r.peer != want {
		t.Errorf("server: peer %q, err %v; want %q", r.peer, r.err, want)
	}
}

func (w *world) refused(t *testing.T, cfg *tls.Config, reason string) {
	t.Helper()
	if err := dial(w.addr, cfg); err == nil {
		t.Error("client: exchange succeeded; want refusal")
	}
	r := wait(t, w.results)
	if r.err == nil {
		t.Fatalf("server: accepted peer %q; want refusal", r.peer)
	}
	if !strings.Contains(r.err.Error(), reason) {
		t.Errorf("server: %v; want reason containing %q", r.err, reason)
	}
}

func TestServerTLS(t *testing.T) {
	w := newWorld(t)
	t.Run("a with its own certificate", func(t *testing.T) {
		w.accepted(t, w.clientCfg(w.certA), nodeA)
	})
	t.Run("c with its own certificate", func(t *testing.T) {
		w.accepted(t, w.clientCfg(issue(t, w.caC, string(nodeC))), nodeC)
	})
	t.Run("c impersonates a", func(t *testing.T) {
		w.refused(t, w.clientCfg(issue(t, w.caC, string(nodeA))), "does not verify")
	})
	t.Run("unlisted d", func(t *testing.T) {
		w.refused(t, w.clientCfg(issue(t, w.caD, string(nodeD))), "not a peer")
	})
	t.Run("expired certificate", func(t *testing.T) {
		w.refused(t, w.clientCfg(issueExpired(t, w.caA, string(nodeA))), "expired")
	})
	t.Run("two DNS names", func(t *testing.T) {
		w.refused(t, w.clientCfg(issue(t, w.caA, string(nodeA), string(nodeC))), "want exactly 1")
	})
	t.Run("no DNS name", func(t *testing.T) {
		w.refused(t, w.clientCfg(issue(t, w.caA)), "want exactly 1")
	})
	t.Run("DNS name is not a node name", func(t *testing.T) {
		w.refused(t, w.clientCfg(issue(t, w.caA, "A.Example")), "not a node name")
	})
	t.Run("certificate names b itself", func(t *testing.T) {
		w.refused(t, w.clientCfg(w.certB), "names this node")
	})
	t.Run("no client certificate", func(t *testing.T) {
		w.refused(t, w.clientCfg(nil), "certificate")
	})
	t.Run("TLS 1.2 only", func(t *testing.T) {
		cfg := w.clientCfg(w.certA)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		w.refused(t, cfg, "version")
	})
	t.Run("plaintext", func(t *testing.T) {
		raw, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := raw.Write([]byte("POST /valise.Federation/Deliver HTTP/1.1\r\nHost: b.example\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, raw) // read until the server gives up
		if r := wait(t, w.results); r.err == nil {
			t.Fatalf("server accepted plaintext as %q", r.peer)
		}
	})
	t.Run("a blocked, then unblocked", func(t *testing.T) {
		w.src.set(storage.Peer{Name: nodeA, CABundle: w.caA.CertPEM(), Blocked: true})
		if err := w.trustB.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.refused(t, w.clientCfg(w.certA), "blocked")
		w.src.set(storage.Peer{Name: nodeA, CABundle: w.caA.CertPEM()})
		if err := w.trustB.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.accepted(t, w.clientCfg(w.certA), nodeA)
	})
	t.Run("a's CA bundle no longer parses", func(t *testing.T) {
		w.src.set(storage.Peer{Name: nodeA, CABundle: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")})
		if err := w.trustB.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.refused(t, w.clientCfg(w.certA), "not a peer")
		w.src.set(storage.Peer{Name: nodeA, CABundle: w.caA.CertPEM()})
		if err := w.trustB.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("rotated server certificate applies without restart", func(t *testing.T) {
		var mu sync.Mutex
		cur := issue(t, w.caB, string(nodeB))
		addr, results := serve(t, w.trustB.ServerTLS(func() (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			return cur, nil
		}))
		var seen [][]byte
		for range 2 {
			cfg := w.clientCfg(w.certA)
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				seen = append(seen, cs.PeerCertificates[0].Raw)
				return nil
			}
			if err := dial(addr, cfg); err != nil {
				t.Fatal(err)
			}
			if r := wait(t, results); r.err != nil {
				t.Fatal(r.err)
			}
			mu.Lock()
			cur = issue(t, w.caB, string(nodeB))
			mu.Unlock()
		}
		if bytes.Equal(seen[0], seen[1]) {
			t.Error("server kept presenting the old certificate")
		}
	})
}

func TestClientTLS(t *testing.T) {
	w := newWorld(t)
	// a's view: b is a peer with b's CA; e is blocked.
	srcA := &fakePeers{peers: []storage.Peer{
		{Name: nodeB, CABundle: w.caB.CertPEM()},
		{Name: "e.example", CABundle: w.caD.CertPEM(), Blocked: true},
	}}
	trustA := NewTrust(nodeA, srcA, nil)
	if err := trustA.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}

	t.Run("a dials b", func(t *testing.T) {
		cfg, err := trustA.ClientTLS(nodeB, static(w.certA))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MinVersion != tls.VersionTLS13 || cfg.ServerName != string(nodeB) {
			t.Errorf("MinVersion %x, ServerName %q", cfg.MinVersion, cfg.ServerName)
		}
		w.accepted(t, cfg, nodeA)
	})
	t.Run("b's server presents a certificate from an unlisted CA", func(t *testing.T) {
		rogue := issue(t, w.caD, string(nodeB))
		addr, results := serve(t, w.trustB.ServerTLS(static(rogue)))
		cfg, err := trustA.ClientTLS(nodeB, static(w.certA))
		if err != nil {
			t.Fatal(err)
		}
		err = dial(addr, cfg)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("dial: %v; want unknown authority", err)
		}
		if r := wait(t, results); r.err == nil {
			t.Error("server saw a completed exchange")
		}
	})
	t.Run("b's server presents a certificate for another name", func(t *testing.T) {
		addr, results := serve(t, w.trustB.ServerTLS(static(issue(t, w.caB, "other.example"))))
		cfg, err := trustA.ClientTLS(nodeB, static(w.certA))
		if err != nil {
			t.Fatal(err)
		}
		if err := dial(addr, cfg); err == nil {
			t.Error("dial succeeded against a certificate for another name")
		}
		wait(t, results)
	})
	for _, name := range []valise.NodeName{nodeC, "e.example", nodeA} {
		t.Run(fmt.Sprintf("refuses %s", name), func(t *testing.T) {
			if cfg, err := trustA.ClientTLS(name, static(w.certA)); err == nil {
				t.Errorf("ClientTLS(%s) = %v, want error", name, cfg)
			}
		})
	}
}

func TestReload(t *testing.T) {
	ca := newCA(t, "org")
	src := &fakePeers{}
	for i := range 2*pageSize + 7 {
		src.peers = append(src.peers, storage.Peer{Name: valise.NodeName(fmt.Sprintf("n%03d.example", i)), CABundle: ca.CertPEM()})
	}
	src.peers = append(src.peers,
		storage.Peer{Name: "blocked.example", CABundle: ca.CertPEM(), Blocked: true},
		storage.Peer{Name: "garbage.example", CABundle: []byte("not pem")},
		storage.Peer{Name: "key.example", CABundle: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})},
		storage.Peer{Name: "trailing.example", CABundle: append(ca.CertPEM(), "junk"...)},
		storage.Peer{Name: "self.example", CABundle: ca.CertPEM()},
	)
	var logs bytes.Buffer
	tr := NewTrust("self.example", src, slog.New(slog.NewTextHandler(&logs, nil)))
	if tr.Allowed("n000.example") {
		t.Error("allowed before the first Reload")
	}
	if err := tr.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 2*pageSize + 7 {
		if name := valise.NodeName(fmt.Sprintf("n%03d.example", i)); !tr.Allowed(name) {
			t.Errorf("%s not allowed", name)
		}
	}
	for _, name := range []valise.NodeName{"blocked.example", "garbage.example", "key.example", "trailing.example", "self.example", "unknown.example"} {
		if tr.Allowed(name) {
			t.Errorf("%s allowed", name)
		}
	}
	for _, name := range []string{"garbage.example", "key.example", "trailing.example"} {
		if !strings.Contains(logs.String(), name) {
			t.Errorf("bad bundle of %s not logged:\n%s", name, logs.String())
		}
	}
	if strings.Contains(logs.String(), "BEGIN") {
		t.Error("logs hold PEM")
	}

	src.err = errors.New("database down")
	if err := tr.Reload(context.Background()); err == nil {
		t.Error("Reload succeeded with a failing source")
	}
	if !tr.Allowed("n000.example") {
		t.Error("a failed Reload dropped the previous snapshot")
	}
}

func TestReloadConcurrent(t *testing.T) {
	ca := newCA(t, "org")
	src := &fakePeers{peers: []storage.Peer{{Name: nodeA, CABundle: ca.CertPEM()}}}
	tr := NewTrust(nodeB, src, nil)
	ctx := context.Background()
	if err := tr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					tr.Allowed(nodeA)
					tr.Allowed(nodeC)
					_, _ = tr.ClientTLS(nodeA, static(nil))
				}
			}
		})
	}
	for i := range 200 {
		src.set(storage.Peer{Name: nodeA, CABundle: ca.CertPEM(), Blocked: i%2 == 0})
		if err := tr.Reload(ctx); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	if !tr.Allowed(nodeA) {
		t.Error("a should end unblocked")
	}
}

func TestPeerNameWithoutCertificate(t *testing.T) {
	if _, err := PeerName(tls.ConnectionState{}); valise.KindOf(err) != valise.KindUnauthenticated {
		t.Errorf("PeerName(empty) error %v", err)
	}
	if _, err := PeerFromContext(context.Background()); valise.KindOf(err) != valise.KindUnauthenticated {
		t.Errorf("PeerFromContext(empty) error %v", err)
	}
}
