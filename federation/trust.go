package federation

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/storage"
)

// PeerSource is what Trust needs from storage.
type PeerSource interface {
	ListPeers(ctx context.Context, after valise.NodeName, limit int) ([]storage.Peer, error)
}

// pageSize is how many peers Reload asks for at a time.
const pageSize = 100

// trusted is one usable peer of a snapshot.
type trusted struct {
	pool    *x509.CertPool
	blocked bool
	// address is the peer's federation endpoint, HOST:PORT.
	address string
	// bundle fingerprints the CA bundle, so that a dialer can tell when
	// the trust it built a connection with has changed.
	bundle [sha256.Size]byte
	// cas are the bundle's certificates, for the expiry metric.
	cas []*x509.Certificate
}

// snapshot is an immutable view of the peer list; Reload replaces it whole.
type snapshot map[valise.NodeName]trusted

// Trust decides which nodes this node federates with and builds the TLS
// configurations that prove a connection's peer. Before the first
// successful Reload no node is trusted. Trust is safe for concurrent use.
type Trust struct {
	self valise.NodeName
	src  PeerSource
	log  *slog.Logger
	snap atomic.Pointer[snapshot]
}

// NewTrust returns a Trust for the node self reading peers from src. It
// trusts no one until Reload succeeds. A nil log discards.
func NewTrust(self valise.NodeName, src PeerSource, log *slog.Logger) *Trust {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Trust{self: self, src: src, log: log}
	empty := snapshot{}
	t.snap.Store(&empty)
	return t
}

// Reload reads every peer from the source and atomically replaces the
// snapshot. A peer whose CA bundle does not parse is logged and treated as
// absent; a peer named like this node is ignored. If the source fails, the
// previous snapshot stays and the error is returned.
func (t *Trust) Reload(ctx context.Context) error {
	next := snapshot{}
	var after valise.NodeName
	for {
		page, err := t.src.ListPeers(ctx, after, pageSize)
		if err != nil {
			return fmt.Errorf("federation: list peers: %w", err)
		}
		for _, p := range page {
			if p.Name <= after {
				return fmt.Errorf("federation: list peers: %q is not after %q", p.Name, after)
			}
			after = p.Name
			if _, err := valise.ParseNodeName(string(p.Name)); err != nil || p.Name == t.self {
				t.log.Warn("federation: ignoring peer with an unusable name", "peer", p.Name)
				continue
			}
			cas, pool, err := parseBundle(p.CABundle)
			if err != nil {
				t.log.Warn("federation: peer CA bundle does not parse; treating the peer as absent",
					"peer", p.Name, "reason", err.Error())
				continue
			}
			next[p.Name] = trusted{pool: pool, blocked: p.Blocked, address: p.Address, bundle: sha256.Sum256(p.CABundle), cas: cas}
		}
		if len(page) < pageSize {
			break
		}
	}
	t.snap.Store(&next)
	return nil
}

// parseBundle turns a peer's CA bundle (checked strictly by
// valise.ParseCABundle, as when the admin added it) into a pool.
func parseBundle(b []byte) ([]*x509.Certificate, *x509.CertPool, error) {
	certs, err := valise.ParseCABundle(b)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return certs, pool, nil
}

// PeerCAs calls f with every certificate of every listed peer's CA bundle
// (blocked peers included: their bundles are still held), as of the last
// successful Reload. f must not retain the certificates' mutable fields.
func (t *Trust) PeerCAs(f func(peer valise.NodeName, ca *x509.Certificate)) {
	for name, p := range *t.snap.Load() {
		for _, c := range p.cas {
			f(name, c)
		}
	}
}

// lookup returns the pool of name if it is a listed, unblocked peer.
func (t *Trust) lookup(name valise.NodeName) (*x509.CertPool, error) {
	p, ok := (*t.snap.Load())[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("federation: %s is not a peer", name)
	case p.blocked:
		return nil, fmt.Errorf("federation: peer %s is blocked", name)
	}
	return p.pool, nil
}

// Allowed reports whether name is a listed peer that is not blocked.
func (t *Trust) Allowed(name valise.NodeName) bool {
	_, err := t.lookup(name)
	return err == nil
}

// Address returns the federation endpoint (HOST:PORT) of name if it is a
// listed, unblocked peer.
func (t *Trust) Address(name valise.NodeName) (string, bool) {
	d, ok := t.dialInfo(name)
	return d.address, ok
}

// dialTarget is what a client connection to a peer was built from; when
// it changes, the connection must be rebuilt.
type dialTarget struct {
	address string
	bundle  [sha256.Size]byte
}

