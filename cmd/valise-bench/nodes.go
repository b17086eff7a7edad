package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/valise-im/valise/internal/config"
	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

// node is one node the benchmark talks to: started by the tool as a
// valised process, or a running one given with --target.
type node struct {
	name       string // federation name, also the TLS name of the client listener
	client     string // client listener HOST:PORT
	federation string // federation listener HOST:PORT ("" when unknown)
	metrics    string // metrics listener HOST:PORT ("" when unknown)
	adminSock  string
	caPEM      []byte
	caFile     string // --target only
	pid        int    // 0 when unknown

	admin     adminv1.AdminServiceClient
	adminConn *grpc.ClientConn

	// Set for nodes the tool started.
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	logf   *os.File
	dropDB func(context.Context) error
}

// nodeNames are the federation names of the nodes the tool starts.
func nodeName(i int) string { return fmt.Sprintf("n%d.valise-bench.test", i+1) }

// findValised returns the valised binary: --valised, else the one beside
// this executable, else the one on PATH.
func findValised(flagPath string) (string, error) {
	if flagPath != "" {
		if _, err := os.Stat(flagPath); err != nil {
			return "", fmt.Errorf("--valised: %w", err)
		}
		return flagPath, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "valised")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("valised")
	if err != nil {
		return "", errors.New("no valised binary beside valise-bench or on PATH; give one with --valised PATH")
	}
	return p, nil
}

// childEnv is the environment without the VALISE_ variables that would
// override the bench nodes' config.
func childEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "VALISE_") })
}

// benchTweak is what the tool changes in the config `valised init`
// writes, so that creating thousands of devices and sending at full speed
// is not throttled by the abuse limits meant for the open internet. Only
// the password hashing cost, rate limits and the federation backoff
// change; durability, TLS and every size bound stay at their defaults.
func benchTweak(c *config.Config) {
	c.Password = config.Password{Time: 1, MemoryKiB: 256, Threads: 1}
	many := config.Rate{Burst: 1_000_000, PerSecond: 1_000_000}
	c.Limits.Login = many
	c.Limits.LoginFailure = many
	c.Limits.Send = many
	c.Limits.RemoteLookup = many
	c.Federation.KeyQueryRate = many
	c.Federation.PeerRate = many
	c.Federation.PeerConcurrency = 1024
	c.Federation.BackoffMin = config.Duration(100 * time.Millisecond)
	c.Federation.BackoffMax = config.Duration(2 * time.Second)
	c.Log.Level = "info"
	c.Log.Format = "json"
}

