package server

import (
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/valise-im/valise/proto/valise/admin/v1"
	clientv1 "github.com/valise-im/valise/proto/valise/client/v1"
)

// RecursionLimit bounds protobuf message nesting on every listener
// (protobuf-go's default is 10,000).
const RecursionLimit = 100

// protoCodec is the proto codec with a recursion limit.
type protoCodec struct{}

func (protoCodec) Name() string { return "proto" }

func (protoCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a proto message", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (protoCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec: %T is not a proto message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return proto.UnmarshalOptions{RecursionLimit: RecursionLimit}.Unmarshal(buf.ReadOnlyData(), m)
}

var _ encoding.CodecV2 = protoCodec{}

// ServerOptions returns the explicit limits every listener uses (also the
// federation listener, which cmd/valised builds).
func ServerOptions(l GRPCLimits) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(protoCodec{}),
		// Each connection keeps its read buffer for life: 4 KiB rather
		// than grpc-go's 32 KiB takes about 28 KiB off every idle client
		// (valise-bench idle: 137 → 95 KiB RSS per device), and larger
		// reads bypass the buffer anyway.
		grpc.ReadBufferSize(4 << 10),
		grpc.MaxRecvMsgSize(l.MaxRecvMsgBytes),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(l.MaxHeaderListBytes),
		grpc.ConnectionTimeout(l.ConnectionTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  l.KeepaliveTime,
			Timeout:               l.KeepaliveTimeout,
			MaxConnectionAge:      l.MaxConnectionAge,
			MaxConnectionAgeGrace: l.MaxConnectionGrace,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             l.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
	}
}

// ClientServer is the client listener's gRPC server with its health
// service, which the daemon flips to NOT_SERVING when it shuts down.
type ClientServer struct {
	*grpc.Server
	Health *health.Server
}

// NewClientServer builds the client listener's gRPC server: ClientService,
// gRPC health and server reflection, over tlsCfg (TLS 1.3 only), with
// every limit of cfg.GRPC set explicitly.
func (n *Node) NewClientServer(tlsCfg *tls.Config) *ClientServer {
	if tlsCfg.MinVersion < tls.VersionTLS13 {
		panic("server: the client listener needs TLS 1.3")
	}
	ic := &interceptors{
		log:      n.log.With("component", "server.client"),
		metrics:  n.metrics,
		timeout:  n.cfg.GRPC.UnaryTimeout,
		auth:     n.clientAuth,
		noLogFor: map[codes.Code]bool{codes.Canceled: true},
	}
	opts := append(ServerOptions(n.cfg.GRPC),
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.ChainUnaryInterceptor(ic.unary),
		grpc.ChainStreamInterceptor(ic.stream),
	)
	s := grpc.NewServer(opts...)
	clientv1.RegisterClientServiceServer(s, &clientService{n: n})
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	h.SetServingStatus(clientv1.ClientService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(s)
	return &ClientServer{Server: s, Health: h}
}

// NewAdminServer builds the AdminService server over creds: the unix
// socket's peer-credential check (UnixCreds) or the remote admin TLS
// configuration (pki.AdminServerTLS).
func (n *Node) NewAdminServer(creds credentials.TransportCredentials) *grpc.Server {
	ic := &interceptors{
		log:     n.log.With("component", "server.admin"),
		metrics: n.metrics,
		timeout: n.cfg.GRPC.UnaryTimeout,
		auth:    adminAuth,
	}
	l := n.cfg.GRPC
	opts := append(ServerOptions(l),
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(ic.unary),
		grpc.ChainStreamInterceptor(ic.stream),
		// As every listener, but a call in progress when the connection
		// reaches its maximum age may finish within AdminStreamGrace
		// rather than the usual grace: a backup of a large database
		// streams for longer than an hour.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  l.KeepaliveTime,
			Timeout:               l.KeepaliveTimeout,
			MaxConnectionAge:      l.MaxConnectionAge,
			MaxConnectionAgeGrace: max(l.MaxConnectionGrace, AdminStreamGrace),
		}),
	)
	s := grpc.NewServer(opts...)
	adminv1.RegisterAdminServiceServer(s, &adminService{n: n})
	healthpb.RegisterHealthServer(s, health.NewServer())
	return s
}

// AdminStreamGrace is how long an admin call (a backup) may go on after
// its connection reached its maximum age.
const AdminStreamGrace = 24 * time.Hour

// FederationTimeout is the deadline of every call on the federation
// listener: a transaction of up to 100 envelopes commits well within it.
const FederationTimeout = 30 * time.Second

// FederationServerOptions returns the options of the federation
// listener's gRPC server, built by cmd/valised around the federation
// package's service: the limits l, panic recovery, error mapping, one log
// line per failed call and the request metrics, then the interceptors
// given (the federation service's per-peer limits). The caller adds the
// transport credentials.
func (n *Node) FederationServerOptions(l GRPCLimits, unary ...grpc.UnaryServerInterceptor) []grpc.ServerOption {
	ic := &interceptors{
		log:      n.log.With("component", "federation.listener"),
		metrics:  n.metrics,
		timeout:  FederationTimeout,
		noLogFor: map[codes.Code]bool{codes.Canceled: true},
	}
	return append(ServerOptions(l),
		grpc.ChainUnaryInterceptor(append([]grpc.UnaryServerInterceptor{ic.unary}, unary...)...),
		grpc.ChainStreamInterceptor(ic.stream),
	)
}
