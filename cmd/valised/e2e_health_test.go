package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise/internal/config"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
	"github.com/valise-im/valise/storage/postgres/pgtest"
)

// runHealth runs `valised health args...` through run and returns its
// exit code, stdout and stderr.
func runHealth(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), append([]string{"health"}, args...), strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// plainConn dials a plaintext listener.
func plainConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestHealthListener serves a node with listen.health and probes it with
// `valised health --addr`: the node and its database answer SERVING, an
// unknown service is refused with exit 1, the plaintext listener serves
// nothing but health, and the overall status turns NOT_SERVING when the
// node shuts down.
func TestHealthListener(t *testing.T) {
	eachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, func(c *config.Config) { c.Listen.Health = "127.0.0.1:0" })
		if n.ready.Health == "" {
			t.Fatal("the node reports no health listener")
		}
		if code, out, errs := runHealth(t, "--addr", n.ready.Health); code != 0 || strings.TrimSpace(out) != "SERVING" {
			t.Fatalf("health --addr = %d, %q, %q; want 0, SERVING", code, out, errs)
		}
		// The first readiness ping runs as the node starts.
		eventually(t, 30*time.Second, "valise.ready SERVING", func() bool {
			code, _, _ := runHealth(t, "--addr", n.ready.Health, "--service", readyService)
			return code == 0
		})
		code, _, errs := runHealth(t, "--addr", n.ready.Health, "--service", "no.such.service")
		if code != 1 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "unknown service") {
			t.Errorf("health --service no.such.service = %d, %q; want 1 and one line naming the unknown service", code, errs)
		}

		// Only health: no ClientService, no reflection in plaintext.
		conn := plainConn(t, n.ready.Health)
		_, err := clientv1.NewClientServiceClient(conn).Login(t.Context(), &clientv1.LoginRequest{User: "alice", Password: "x"})
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("Login on the health listener: %v, want Unimplemented", err)
		}
		rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
		if err == nil {
			_, err = rs.Recv()
		}
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("reflection on the health listener: %v, want Unimplemented", err)
		}

		// A watcher sees NOT_SERVING once the node begins to shut down.
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("watch: %v, %v; want SERVING first", m, err)
		}
		n.cancel()
		if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("watch during shutdown: %v, %v; want NOT_SERVING", m, err)
		}
		cancel()
	})
}

// TestHealthCommandData probes a node through its data directory: with
// listen.health set, the plaintext listener; without it, the client
// listener over TLS with the directory's CA.
func TestHealthCommandData(t *testing.T) {
	for _, tc := range []struct {
		name   string
		health bool
	}{{"health listener", true}, {"client listener", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := newNodeDir(t, "sqlite")
			b, err := os.ReadFile(filepath.Join(dir, config.FileName))
			if err != nil {
				t.Fatal(err)
			}
			client, health := freeAddr(t), ""
			if tc.health {
				health = freeAddr(t)
			}
			// The file keeps init's comments; only the addresses change.
			s := strings.Replace(string(b), "client: 127.0.0.1:0", "client: "+client, 1)
			s = strings.Replace(s, `health: ""`, `health: "`+health+`"`, 1)
			if err := os.WriteFile(filepath.Join(dir, config.FileName), []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			if code, _, errs := runHealth(t, "--data", dir, "--timeout", "1s"); code != 1 || errs == "" {
				t.Errorf("health --data before the node runs = %d, %q; want 1 with a reason", code, errs)
			}
			n := startNodeIn(t, dir, testConfig(t, dir, nil))
			if n.ready.Client != client || n.ready.Health != health {
				t.Fatalf("node listens on %q and %q, want %q and %q", n.ready.Client, n.ready.Health, client, health)
			}
			if code, out, errs := runHealth(t, "--data", dir); code != 0 || strings.TrimSpace(out) != "SERVING" {
				t.Fatalf("health --data = %d, %q, %q; want 0, SERVING", code, out, errs)
			}
			// valise.ready is a service of the health listener only.
			code, _, errs := runHealth(t, "--data", dir, "--service", readyService)
			if tc.health && code != 0 {
				eventually(t, 30*time.Second, "valise.ready SERVING", func() bool {
					code, _, _ := runHealth(t, "--data", dir, "--service", readyService)
					return code == 0
				})
			}
			if !tc.health && (code != 1 || !strings.Contains(errs, "unknown service")) {
				t.Errorf("health --data --service %s on the client listener = %d, %q; want 1, unknown service", readyService, code, errs)
			}
		})
	}
}

