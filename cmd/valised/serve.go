package main

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/federation"
	"github.com/valise-im/valise/internal/backend"
	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/pki"
	"github.com/valise-im/valise/internal/ratelimit"
	"github.com/valise-im/valise/server"
	"github.com/valise-im/valise/storage"
)

const devDir = "valise-dev"

// How often the peer list is re-read (changes made through other replicas
// sharing the database) and the node certificate files are checked for a
// rotation.
const (
	peerReloadInterval = 30 * time.Second
	certReloadInterval = 10 * time.Second
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "", "the node's data directory (default ./valise-dev with --dev)")
	dev := fs.Bool("dev", false, "run a loopback-only development node, creating it on first start")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	if *dev {
		if *dir == "" {
			*dir = devDir
		}
		if err := ensureDevNode(*dir, stdout); err != nil {
			return err
		}
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "valised serve: --data DIR is required (or --dev)")
		return errUsage
	}
	cfg, err := config.Load(*dir)
	if err != nil {
		return err
	}
	// serve refuses what check refuses: a bad config, an expired
	// certificate, one that does not name the node, a mismatched key.
	f := inspect(*dir, cfg)
	if err := f.err(filepath.Join(*dir, config.FileName)); err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	for _, w := range f.warnings {
		log.WarnContext(ctx, "configuration warning", "warning", w)
	}
	return serve(ctx, *dir, cfg, log, func(r ready) {
		if *dev {
			printDevBanner(stdout, *dir, r)
		}
	})
}