// dialInfo returns what dialing name needs if it is a listed, unblocked
// peer other than this node.
func (t *Trust) dialInfo(name valise.NodeName) (dialTarget, bool) {
	p, ok := (*t.snap.Load())[name]
	if !ok || p.blocked || name == t.self {
		return dialTarget{}, false
	}
	return dialTarget{address: p.address, bundle: p.bundle}, true
}

// ServerTLS returns the configuration of the federation listener. Clients
// must present a certificate whose single DNS SAN names a listed, unblocked
// peer other than this node, chaining to that peer's own CA bundle with the
// client-auth usage; anything else refuses the handshake. cert is called
// per handshake, so a rotated certificate applies without restart.
func (t *Trust) ServerTLS(cert func() (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		// Any certificate is requested; VerifyConnection checks it against
		// the claimed peer's own CAs, which a single ClientCAs pool cannot.
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cert()
		},
		VerifyConnection: t.verifyClient,
	}
}

// verifyClient is the server's VerifyConnection: it runs on every full and
// resumed handshake, against the current snapshot.
func (t *Trust) verifyClient(cs tls.ConnectionState) error {
	name, err := t.verifyPeer(cs)
	if err != nil {
		// Debug: unauthenticated callers can trigger this at will. The
		// reason names at most the claimed peer, never certificate bytes.
		t.log.Debug("federation: refused peer handshake", "claimed_peer", name, "reason", err.Error())
		return err
	}
	return nil
}

func (t *Trust) verifyPeer(cs tls.ConnectionState) (valise.NodeName, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("federation: no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	name, err := leafName(leaf)
	if err != nil {
		return "", err
	}
	if name == t.self {
		return name, fmt.Errorf("federation: client certificate names this node (%s)", name)
	}
	pool, err := t.lookup(name)
	if err != nil {
		return name, err
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		DNSName:       string(name),
		CurrentTime:   time.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return name, fmt.Errorf("federation: certificate of %s does not verify against its CA bundle: %w", name, err)
	}
	return name, nil
}

// Recheck verifies again, against the current peer list, the client
// certificate of the gRPC call in ctx (served over ServerTLS): it must
// still name a listed, unblocked peer and chain to that peer's current CA
// bundle, and still be valid.
func (t *Trust) Recheck(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return errors.New("federation: no peer connection")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return errors.New("federation: peer connection is not TLS")
	}
	_, err := t.verifyPeer(info.State)
	return err
}

// leafName returns the node name a certificate claims: its DNS SANs must be
// exactly one valid node name.
func leafName(leaf *x509.Certificate) (valise.NodeName, error) {
	if len(leaf.DNSNames) != 1 {
		return "", fmt.Errorf("federation: certificate has %d DNS names, want exactly 1", len(leaf.DNSNames))
	}
	name, err := valise.ParseNodeName(leaf.DNSNames[0])
	if err != nil {
		return "", errors.New("federation: certificate DNS name is not a node name")
	}
	return name, nil
}

// ClientTLS returns the configuration for dialing peer: TLS 1.3, the server
// must prove peer's name with a certificate from peer's own CA bundle, and
// cert, called per handshake, is presented. It fails if peer is not a
// listed, unblocked peer.
func (t *Trust) ClientTLS(peer valise.NodeName, cert func() (*tls.Certificate, error)) (*tls.Config, error) {
	if peer == t.self {
		return nil, fmt.Errorf("federation: %s is this node", peer)
	}
	pool, err := t.lookup(peer)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		ServerName: string(peer),
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert()
		},
	}, nil
}

// PeerName returns the peer name a connection accepted by ServerTLS
// proved: the single DNS SAN of the client's leaf certificate. It must only
// be used on connections whose handshake ServerTLS's verification passed.
func PeerName(state tls.ConnectionState) (valise.NodeName, error) {
	if !state.HandshakeComplete || len(state.PeerCertificates) == 0 {
		return "", valise.Errorf(valise.KindUnauthenticated, "no verified peer certificate")
	}
	name, err := leafName(state.PeerCertificates[0])
	if err != nil {
		return "", valise.Errorf(valise.KindUnauthenticated, "peer certificate does not name one node")
	}
	return name, nil
}

// PeerFromContext returns the verified peer name of the gRPC call in ctx,
// served over a listener configured by ServerTLS.
func PeerFromContext(ctx context.Context) (valise.NodeName, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "", valise.Errorf(valise.KindUnauthenticated, "no peer connection")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", valise.Errorf(valise.KindUnauthenticated, "peer connection is not TLS")
	}
	return PeerName(info.State)
}
