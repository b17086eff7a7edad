package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/valise-im/valise"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
)

// Client-side connection settings. The peers' servers refuse pings more
// often than every 30 s, so keepalive pings are rarer than that, and only
// while a call is in flight.
const (
	keepaliveTime    = 60 * time.Second
	keepaliveTimeout = 20 * time.Second
	// maxAnswerBytes caps what a peer may answer on one call.
	maxAnswerBytes = 4 << 20
	// maxRequestBytes caps what this node sends on one call: a peer's
	// federation listener accepts 5 MiB by default.
	maxRequestBytes = 5 << 20
)

// errNotPeer is returned for a node that is not a listed, unblocked peer.
var errNotPeer = errors.New("federation: not an allowed peer")

// conn is one long-lived connection to a peer and what it was built from.
type conn struct {
	cc     *grpc.ClientConn
	client federationv1.FederationServiceClient
	target dialTarget
}

// connPool keeps one long-lived gRPC connection per peer, rebuilt when the
// peer's address or CA bundle changes. It is safe for concurrent use.
type connPool struct {
	trust      *Trust
	cert       func() (*tls.Certificate, error)
	backoffMin time.Duration
	backoffMax time.Duration
	// grace is how long a replaced connection stays open for the calls
	// in flight on it.
	grace time.Duration

	mu     sync.Mutex
	conns  map[valise.NodeName]*conn
	closed bool
}

func newConnPool(trust *Trust, cert func() (*tls.Certificate, error), backoffMin, backoffMax, grace time.Duration) *connPool {
	return &connPool{
		trust: trust, cert: cert,
		backoffMin: backoffMin, backoffMax: backoffMax, grace: grace,
		conns: map[valise.NodeName]*conn{},
	}
}

// get returns the client of peer, dialing (lazily: grpc connects on the
// first call) if needed. errNotPeer if peer is not an allowed peer.
func (p *connPool) get(peer valise.NodeName) (*conn, error) {
	target, ok := p.trust.dialInfo(peer)
	if !ok {
		return nil, errNotPeer
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("federation: connection pool closed")
	}
	if c := p.conns[peer]; c != nil {
		if c.target == target {
			return c, nil
		}
		old := c.cc
		time.AfterFunc(p.grace, func() { old.Close() })
		delete(p.conns, peer)
	}
	tlsCfg, err := p.trust.ClientTLS(peer, p.cert)
	if err != nil {
		return nil, errNotPeer
	}
	cc, err := grpc.NewClient(target.address,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                keepaliveTime,
			Timeout:             keepaliveTimeout,
			PermitWithoutStream: false,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  p.backoffMin,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   p.backoffMax,
			},
			MinConnectTimeout: 10 * time.Second,
		}),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxAnswerBytes),
			grpc.MaxCallSendMsgSize(maxRequestBytes),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("federation: connection to %s: %w", peer, err)
	}
	c := &conn{cc: cc, client: federationv1.NewFederationServiceClient(cc), target: target}
	p.conns[peer] = c
	return c, nil
}

// connectWait bounds how long an attempt waits for a new connection to
// be established before its call goes ahead; redialWait, how long it waits
// for a connection that had failed to come back.
const (
	connectWait = 10 * time.Second
	redialWait  = 2 * time.Second
)

// ready makes the connection try the network now if its last attempt
// failed, and waits (at most wait, or until ctx ends) until it is ready
// or has failed, so that the call that follows either goes out or fails
// at once with the connection's error. A failed connection stays in
// TRANSIENT_FAILURE until it is ready again (gRPC's pick_first), so for
// one it waits at most redialWait.
func (c *conn) ready(ctx context.Context, wait time.Duration) {
	st := c.cc.GetState()
	if st == connectivity.TransientFailure {
		c.cc.ResetConnectBackoff()
		wait = min(wait, redialWait)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	c.cc.Connect()
	for {
		st = c.cc.GetState()
		if st == connectivity.Ready || st == connectivity.Shutdown {
			return
		}
		if !c.cc.WaitForStateChange(ctx, st) {
			return
		}
		if next := c.cc.GetState(); next == connectivity.TransientFailure && st != connectivity.TransientFailure {
			return
		}
	}
}

// drop closes peer's connection, if any, after a grace period for calls
// in flight; the next get dials anew.
func (p *connPool) drop(peer valise.NodeName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[peer]; c != nil {
		old := c.cc
		time.AfterFunc(p.grace, func() { old.Close() })
		delete(p.conns, peer)
	}
}

// resetBackoff makes peer's connection, if any, reconnect at once.
func (p *connPool) resetBackoff(peer valise.NodeName) {
	p.mu.Lock()
	c := p.conns[peer]
	p.mu.Unlock()
	if c != nil {
		c.cc.ResetConnectBackoff()
	}
}

// close closes every connection; later gets fail.
func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for name, c := range p.conns {
		c.cc.Close()
		delete(p.conns, name)
	}
}
