package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/testbin"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

func TestMain(m *testing.M) { os.Exit(testbin.Main(m)) }

// valisedBinary returns the path of a freshly built valised binary. It
// skips in -short mode, since process tests build and run the daemon.
func valisedBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("process tests build and run the valised binary; skipped with -short")
	}
	return testbin.Path(t, "valised")
}

// childEnv is the test's environment without the VALISE_ variables that
// would override a node's config (VALISE_POSTGRES_DSN, VALISE_CLIENT_ADDR…).
func childEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "VALISE_") })
}

// writeTestConfig rewrites dir's config file with testConfig's
// test-friendly settings and returns them.
func writeTestConfig(t *testing.T, dir string, tweak func(*config.Config)) config.Config {
	t.Helper()
	cfg := testConfig(t, dir, tweak)
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, config.FileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// logWriter collects a process's stderr and reports its "node serving"
// line once.
type logWriter struct {
	mu      sync.Mutex
	all     []byte
	partial []byte
	serving chan map[string]any // capacity 1
	sent    bool
}

func newLogWriter() *logWriter { return &logWriter{serving: make(chan map[string]any, 1)} }

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all = append(w.all, p...)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := w.partial[:i]
		w.partial = w.partial[i+1:]
		var m map[string]any
		if !w.sent && json.Unmarshal(line, &m) == nil && m["msg"] == "node serving" {
			w.serving <- m
			w.sent = true
		}
	}
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.all)
}

// messages returns the msg of every JSON log line.
func (w *logWriter) messages() []string {
	var msgs []string
	for line := range strings.Lines(w.String()) {
		var m struct{ Msg string }
		if json.Unmarshal([]byte(line), &m) == nil {
			msgs = append(msgs, m.Msg)
		}
	}
	return msgs
}

// tail returns at most the last n bytes of the logs.
func (w *logWriter) tail(n int) string {
	s := w.String()
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// proc is `valised serve --data DIR` running as a process.
type proc struct {
	dir         string
	cmd         *exec.Cmd
	logs        *logWriter
	clientAddr  string // the client listener's address, from the logs
	adminSocket string
	exited      chan struct{}
	waitErr     error // set before exited is closed
}

// startProc starts `valised serve --data dir` and waits until it logs
// "node serving". The process is killed when the test ends, if still
// running; its logs are printed if the test failed.
func startProc(t *testing.T, dir string) *proc {
	t.Helper()
	bin := valisedBinary(t)
	p := &proc{dir: dir, logs: newLogWriter(), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "--data", dir)
	p.cmd.Env = childEnv()
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start valised: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("valised (pid %d) logs:\n%s", p.cmd.Process.Pid, p.logs.tail(32<<10))
		}
	})
	select {
	case m := <-p.logs.serving:
		p.clientAddr, _ = m["client"].(string)
		p.adminSocket, _ = m["admin_socket"].(string)
		if p.clientAddr == "" || p.adminSocket == "" {
			t.Fatalf("the node serving line lacks client or admin_socket: %v", m)
		}
	case <-p.exited:
		t.Fatalf("valised exited before serving: %v\n%s", p.waitErr, p.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("valised did not log \"node serving\" within 30s\n%s", p.logs)
	}
	return p
}

// kill sends SIGKILL unless the process has exited, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.exited
}

