package main

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/valise-im/valise/server"
)

// readyService is the health service name that reports SERVING only while
// the database answers (readiness); the overall service "" reports
// SERVING from the moment the node serves until it shuts down (liveness).
const readyService = "valise.ready"

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

// setReadiness returns the server's Config.DatabaseUp for the health
// status: readyService is SERVING while the node's database pings answer
// (the node logs the changes) and NOT_SERVING while they do not.
func setReadiness(status *health.Server) func(up bool) {
	return func(up bool) {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if up {
			st = healthpb.HealthCheckResponse_SERVING
		}
		status.SetServingStatus(readyService, st)
	}
}
