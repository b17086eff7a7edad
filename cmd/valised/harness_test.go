package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/valise-im/valise/internal/config"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

// backends lists the storage backends every end-to-end test runs on.
// PostgreSQL runs when VALISE_TEST_POSTGRES is set (CI sets it).
var backends = []string{"sqlite", "postgres"}

// testNode is a real node served in process over real TLS on loopback.
type testNode struct {
	t      testing.TB
	dir    string
	cfg    config.Config
	ready  ready
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
	admin  adminv1.AdminServiceClient
	roots  *x509.CertPool
}

// syncBuffer collects a node's logs for assertions.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// newNodeDir initializes a node for backend in a fresh directory, with
// ports chosen by the kernel. It skips postgres when VALISE_TEST_POSTGRES
// is unset.
func newNodeDir(t testing.TB, backend string) string {
	t.Helper()
	return newNamedNodeDir(t, backend, "localhost")
}

// newNamedNodeDir is newNodeDir for a node called name (its own CA).
func newNamedNodeDir(t testing.TB, backend, name string) string {
	t.Helper()
	// Unix socket paths are short: keep the data directory near the root.
	dir, err := os.MkdirTemp("", "vn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dir = filepath.Join(dir, "node")
	p := initParams{Dir: dir, Name: name, Client: "127.0.0.1:0", Federation: "127.0.0.1:0", Metrics: "127.0.0.1:0"}
	if backend == "postgres" {
		p.PostgresDN = pgtest.DSN(t)
	}
	if _, err := initNode(p); err != nil {
		t.Fatalf("init: %v", err)
	}
	return dir
}

// testConfig loads a node's config with test-friendly costs: cheap argon2
// and loose rate limits, unless tweak changes them back.
func testConfig(t testing.TB, dir string, tweak func(*config.Config)) config.Config {
	t.Helper()
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = config.Password{Time: 1, MemoryKiB: 256, Threads: 1}
	cfg.Limits.Login = config.Rate{Burst: 1000, PerSecond: 1000}
	cfg.Limits.LoginFailure = config.Rate{Burst: 1000, PerSecond: 1000}
	cfg.Limits.Send = config.Rate{Burst: 100000, PerSecond: 100000}
	cfg.Limits.Claim = config.Rate{Burst: 1000, PerSecond: 1000}
	cfg.ShutdownTimeout = config.Duration(5 * time.Second)
	if tweak != nil {
		tweak(&cfg)
	}
	if err := cfg.Validate(dir, true); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	return cfg
}

// startNode starts a fresh node on backend.
func startNode(t testing.TB, backend string, tweak func(*config.Config)) *testNode {
	t.Helper()
	dir := newNodeDir(t, backend)
	return startNodeIn(t, dir, testConfig(t, dir, tweak))
}

// startNodeIn serves the node in dir with cfg until the test ends.
func startNodeIn(t testing.TB, dir string, cfg config.Config) *testNode {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{t: t, dir: dir, cfg: cfg, logs: logs, cancel: cancel, done: make(chan error, 1)}
	readyCh := make(chan ready, 1)
	go func() { n.done <- serve(ctx, dir, cfg, log, func(r ready) { readyCh <- r }) }()
	select {
	case n.ready = <-readyCh:
	case err := <-n.done:
		cancel()
		t.Fatalf("serve: %v\nlogs:\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("node did not start within 30s")
	}
	t.Cleanup(n.stop)
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	n.roots = x509.NewCertPool()
	n.roots.AppendCertsFromPEM(ca)
	conn, err := grpc.NewClient("unix://"+n.ready.AdminSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n.admin = adminv1.NewAdminServiceClient(conn)
	return n
}

// logger returns a logger writing to the node's log buffer.
func (n *testNode) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(n.logs, nil))
}

// stop stops the node gracefully and waits for it.
func (n *testNode) stop() {
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Errorf("serve returned %v", err)
		}
		n.done <- err
	case <-time.After(30 * time.Second):
		n.t.Error("node did not stop within 30s")
	}
}

// tlsConfig is what a client of the node uses: TLS 1.3, the node's CA.
func (n *testNode) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: n.roots, ServerName: n.cfg.Node.Name}
}

// dial opens a client connection to the node's client listener.
func (n *testNode) dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(n.ready.Client, grpc.WithTransportCredentials(credentials.NewTLS(n.tlsConfig())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// client returns an unauthenticated ClientService client.
func (n *testNode) client(t testing.TB) clientv1.ClientServiceClient {
	return clientv1.NewClientServiceClient(n.dial(t))
}

// createUser creates a user through the admin socket.
func (n *testNode) createUser(t testing.TB, name, password string) {
	t.Helper()
	if _, err := n.admin.CreateUser(t.Context(), &adminv1.CreateUserRequest{User: name, Password: password}); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
}

// device is a logged-in device with its authenticated context.
type device struct {
	user, id, token string
	c               clientv1.ClientServiceClient
}

func (d *device) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.token)
}

// login logs a user in and returns the new device.
func (n *testNode) login(t testing.TB, user, password string) *device {
	t.Helper()
	c := n.client(t)
	res, err := c.Login(t.Context(), &clientv1.LoginRequest{User: user, Password: password, DeviceDisplayName: "test device"})
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return &device{user: res.User, id: res.DeviceId, token: res.AccessToken, c: c}
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}