// waitExit waits up to d for the process to exit and reports whether it did.
func (p *proc) waitExit(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// clientConn dials the process's client listener over TLS 1.3, trusting
// the node's CA.
func (p *proc) clientConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(p.dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		t.Fatal("ca.crt holds no certificate")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: p.name(t)}
	conn, err := grpc.NewClient(p.clientAddr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// client returns an unauthenticated ClientService client of the process.
func (p *proc) client(t *testing.T) clientv1.ClientServiceClient {
	return clientv1.NewClientServiceClient(p.clientConn(t))
}

// admin returns an AdminService client on the process's admin socket.
func (p *proc) admin(t *testing.T) adminv1.AdminServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+p.adminSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return adminv1.NewAdminServiceClient(conn)
}

// createUsers creates users, each with password name+"-password".
func (p *proc) createUsers(t *testing.T, names ...string) {
	t.Helper()
	a := p.admin(t)
	for _, name := range names {
		if _, err := a.CreateUser(t.Context(), &adminv1.CreateUserRequest{User: name, Password: name + "-password"}); err != nil {
			t.Fatalf("create user %s: %v", name, err)
		}
	}
}

// login logs user in with the password createUsers gave it.
func (p *proc) login(t *testing.T, user string) *device {
	t.Helper()
	c := p.client(t)
	res, err := c.Login(t.Context(), &clientv1.LoginRequest{User: user, Password: user + "-password", DeviceDisplayName: "process test"})
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return &device{user: res.User, id: res.DeviceId, token: res.AccessToken, c: c}
}

// reattach returns d speaking to p: the same device and token over a new
// connection (devices and tokens outlive restarts).
func (p *proc) reattach(t *testing.T, d *device) *device {
	return &device{user: d.user, id: d.id, token: d.token, c: p.client(t)}
}

// TestSIGTERMGraceful stops a serving process with SIGTERM while a client
// streams its inbox: the process exits 0 within the shutdown timeout, logs
// "stopped", removes its admin socket, and the stream ends.
func TestSIGTERMGraceful(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		dir := newNodeDir(t, backend)
		cfg := writeTestConfig(t, dir, nil)
		p := startProc(t, dir)
		p.createUsers(t, "alice", "bob")
		alice, bob := p.login(t, "alice"), p.login(t, "bob")

		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		stream, err := bob.c.StreamInbox(bob.ctx(ctx), &clientv1.StreamInboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		// One envelope through the stream proves it is open on the node.
		send(t, alice, "before-sigterm", []*device{bob}, []byte("hello"))
		m, err := stream.Recv()
		if err != nil || string(m.Ciphertext) != "hello" {
			t.Fatalf("first envelope: %v, %v", m, err)
		}
		ended := make(chan error, 1)
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					ended <- err
					return
				}
			}
		}()

		start := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if !p.waitExit(cfg.ShutdownTimeout.D() + 10*time.Second) {
			t.Fatalf("valised did not exit within shutdown_timeout (%v) + 10s of SIGTERM", cfg.ShutdownTimeout.D())
		}
		t.Logf("exited %v after SIGTERM (shutdown_timeout %v)", time.Since(start).Round(time.Millisecond), cfg.ShutdownTimeout.D())
		if p.waitErr != nil || p.cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("exit: %v (code %d), want code 0", p.waitErr, p.cmd.ProcessState.ExitCode())
		}
		msgs := p.logs.messages()
		for _, want := range []string{"shutting down", "stopped"} {
			if !slices.Contains(msgs, want) {
				t.Errorf("logs lack %q; messages: %q", want, msgs)
			}
		}
		if _, err := os.Lstat(filepath.Join(dir, "admin.sock")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("admin socket after exit: %v, want it removed", err)
		}
		select {
		case err := <-ended:
			// The node ends streams itself (so a client knows to
			// reconnect) rather than being cut off at the deadline.
			if st, _ := status.FromError(err); err == io.EOF || st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "shutting down") {
				t.Errorf("stream ended with %v, want Unavailable: node is shutting down", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the inbox stream did not end within 10s of the process exiting")
		}
	})
}

// TestServeDevTwice creates the development node twice in one directory:
// the second call keeps the first node, and the node is loopback-only with
// private files.
func TestServeDevTwice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), devDir)
	var out1, out2 bytes.Buffer
	if err := ensureDevNode(dir, &out1); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out1.String(), "created development node") {
		t.Errorf("first call printed %q, want it to announce the new node", out1.String())
	}
	ca1, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	if err := ensureDevNode(dir, &out2); err != nil {
		t.Fatal(err)
	}
	if out2.Len() != 0 {
		t.Errorf("second call printed %q, want nothing", out2.String())
	}
	ca2, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca1, ca2) {
		t.Error("the second call replaced ca.crt")
	}
	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Error("the second call changed the data directory")
	}

	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(dir, true); err != nil {
		t.Errorf("dev config invalid: %v", err)
	}
	if cfg.Node.Name != "localhost" {
		t.Errorf("node.name = %q, want localhost", cfg.Node.Name)
	}
	for path, addr := range map[string]string{"listen.client": cfg.Listen.Client, "listen.metrics": cfg.Listen.Metrics, "listen.federation": cfg.Listen.Federation} {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Errorf("%s = %q, want a loopback address", path, addr)
		}
	}
	if cfg.Listen.AdminRemote != "" {
		t.Errorf("listen.admin_remote = %q, want it off", cfg.Listen.AdminRemote)
	}
	checkPrivate(t, dir)

	leaf := verifyLeaf(t, dir, "localhost")
	if !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("DNS SANs = %q, want [localhost]", leaf.DNSNames)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	slices.Sort(ips)
	if want := []string{"127.0.0.1", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs = %q, want %q", ips, want)
	}
	for _, ip := range []string{"127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(ip); err != nil {
			t.Errorf("node certificate for %s: %v", ip, err)
		}
	}
}

