package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/valise-im/valise/internal/config"
	"github.com/valise-im/valise/internal/pki"
)

// cmdHealth is `valised health`: it asks a node's gRPC health service
// whether it serves and returns nil only for SERVING. With --addr it
// probes a plaintext health listener (listen.health); with --data it reads
// the node's config and probes listen.health if set, else the client
// listener over TLS 1.3, trusting the data directory's CA with the node
// name as server name. It needs no shell, so a container image without
// one can use it as its health check.
func cmdHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "", "the node's data directory: probe its listen.health, else its client listener over TLS")
	addr := fs.String("addr", "", "probe the plaintext health listener at HOST:PORT")
	service := fs.String("service", "", `health service to ask about: "" (the node serves) or "`+readyService+`" (its database answers)`)
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "valised health: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	if (*dir == "") == (*addr == "") {
		fmt.Fprintln(stderr, "valised health: give exactly one of --data DIR and --addr HOST:PORT")
		return errUsage
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "valised health: --timeout must be positive")
		return errUsage
	}
	target, creds := *addr, insecure.NewCredentials()
	if *dir != "" {
		cfg, err := config.Load(*dir)
		if err != nil {
			return fmt.Errorf("health: %w", err)
		}
		if cfg.Listen.Health != "" {
			target = cfg.Listen.Health
		} else {
			pool, err := pki.LoadPool(config.Path(*dir, cfg.TLS.CAFile))
			if err != nil {
				return fmt.Errorf("health: %w", err)
			}
			target = cfg.Listen.Client
			creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: cfg.Node.Name})
		}
	} else if _, _, err := net.SplitHostPort(*addr); err != nil {
		fmt.Fprintf(stderr, "valised health: --addr %q is not HOST:PORT\n", *addr)
		return errUsage
	}
	target = dialable(target)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, err := checkHealth(ctx, target, creds, *service)
	if err != nil {
		return fmt.Errorf("health: %s: %w", target, err)
	}
	if st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health: %s: service %q is %s", target, *service, st)
	}
	fmt.Fprintln(stdout, st)
	return nil
}

// checkHealth asks the health service at target about service.
func checkHealth(ctx context.Context, target string, creds credentials.TransportCredentials, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return 0, errors.New("no answer within --timeout")
		}
		return 0, errors.New(status.Convert(err).Message())
	}
	return res.Status, nil
}

// dialable turns a listen address into one to dial: a wildcard or empty
// host (0.0.0.0, ::) becomes the loopback address.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