func newLogger(c config.Log, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

// ready tells who started serve where its listeners are.
type ready struct {
	Client, Federation, Metrics, AdminSocket, AdminRemote, Health string
}

// serve runs a node until ctx ends, then stops gracefully within
// cfg.ShutdownTimeout. onReady, if not nil, is called once every listener
// is open.
func serve(ctx context.Context, dir string, cfg config.Config, log *slog.Logger, onReady func(ready)) error {
	name, err := valise.ParseNodeName(cfg.Node.Name)
	if err != nil {
		return err
	}
	unlock, err := lockDataDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	signingKey, err := loadSigningKey(config.Path(dir, cfg.Node.SigningKeyFile))
	if err != nil {
		return err
	}
	// One reloader serves every listener: a rotated node.crt/node.key
	// applies to new handshakes on SIGHUP or within certReloadInterval.
	certs, err := pki.NewCertReloader(config.Path(dir, cfg.TLS.CertFile), config.Path(dir, cfg.TLS.KeyFile), log, reloadCheck(dir, cfg))
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	bc, err := backendConfig(dir, cfg)
	if err != nil {
		return err
	}
	store, err := backend.Open(ctx, bc, log)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	defer store.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Peer trust: the federation listener accepts only listed, unblocked
	// peers, each proven by its own CA; admin changes reload it at once,
	// and a periodic reload picks up changes made through other replicas.
	if err := syncConfigPeers(ctx, dir, cfg, store, log); err != nil {
		return err
	}
	trust := federation.NewTrust(name, store, log)
	if err := trust.Reload(ctx); err != nil {
		return fmt.Errorf("federation: load peers: %w", err)
	}
	registerCertExpiry(reg, dir, cfg, name, certs, trust)
	// The node and the federation call each other: the node queues for
	// the senders and looks up remote keys through outbound; the senders
	// and the federation service wake the node's inbox streams.
	var node *server.Node
	delivered := func(ds []storage.Delivery) { node.Delivered(ds) }
	fc := cfg.Federation
	// Outbox leases keep replicas sharing PostgreSQL from working one
	// destination at once; each replica is its own owner. An SQLite node
	// is one process (valised.lock), so it owns its leases under a fixed
	// name and a restart after a crash resumes at once instead of waiting
	// for its previous life's lease to expire.
	owner := ""
	if cfg.Storage.Driver == "sqlite" {
		owner = "sqlite-node"
	}
	outbound := federation.NewOutbound(federation.OutboundConfig{
		Self:           name,
		Owner:          owner,
		Store:          store,
		Trust:          trust,
		Cert:           certs.GetCertificate,
		BatchEnvelopes: fc.BatchEnvelopes,
		BatchBytes:     fc.BatchBytes,
		TTL:            fc.OutboxTTL.D(),
		BackoffMin:     fc.BackoffMin.D(),
		BackoffMax:     fc.BackoffMax.D(),
		Delivered:      delivered,
		Log:            log.With("component", "federation.outbound"),
		Registerer:     reg,
	})
	scfg := cfg.Server()
	scfg.Node = name
	// After an admin's change the peer trust is reloaded and every sender
	// tries again at once (a fixed address or CA bundle, a lifted block, a
	// removed peer whose queue is then given up).
	scfg.PeersChanged = func(ctx context.Context) error {
		err := trust.Reload(ctx)
		outbound.PeersChanged()
		return err
	}
	scfg.Remote = outbound
	// The plaintext health listener's status: liveness ("") and readiness
	// (readyService, following the node's database pings) for container
	// and Kubernetes probes.
	healthStatus := newHealthStatus()
	scfg.DatabaseUp = setReadiness(healthStatus)
	node = server.NewNode(scfg, store, server.NewMetrics(reg), log)

	// Every listener is closed on the way out, also when a later one fails
	// to open (closing one a server already closed is harmless).
	var opened []net.Listener
	defer func() {
		for _, l := range opened {
			l.Close()
		}
	}()
	clientLis, err := net.Listen("tcp", cfg.Listen.Client)
	if err != nil {
		return fmt.Errorf("listen.client: %w", err)
	}
	opened = append(opened, clientLis)
	client := node.NewClientServer(pki.ServerTLS(certs.GetCertificate, nil))

	sockPath, err := filepath.Abs(config.Path(dir, cfg.Listen.AdminSocket))
	if err != nil {
		return err
	}
	adminLis, err := listenUnix(sockPath)
	if err != nil {
		return fmt.Errorf("listen.admin_socket: %w", err)
	}
	opened = append(opened, adminLis)
	admin := node.NewAdminServer(server.UnixCreds{})
	servers := []*grpc.Server{client.Server, admin}
	listeners := []net.Listener{clientLis, adminLis}

	r := ready{Client: clientLis.Addr().String(), AdminSocket: adminLis.Addr().String()}
	if cfg.Listen.Federation != "" {
		lis, err := net.Listen("tcp", cfg.Listen.Federation)
		if err != nil {
			return fmt.Errorf("listen.federation: %w", err)
		}
		opened = append(opened, lis)
		limits := scfg.GRPC
		limits.MaxRecvMsgBytes = fc.MaxRecvMsgBytes
		svc := federation.NewService(federation.ServiceConfig{
			Self:   name,
			Store:  store,
			Trust:  trust,
			Signer: federation.NewSigner(signingKey),
			Limits: federation.Limits{
				MaxBatchEnvelopes:  fc.BatchEnvelopes,
				MaxBatchBytes:      fc.BatchBytes,
				MaxCiphertextBytes: cfg.Limits.MaxCiphertextBytes,
				DedupWindow:        fc.Retention.D(),
				PeerRate:           ratelimit.Rate(fc.PeerRate),
				PeerConcurrency:    fc.PeerConcurrency,
				KeyQueryRate:       ratelimit.Rate(fc.KeyQueryRate),
				ClaimRate:          ratelimit.Rate(cfg.Limits.Claim),
				PeerClaimRate:      ratelimit.Rate(fc.PeerClaimRate),
			},
			Delivered:  delivered,
			Contact:    outbound.Contact,
			Log:        log.With("component", "federation.service"),
			Registerer: reg,
		})
		// The handshake enforces closed federation (ServerTLS); every call
		// then checks its origin and the per-peer limits.
		fed := grpc.NewServer(append(node.FederationServerOptions(limits, svc.UnaryInterceptor()),
			grpc.Creds(credentials.NewTLS(trust.ServerTLS(certs.GetCertificate))))...)
		svc.Register(fed)
		healthpb.RegisterHealthServer(fed, health.NewServer())
		servers = append(servers, fed)
		listeners = append(listeners, lis)
		r.Federation = lis.Addr().String()
	}
	if cfg.Listen.AdminRemote != "" {
		pool, err := pki.LoadPool(config.Path(dir, cfg.TLS.CAFile))
		if err != nil {
			return err
		}
		lis, err := net.Listen("tcp", cfg.Listen.AdminRemote)
		if err != nil {
			return fmt.Errorf("listen.admin_remote: %w", err)
		}
		opened = append(opened, lis)
		remote := node.NewAdminServer(credentials.NewTLS(pki.AdminServerTLS(certs.GetCertificate, pool)))
		servers = append(servers, remote)
		listeners = append(listeners, lis)
		r.AdminRemote = lis.Addr().String()
	}
	if cfg.Listen.Health != "" {
		lis, err := net.Listen("tcp", cfg.Listen.Health)
		if err != nil {
			return fmt.Errorf("listen.health: %w", err)
		}
		opened = append(opened, lis)
		servers = append(servers, newHealthServer(scfg.GRPC, healthStatus))
		listeners = append(listeners, lis)
		r.Health = lis.Addr().String()
	}
	var metricsSrv *http.Server
	var metricsLis net.Listener
	if cfg.Listen.Metrics != "" {
		if metricsLis, err = net.Listen("tcp", cfg.Listen.Metrics); err != nil {
			return fmt.Errorf("listen.metrics: %w", err)
		}
		opened = append(opened, metricsLis)
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		r.Metrics = metricsLis.Addr().String()
	}

	// The writer outlives the servers: in-flight sends finish before it stops.
	writerCtx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWriter()
	writerDone := make(chan error, 1)
	go func() { writerDone <- node.Run(writerCtx) }()
	// The senders stop with the servers; whatever they did not deliver
	// stays in the outbox for the next start (or another replica).
	outboundCtx, stopOutbound := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOutbound()
	outboundDone := make(chan error, 1)
	go func() { outboundDone <- outbound.Run(outboundCtx) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		certs.Run(gctx, certReloadInterval, hup)
		return nil
	})
	for i, s := range servers {
		g.Go(func() error { return s.Serve(listeners[i]) })
	}
	g.Go(func() error {
		t := time.NewTicker(peerReloadInterval)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				if err := trust.Reload(gctx); err != nil && gctx.Err() == nil {
					log.WarnContext(gctx, "peer list not reloaded", "err", err.Error())
				}
			}
		}
	})
	if metricsSrv != nil {
		g.Go(func() error {
			if err := metricsSrv.Serve(metricsLis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	log.InfoContext(ctx, "node serving", "node", string(name), "client", r.Client, "federation", r.Federation, "metrics", r.Metrics,
		"admin_socket", r.AdminSocket, "admin_remote", r.AdminRemote, "health", r.Health, "storage", cfg.Storage.Driver)
	healthStatus.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if onReady != nil {
		onReady(r)
	}
	g.Go(func() error {
		<-gctx.Done()
		log.InfoContext(ctx, "shutting down", "timeout", cfg.ShutdownTimeout.D().String())
		client.Health.Shutdown()
		healthStatus.Shutdown()
		node.StopStreams()
		stopAll(servers, cfg.ShutdownTimeout.D())
		if metricsSrv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = metricsSrv.Shutdown(sctx)
		}
		return nil
	})
	err = g.Wait()
	stopOutbound()
	if oerr := <-outboundDone; oerr != nil && err == nil {
		err = fmt.Errorf("federation: %w", oerr)
	}
	stopWriter()
	<-writerDone
	os.Remove(adminLis.Addr().String())
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	log.InfoContext(ctx, "stopped")
	return nil
}

// stopAll stops the servers gracefully, forcing them after timeout.
func stopAll(servers []*grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		for _, s := range servers {
			s.GracefulStop()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		for _, s := range servers {
			s.Stop()
		}
		<-done
	}
}

// listenUnix listens on a unix socket with mode 0600, replacing a stale
// socket file but never a live one.
func listenUnix(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s is in use: is another valised running on this data directory?", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		os.Remove(path)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}

// loadSigningKey reads the node's Ed25519 signing key (PKCS #8 PEM).
func loadSigningKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node.signing_key_file: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("node.signing_key_file: %s holds no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("node.signing_key_file: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("node.signing_key_file: %s is not an Ed25519 key", path)
	}
	return key, nil
}

func printDevBanner(w io.Writer, dir string, r ready) {
	abs, _ := filepath.Abs(dir)
	fmt.Fprintf(w, `
Valise development node "localhost" is running (loopback only).
  client address: %s
  CA to trust:    %s
  metrics:        http://%s/metrics
  admin socket:   %s
Create a user:
  printf 'correct horse battery' | go run ./cmd/valisectl --data %s user create alice --password-stdin
Stop with Ctrl-C; the next start reuses %s.
`, r.Client, filepath.Join(abs, "ca.crt"), r.Metrics, r.AdminSocket, strings.TrimPrefix(dir, "./"), abs)
}
