package federation

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/pki"
	federationv1 "github.com/valise-im/valise/proto/valise/federation/v1"
	"github.com/valise-im/valise/storage"
	"github.com/valise-im/valise/storage/sqlite"
)

// testNode is one node's federation on loopback: a SQLite store, its
// Trust, Service (on a real mTLS gRPC listener) and Outbound.
type testNode struct {
	t      testing.TB
	name   valise.NodeName
	ca     *pki.CA
	cert   *tls.Certificate
	store  *sqlite.Store
	trust  *Trust
	signer *Signer
	svc    *Service
	out    *Outbound
	addr   string
	opts   nodeOpts

	// hook, if set, wraps every FederationService call this node serves,
	// outside the Service's own interceptor.
	hook atomic.Pointer[grpc.UnaryServerInterceptor]
	// inner, if set, wraps every call inside the Service's interceptor.
	inner atomic.Pointer[grpc.UnaryServerInterceptor]

	mu        sync.Mutex
	srv       *grpc.Server
	lis       net.Listener
	delivered []storage.Delivery
	notices   []storage.Delivery
}

// nodeOpts adjusts a test node.
type nodeOpts struct {
	limits   Limits
	outbound func(*OutboundConfig)
	// noOutbound leaves the Outbound built but not running.
	noOutbound bool
	// serviceNow is the Service's clock (nil: time.Now).
	serviceNow func() time.Time
}

// fastOutbound are the outbound settings of most tests: quick retries.
func fastOutbound(c *OutboundConfig) {
	c.BackoffMin = 20 * time.Millisecond
	c.BackoffMax = 200 * time.Millisecond
	c.Poll = 50 * time.Millisecond
	c.RPCTimeout = 2 * time.Second
}

// newNode builds a node named name and binds its federation listener;
// link nodes, then start them.
func newNode(t testing.TB, name valise.NodeName, opts nodeOpts) *testNode {
	t.Helper()
	n := &testNode{t: t, name: name, opts: opts}
	n.ca = newCA(t, "org "+string(name))
	n.cert = issue(t, n.ca, string(name))
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "valise.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	n.store = st
	log := slog.New(slog.DiscardHandler)
	n.trust = NewTrust(name, st, log)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n.signer = NewSigner(key)
	n.lis, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = n.lis.Addr().String()
	return n
}

// link makes a and b peers of each other.
func link(t testing.TB, a, b *testNode) {
	t.Helper()
	ctx := t.Context()
	for _, p := range [][2]*testNode{{a, b}, {b, a}} {
		if err := p[0].store.AddPeer(ctx, storage.Peer{Name: p[1].name, Address: p[1].addr, CABundle: p[1].ca.CertPEM()}, nil); err != nil {
			t.Fatal(err)
		}
		if err := p[0].trust.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// start serves the node's Service and runs its Outbound until the test
// ends.
func (n *testNode) start() {
	t := n.t
	t.Helper()
	var out *Outbound
	cfg := OutboundConfig{
		Self: n.name, Store: n.store, Trust: n.trust, Cert: static(n.cert),
		Delivered: func(d []storage.Delivery) {
			n.mu.Lock()
			n.notices = append(n.notices, d...)
			n.mu.Unlock()
		},
	}
	if n.opts.outbound != nil {
		n.opts.outbound(&cfg)
	}
	out = NewOutbound(cfg)
	n.out = out
	n.svc = NewService(ServiceConfig{
		Self: n.name, Store: n.store, Trust: n.trust, Signer: n.signer, Limits: n.opts.limits,
		Delivered: func(d []storage.Delivery) {
			n.mu.Lock()
			n.delivered = append(n.delivered, d...)
			n.mu.Unlock()
		},
		Contact: out.Contact,
		Now:     n.opts.serviceNow,
	})
	n.serve()
	t.Cleanup(n.stopServer)
	if n.opts.noOutbound {
		return
	}
	n.runOutbound(out)
}

// runOutbound runs o until the test ends.
func (n *testNode) runOutbound(o *Outbound) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	n.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			n.t.Errorf("outbound run: %v", err)
		}
	})
}

// serve starts the gRPC server on the node's listener (re-binding its
// address after stopServer).
func (n *testNode) serve() {
	t := n.t
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lis == nil {
		var err error
		for i := 0; i < 50; i++ {
			if n.lis, err = net.Listen("tcp", n.addr); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("re-listen on %s: %v", n.addr, err)
		}
	}
	hook := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if h := n.hook.Load(); h != nil {
			return (*h)(ctx, req, info, handler)
		}
		return handler(ctx, req)
	}
	inner := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if h := n.inner.Load(); h != nil {
			return (*h)(ctx, req, info, handler)
		}
		return handler(ctx, req)
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(n.trust.ServerTLS(static(n.cert)))),
		grpc.MaxRecvMsgSize(5<<20),
		grpc.ChainUnaryInterceptor(hook, n.svc.UnaryInterceptor(), inner),
	)
	n.svc.Register(srv)
	n.srv = srv
	lis := n.lis
	go func() { _ = srv.Serve(lis) }()
}

