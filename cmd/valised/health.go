package main

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/valise-im/valise/server"
)

// readyService is the health service name that reports SERVING only while
// the database answers (readiness); the overall service "" reports
// SERVING from the moment the node serves until it shuts down (liveness).
const readyService = "valise.ready"

// How often the readiness check pings the database, and how long one ping
// may take before the node counts as not ready.
const (
	readyInterval = 5 * time.Second
	readyTimeout  = 2 * time.Second
)

// newHealthStatus returns the health status of the plaintext health
// listener: everything NOT_SERVING until the node serves.
func newHealthStatus() *health.Server {
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	h.SetServingStatus(readyService, healthpb.HealthCheckResponse_NOT_SERVING)
	return h
}

// newHealthServer builds the plaintext health listener's gRPC server: only
// grpc.health.v1.Health (no reflection, no other service), with the same
// explicit limits as every other listener.
func newHealthServer(limits server.GRPCLimits, status *health.Server) *grpc.Server {
	s := grpc.NewServer(server.ServerOptions(limits)...)
	healthpb.RegisterHealthServer(s, status)
	return s
}

// watchReadiness pings the database at once and then every interval, each
// ping bounded by timeout, and sets readyService to SERVING while it
// answers and NOT_SERVING while it does not, logging each change. It
// returns when ctx ends.
func watchReadiness(ctx context.Context, status *health.Server, ping func(context.Context) error, interval, timeout time.Duration, log *slog.Logger) {
	ready, known := false, false
	check := func() {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && (!ready || !known):
			ready, known = true, true
			status.SetServingStatus(readyService, healthpb.HealthCheckResponse_SERVING)
			log.InfoContext(ctx, "database answers: ready")
		case err != nil && (ready || !known):
			ready, known = false, true
			status.SetServingStatus(readyService, healthpb.HealthCheckResponse_NOT_SERVING)
			log.WarnContext(ctx, "database does not answer: not ready", "err", err.Error())
		}
	}
	check()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}
