package main

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/valise-im/valise/internal/config"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// TestOperatorEndpoints checks health, reflection and metrics, the tools
// operators point at a node.
func TestOperatorEndpoints(t *testing.T) {
	n := startNode(t, "sqlite", nil)
	conn := n.dial(t)
	h, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", h, err)
	}
	h, err = healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "valise.client.v1.ClientService"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of ClientService = %v, %v", h, err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range res.GetListServicesResponse().GetService() {
		services = append(services, s.Name)
	}
	if !strings.Contains(strings.Join(services, " "), "valise.client.v1.ClientService") {
		t.Fatalf("reflection lists %v", services)
	}

	n.createUser(t, "alice", "alice-password")
	alice := n.login(t, "alice", "alice-password")
	send(t, alice, "k", []*device{alice}, []byte("hello"))
	resp, err := http.Get("http://" + n.ready.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{
		`valise_grpc_requests_total{code="OK",method="/valise.client.v1.ClientService/Login"} 1`,
		"valise_envelopes_accepted_total 1",
		"valise_envelopes_delivered_total",
		"valise_inbox_depth 1",
		"valise_inbox_streams_open 0",
		"valise_storage_commit_seconds_bucket",
		"go_goroutines",
	} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %q", m)
		}
	}
}

// TestTLSOnly checks that the client listener refuses TLS 1.2 and
// plaintext.
func TestTLSOnly(t *testing.T) {
	n := startNode(t, "sqlite", nil)
	cfg := n.tlsConfig()
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.ready.Client, cfg)
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 handshake succeeded")
	}
	ok := n.tlsConfig()
	ok.NextProtos = []string{"h2"}
	c, err = tls.Dial("tcp", n.ready.Client, ok)
	if err != nil {
		t.Fatalf("TLS 1.3 handshake: %v", err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("negotiated %x", v)
	}
	c.Close()

	conn, err := grpc.NewClient(n.ready.Client, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a plaintext call succeeded")
	}
	// A client that does not trust the node's CA is refused too.
	untrusting, err := grpc.NewClient(n.ready.Client, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer untrusting.Close()
	if _, err := healthpb.NewHealthClient(untrusting).Check(t.Context(), &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a client without the node's CA connected")
	}
}

// TestOneDaemonPerDataDir checks that a second valised on the same data
// directory refuses to start and leaves the first one working.
func TestOneDaemonPerDataDir(t *testing.T) {
	dir := newNodeDir(t, "sqlite")
	cfg := testConfig(t, dir, nil)
	n := startNodeIn(t, dir, cfg)
	err := serve(t.Context(), dir, cfg, n.logger(), nil)
	if err == nil || !strings.Contains(err.Error(), "another valised") {
		t.Fatalf("second serve = %v, want a lock error", err)
	}
	n.createUser(t, "alice", "alice-password")
}

// TestStreamsPerDevice checks the bound on open inbox streams per device.
func TestStreamsPerDevice(t *testing.T) {
	n := startNode(t, "sqlite", func(c *config.Config) { c.Limits.MaxStreamsPerDevice = 2 })
	n.createUser(t, "alice", "alice-password")
	alice := n.login(t, "alice", "alice-password")
	a, b := inboxStream(t, alice, 0), inboxStream(t, alice, 0)
	send(t, alice, "k", []*device{alice}, []byte("x"))
	recvN(t, a, 1) // both streams are open once each got the envelope
	recvN(t, b, 1)
	stream, err := alice.c.StreamInbox(alice.ctx(t.Context()), &clientv1.StreamInboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantRetry(t, err)
}