// TestInitCommand runs `valised init` and `valised check` through run.
func TestInitCommand(t *testing.T) {
	const name = "ministry-a.example"
	dir := filepath.Join(t.TempDir(), "node")
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"init", "--data", dir, "--name", name, "--json"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("init = %d, want 0; stderr:\n%s", code, &stderr)
	}
	var res map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("init --json printed %q: %v", &stdout, err)
	}
	d := config.Default()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"name":            name,
		"data_dir":        abs,
		"config_file":     filepath.Join(abs, config.FileName),
		"client_addr":     d.Listen.Client,
		"federation_addr": d.Listen.Federation,
		"metrics_addr":    d.Listen.Metrics,
		"ca_file":         filepath.Join(abs, "ca.crt"),
		"admin_socket":    filepath.Join(abs, "admin.sock"),
	} {
		if got, ok := res[key].(string); !ok || got != want {
			t.Errorf("init --json %s = %v, want %q", key, res[key], want)
		}
	}
	checkPrivate(t, dir)
	leaf := verifyLeaf(t, dir, name)
	if !slices.Equal(leaf.DNSNames, []string{name}) || len(leaf.IPAddresses) != 0 {
		t.Errorf("node certificate SANs = %q %v, want only %s", leaf.DNSNames, leaf.IPAddresses, name)
	}

	t.Run("again", func(t *testing.T) {
		before := snapshot(t, dir)
		var out, errOut bytes.Buffer
		code := run(t.Context(), []string{"init", "--data", dir, "--name", name}, strings.NewReader(""), &out, &errOut)
		if code == 0 {
			t.Errorf("a second init on %s = 0, want non-zero", dir)
		}
		if !strings.Contains(errOut.String(), "already a node") {
			t.Errorf("second init stderr = %q, want it to say the directory is already a node", &errOut)
		}
		if after := snapshot(t, dir); !maps.Equal(before, after) {
			t.Error("a failed second init changed the data directory")
		}
	})

	t.Run("bad name", func(t *testing.T) {
		for _, bad := range []string{"Ministry.example", "ministry_a.example", "-a.example", "a..example", "a b", ""} {
			d := filepath.Join(t.TempDir(), "bad")
			var out, errOut bytes.Buffer
			if code := run(t.Context(), []string{"init", "--data", d, "--name", bad}, strings.NewReader(""), &out, &errOut); code == 0 {
				t.Errorf("init --name %q = 0, want non-zero", bad)
			}
			if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("init --name %q left %s behind (%v)", bad, d, err)
			}
		}
	})

	t.Run("check", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), []string{"check", "--data", dir}, strings.NewReader(""), &out, &errOut); code != 0 {
			t.Fatalf("check = %d, want 0; stderr:\n%s", code, &errOut)
		}
		if !strings.Contains(out.String(), "ok") {
			t.Errorf("check printed %q, want ok", &out)
		}

		cfg, err := config.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Storage.Driver = "mysql"
		cfg.Listen.Client = "nonsense"
		b, err := cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, config.FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		out.Reset()
		errOut.Reset()
		if code := run(t.Context(), []string{"check", "--data", dir}, strings.NewReader(""), &out, &errOut); code != 1 {
			t.Errorf("check of a broken config = %d, want 1", code)
		}
		for _, path := range []string{"storage.driver:", "listen.client:"} {
			if !strings.Contains(errOut.String(), path) {
				t.Errorf("check stderr lacks %s:\n%s", path, &errOut)
			}
		}
	})
}

// checkPrivate checks that dir is 0700 and its private files 0600.
func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("%s mode = %v, want 0700", dir, got)
	}
	for _, f := range []string{"ca.key", "node.key", "signing.key", "admin.key", config.FileName} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode = %v, want 0600", f, got)
		}
	}
}

// verifyLeaf parses dir/node.crt and verifies it against dir/ca.crt for
// host as a TLS server certificate.
func verifyLeaf(t *testing.T, dir, host string) *x509.Certificate {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	leafPEM, err := os.ReadFile(filepath.Join(dir, "node.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(leafPEM)
	if block == nil {
		t.Fatal("node.crt holds no PEM block")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("node.crt does not verify for %s against ca.crt: %v", host, err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")); err != nil {
		t.Errorf("node.crt and node.key do not match: %v", err)
	}
	return leaf
}

// snapshot returns every regular file of dir with its mode and content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = fi.Mode().String() + "\n" + string(b)
	}
	return files
}

// name returns the node name in the process's config file.
func (p *proc) name(t *testing.T) string {
	t.Helper()
	cfg, err := config.Load(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Node.Name
}

// killNine kills the process with SIGKILL, as a crash would, waits for it
// and checks that SIGKILL is what ended it.
func (p *proc) killNine(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !p.waitExit(30 * time.Second) {
		t.Fatal("valised survived SIGKILL for 30s")
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("valised ended with %v, want death by SIGKILL", p.cmd.ProcessState)
	}
}