// stopServer stops the node's gRPC server and closes its listener.
func (n *testNode) stopServer() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.srv.Stop()
		n.srv = nil
		n.lis = nil
	}
}

// setHook installs h around every call the node serves (nil removes it).
func (n *testNode) setHook(h grpc.UnaryServerInterceptor) {
	if h == nil {
		n.hook.Store(nil)
		return
	}
	n.hook.Store(&h)
}

// pair returns two linked, started nodes a and b.
func pair(t testing.TB, optsA, optsB nodeOpts) (*testNode, *testNode) {
	t.Helper()
	a, b := newNode(t, nodeA, optsA), newNode(t, nodeB, optsB)
	link(t, a, b)
	a.start()
	b.start()
	return a, b
}

// addUser creates an active user with one device and returns the device.
func (n *testNode) addUser(local string) valise.DeviceID {
	t := n.t
	t.Helper()
	ctx := t.Context()
	if err := n.store.CreateUser(ctx, storage.User{Localpart: local, PasswordHash: "x", Active: true}, nil); err != nil {
		t.Fatal(err)
	}
	return n.addDevice(local)
}

// addDevice adds a device to an existing user.
func (n *testNode) addDevice(local string) valise.DeviceID {
	t := n.t
	t.Helper()
	dev := valise.NewDeviceID()
	hash := make([]byte, 32)
	_, _ = rand.Read(hash)
	if err := n.store.CreateDevice(t.Context(), storage.Device{User: local, ID: dev}, hash); err != nil {
		t.Fatal(err)
	}
	return dev
}

// sent is one envelope queued by send.
type sent struct {
	id         valise.EnvelopeID
	ciphertext string
}

// message says who sends what to whom.
type message struct {
	from      string
	fromDev   valise.DeviceID
	to        valise.UserID
	toDev     valise.DeviceID
	text      string
	serverAt  time.Time // zero: now
	expireAt  time.Time // zero: serverAt + 30 days
	noWakeups bool      // do not call Queued
}

// send commits one send of msgs (same sender) and wakes the Outbound.
func (n *testNode) send(msgs ...message) []sent {
	t := n.t
	t.Helper()
	m0 := msgs[0]
	now := m0.serverAt
	if now.IsZero() {
		now = time.Now()
	}
	expire := m0.expireAt
	if expire.IsZero() {
		expire = now.Add(30 * 24 * time.Hour)
	}
	op := storage.SendOp{
		Sender:         valise.UserID{Localpart: m0.from, Node: n.name},
		SenderDevice:   m0.fromDev,
		IdempotencyKey: string(valise.NewEnvelopeID(time.Now())),
		ServerTime:     now,
		ExpireTime:     expire,
	}
	var out []sent
	for _, m := range msgs {
		id := valise.NewEnvelopeID(now)
		op.Envelopes = append(op.Envelopes, storage.NewEnvelope{
			ID: id, RecipientNode: m.to.Node, Recipient: m.to.Localpart, RecipientDevice: m.toDev,
			Ciphertext: []byte(m.text),
		})
		out = append(out, sent{id: id, ciphertext: m.text})
	}
	res, err := n.store.CommitBatch(t.Context(), &storage.Batch{Sends: []storage.SendOp{op}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Sends[0].Err; err != nil {
		t.Fatal(err)
	}
	if !m0.noWakeups && n.out != nil {
		n.out.Queued(res.Sends[0].Outbound)
	}
	return out
}

// inbox returns a device's inbox.
func (n *testNode) inbox(local string, dev valise.DeviceID) []valise.Envelope {
	t := n.t
	t.Helper()
	envs, err := n.store.ReadInbox(t.Context(), local, dev, 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	return envs
}

// client returns a raw FederationService client from n to peer,
// presenting n's certificate.
func (n *testNode) client(peer *testNode) federationv1.FederationServiceClient {
	t := n.t
	t.Helper()
	cfg, err := n.trust.ClientTLS(peer.name, static(n.cert))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(peer.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return federationv1.NewFederationServiceClient(cc)
}

// eventually polls f until it returns nil, failing the test with its
// last error after a generous deadline.
func eventually(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in time: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outboxEmpty reports as an error whether n still queues envelopes.
func (n *testNode) outboxEmpty() error {
	stats, err := n.store.OutboxStats(context.Background())
	if err != nil {
		return err
	}
	if len(stats) > 0 {
		return fmt.Errorf("outbox not empty: %+v", stats)
	}
	return nil
}