// TestHealthCommandUsage checks the usage errors (exit 2) and an address
// where nothing listens (exit 1, one line).
func TestHealthCommandUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"--data", dir, "--addr", "127.0.0.1:1"},
		{"--addr", "nonsense"},
		{"--addr", "127.0.0.1:1", "extra"},
		{"--addr", "127.0.0.1:1", "--timeout", "0s"},
		{"--bogus"},
	} {
		if code, _, errs := runHealth(t, args...); code != 2 || errs == "" {
			t.Errorf("health %q = %d, %q; want 2 with a message", args, code, errs)
		}
	}
	code, _, errs := runHealth(t, "--addr", freeAddr(t), "--timeout", "2s")
	if code != 1 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.HasPrefix(errs, "valised: health: ") {
		t.Errorf("health of a closed port = %d, %q; want 1 and one line", code, errs)
	}
	if code, _, errs := runHealth(t, "--data", dir); code != 1 || !strings.Contains(errs, config.FileName) {
		t.Errorf("health --data of a directory without a node = %d, %q; want 1 naming %s", code, errs, config.FileName)
	}
}

// TestHealthReadinessFollowsDatabase cuts a PostgreSQL node off its
// database: valise.ready turns NOT_SERVING (the node itself still
// serves), then SERVING again when the database accepts connections.
func TestHealthReadinessFollowsDatabase(t *testing.T) {
	n := startNode(t, "postgres", func(c *config.Config) { c.Listen.Health = "127.0.0.1:0" })
	dsnBytes, err := os.ReadFile(filepath.Join(n.dir, "postgres.dsn"))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgx.ParseConfig(strings.TrimSpace(string(dsnBytes)))
	if err != nil {
		t.Fatal(err)
	}
	db := pgx.Identifier{pc.Database}.Sanitize()
	adminConn, err := pgx.Connect(t.Context(), os.Getenv(pgtest.EnvVar))
	if err != nil {
		t.Fatal(err)
	}
	defer adminConn.Close(context.Background())
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := adminConn.Exec(t.Context(), sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	probe := func(service string) int {
		code, _, _ := runHealth(t, "--addr", n.ready.Health, "--service", service)
		return code
	}
	eventually(t, 30*time.Second, "valise.ready SERVING", func() bool { return probe(readyService) == 0 })

	exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS false")
	t.Cleanup(func() {
		adminConn.Exec(context.Background(), "ALTER DATABASE "+db+" ALLOW_CONNECTIONS true")
	})
	exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", pc.Database)
	eventually(t, 60*time.Second, "valise.ready NOT_SERVING without the database", func() bool {
		exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", pc.Database)
		return probe(readyService) == 1
	})
	if code := probe(""); code != 0 {
		t.Errorf("the node's overall health without its database = %d, want 0 (alive, not ready)", code)
	}
	exec("ALTER DATABASE " + db + " ALLOW_CONNECTIONS true")
	eventually(t, 60*time.Second, "valise.ready SERVING again", func() bool { return probe(readyService) == 0 })
}

// TestSetReadiness checks that the readiness service follows what the
// node's database pinger reports.
func TestSetReadiness(t *testing.T) {
	status := newHealthStatus()
	up := setReadiness(status)
	get := func() healthpb.HealthCheckResponse_ServingStatus {
		res, err := status.Check(t.Context(), &healthpb.HealthCheckRequest{Service: readyService})
		if err != nil {
			t.Fatal(err)
		}
		return res.Status
	}
	if got := get(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("before the first ping: %v, want NOT_SERVING", got)
	}
	for _, tc := range []struct {
		up   bool
		want healthpb.HealthCheckResponse_ServingStatus
	}{{true, healthpb.HealthCheckResponse_SERVING}, {false, healthpb.HealthCheckResponse_NOT_SERVING}, {true, healthpb.HealthCheckResponse_SERVING}} {
		up(tc.up)
		if got := get(); got != tc.want {
			t.Errorf("after a ping answered %v: %v, want %v", tc.up, got, tc.want)
		}
	}
}

// TestDialable checks that wildcard listen hosts are probed on loopback.
func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:7445":   "127.0.0.1:7445",
		":7445":          "127.0.0.1:7445",
		"[::]:7445":      "[::1]:7445",
		"10.0.0.5:7445":  "10.0.0.5:7445",
		"node.example:1": "node.example:1",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}