// startNode initializes a fresh node in dir and starts `valised serve`.
// With pgBase set, the node uses a new PostgreSQL database on that
// server, dropped by stop.
func startNode(ctx context.Context, valised, dir, name, pgBase string) (n *node, err error) {
	n = &node{name: name, dir: dir}
	defer func() {
		if err != nil {
			n.stop()
		}
	}()
	args := []string{"init", "--data", dir, "--name", name,
		"--client-addr", "127.0.0.1:0", "--federation-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--json"}
	if pgBase != "" {
		dsn, drop, err := pgtest.Create(ctx, pgBase, "valise_bench_")
		if err != nil {
			return n, fmt.Errorf("--postgres: %w", err)
		}
		n.dropDB = drop
		args = append(args, "--postgres", dsn)
	}
	init := exec.CommandContext(ctx, valised, args...)
	init.Env = childEnv()
	if out, err := init.CombinedOutput(); err != nil {
		return n, fmt.Errorf("valised init %s: %w\n%s", name, err, out)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return n, err
	}
	benchTweak(&cfg)
	b, err := cfg.Marshal()
	if err != nil {
		return n, err
	}
	if err := os.WriteFile(filepath.Join(dir, config.FileName), b, 0o600); err != nil {
		return n, err
	}
	if n.caPEM, err = os.ReadFile(filepath.Join(dir, "ca.crt")); err != nil {
		return n, err
	}
	if n.logf, err = os.Create(filepath.Join(dir, "valised.log")); err != nil {
		return n, err
	}
	n.cmd = exec.Command(valised, "serve", "--data", dir)
	n.cmd.Env = childEnv()
	pr, pw := io.Pipe()
	n.cmd.Stdout, n.cmd.Stderr = n.logf, pw
	if err := n.cmd.Start(); err != nil {
		return n, fmt.Errorf("start valised: %w", err)
	}
	n.pid = n.cmd.Process.Pid
	n.exited = make(chan struct{})
	go func() {
		n.cmd.Wait()
		pw.Close()
		close(n.exited)
	}()
	serving := make(chan map[string]any, 1)
	go func() {
		// Copy the logs to the node's log file, watching for the line
		// that names the listeners.
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Bytes()
			n.logf.Write(append(line, '\n'))
			var m map[string]any
			if !sent && json.Unmarshal(line, &m) == nil && m["msg"] == "node serving" {
				serving <- m
				sent = true
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case m := <-serving:
		n.client, _ = m["client"].(string)
		n.federation, _ = m["federation"].(string)
		n.metrics, _ = m["metrics"].(string)
		n.adminSock, _ = m["admin_socket"].(string)
	case <-n.exited:
		return n, fmt.Errorf("valised %s exited before serving; see %s", name, n.logf.Name())
	case <-time.After(60 * time.Second):
		return n, fmt.Errorf("valised %s did not serve within 60s; see %s", name, n.logf.Name())
	case <-ctx.Done():
		return n, ctx.Err()
	}
	if n.client == "" || n.adminSock == "" {
		return n, fmt.Errorf("valised %s: its \"node serving\" log line names no client listener or admin socket", name)
	}
	return n, n.dialAdmin()
}

func (n *node) dialAdmin() error {
	conn, err := grpc.NewClient("unix://"+n.adminSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", n.adminSock, err)
	}
	n.adminConn, n.admin = conn, adminv1.NewAdminServiceClient(conn)
	return nil
}

// stop stops a node the tool started (SIGTERM, then SIGKILL after 30s)
// and drops its database. It closes the admin connection of any node.
func (n *node) stop() error {
	if n.adminConn != nil {
		n.adminConn.Close()
	}
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(30 * time.Second):
			n.cmd.Process.Kill()
			<-n.exited
		}
	}
	if n.logf != nil {
		n.logf.Close()
	}
	if n.dropDB != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return n.dropDB(ctx)
	}
	return nil
}

// alive reports an error when a node the tool started has exited.
func (n *node) alive() error {
	if n.exited == nil {
		return nil
	}
	select {
	case <-n.exited:
		return fmt.Errorf("valised %s exited (%v); see %s", n.name, n.cmd.ProcessState, n.logf.Name())
	default:
		return nil
	}
}

// peer lists every node as a peer of every other.
func peerAll(ctx context.Context, nodes []*node) error {
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			if b.federation == "" {
				return fmt.Errorf("node %s: federation address unknown", b.name)
			}
			_, err := a.admin.AddPeer(ctx, &adminv1.AddPeerRequest{Name: b.name, Address: b.federation, CaBundle: b.caPEM})
			if err != nil {
				return fmt.Errorf("%s: add peer %s: %w", a.name, b.name, err)
			}
		}
	}
	return nil
}

// parseTarget parses a --target value, reads its CA and dials its admin
// socket.
func parseTarget(s string) (*node, error) {
	n, err := parseTargetSyntax(s)
	if err != nil {
		return nil, err
	}
	if n.caPEM, err = os.ReadFile(n.caFile); err != nil {
		return nil, fmt.Errorf("--target %q: %w", s, err)
	}
	return n, n.dialAdmin()
}

// parseTargetSyntax parses a --target value:
// client=HOST:PORT,ca=FILE,admin=SOCKET,name=NODE[,pid=PID][,metrics=HOST:PORT].
func parseTargetSyntax(s string) (*node, error) {
	n := &node{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("--target %q: %q is not key=value", s, kv)
		}
		switch k {
		case "client":
			n.client = v
		case "ca":
			n.caFile = v
		case "admin":
			n.adminSock = v
		case "name":
			n.name = v
		case "metrics":
			n.metrics = v
		case "pid":
			pid, err := strconv.Atoi(v)
			if err != nil || pid <= 0 {
				return nil, fmt.Errorf("--target %q: pid %q is not a process id", s, v)
			}
			n.pid = pid
		default:
			return nil, fmt.Errorf("--target %q: unknown key %q (want client, ca, admin, name, pid, metrics)", s, k)
		}
	}
	if n.client == "" || n.caFile == "" || n.adminSock == "" || n.name == "" {
		return nil, fmt.Errorf("--target %q: client, ca, admin and name are required", s)
	}
	return n, nil
}

// rssKiB reads the resident set size of process pid, in KiB.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}
