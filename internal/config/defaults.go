package config

import (
	"time"

	"github.com/valise-im/valise/server"
)

// Default returns the documented defaults. Node.Name has no default:
// `valised init --name` sets it.
func Default() Config {
	s := server.DefaultConfig()
	g := s.GRPC
	return Config{
		Node: Node{SigningKeyFile: "signing.key"},
		Listen: Listen{
			Client:      "127.0.0.1:7443",
			Federation:  "127.0.0.1:7444",
			Metrics:     "127.0.0.1:9464",
			AdminSocket: "admin.sock",
		},
		TLS: TLS{CAFile: "ca.crt", CertFile: "node.crt", KeyFile: "node.key"},
		Storage: Storage{
			Driver: "sqlite",
			SQLite: SQLite{Path: "valise.db"},
		},
		Limits: Limits{
			MaxCiphertextBytes:      s.MaxCiphertextBytes,
			MaxRecipients:           s.MaxRecipients,
			MaxOneTimeKeysPerUpload: s.MaxOneTimeKeysPerUpload,
			MaxOneTimeKeysStored:    s.MaxOneTimeKeysStored,
			MaxStreamsPerDevice:     s.MaxStreamsPerDevice,
			Send:                    Rate(s.Limits.Send),
			Login:                   Rate(s.Limits.Login),
			LoginFailure:            Rate(s.Limits.LoginFailure),
			Claim:                   Rate(s.Limits.Claim),
			RemoteLookup:            Rate(s.Limits.RemoteLookup),
			IdempotencyRetention:    Duration(s.IdempotencyRetention),
		},
		Federation: Federation{
			OutboxTTL:       Duration(s.OutboxTTL),
			Retention:       Duration(s.FederationRetention),
			BatchEnvelopes:  100,
			BatchBytes:      4 << 20,
			BackoffMin:      Duration(time.Second),
			BackoffMax:      Duration(5 * time.Minute),
			MaxRecvMsgBytes: 5 << 20,
			PeerRate:        Rate{Burst: 200, PerSecond: 100},
			PeerConcurrency: 16,
			KeyQueryRate:    Rate{Burst: 100, PerSecond: 20},
			PeerClaimRate:   Rate{Burst: 100, PerSecond: 10},
			Peers:           []Peer{},
		},
		GRPC: GRPC{
			MaxRecvMsgBytes:       g.MaxRecvMsgBytes,
			MaxConcurrentStreams:  g.MaxConcurrentStreams,
			MaxHeaderListBytes:    g.MaxHeaderListBytes,
			ConnectionTimeout:     Duration(g.ConnectionTimeout),
			KeepaliveTime:         Duration(g.KeepaliveTime),
			KeepaliveTimeout:      Duration(g.KeepaliveTimeout),
			KeepaliveMinTime:      Duration(g.KeepaliveMinTime),
			MaxConnectionAge:      Duration(g.MaxConnectionAge),
			MaxConnectionAgeGrace: Duration(g.MaxConnectionGrace),
			UnaryTimeout:          Duration(g.UnaryTimeout),
		},
		Password:        Password{Time: s.Password.Time, MemoryKiB: s.Password.MemoryK, Threads: s.Password.Threads},
		Log:             Log{Level: "info", Format: "json"},
		ShutdownTimeout: Duration(20 * time.Second),
	}
}

// Server converts the config into the server's section.
func (c Config) Server() server.Config {
	g := c.GRPC
	return server.Config{
		MaxCiphertextBytes:      c.Limits.MaxCiphertextBytes,
		MaxRecipients:           c.Limits.MaxRecipients,
		MaxOneTimeKeysPerUpload: c.Limits.MaxOneTimeKeysPerUpload,
		MaxOneTimeKeysStored:    c.Limits.MaxOneTimeKeysStored,
		MaxStreamsPerDevice:     c.Limits.MaxStreamsPerDevice,
		Password:                server.PasswordParams{Time: c.Password.Time, MemoryK: c.Password.MemoryKiB, Threads: c.Password.Threads},
		Limits: server.Limits{
			Send:         server.Rate(c.Limits.Send),
			Login:        server.Rate(c.Limits.Login),
			LoginFailure: server.Rate(c.Limits.LoginFailure),
			Claim:        server.Rate(c.Limits.Claim),
			RemoteLookup: server.Rate(c.Limits.RemoteLookup),
		},
		IdempotencyRetention: c.Limits.IdempotencyRetention.D(),
		OutboxTTL:            c.Federation.OutboxTTL.D(),
		FederationRetention:  c.Federation.Retention.D(),
		GRPC: server.GRPCLimits{
			MaxRecvMsgBytes:      g.MaxRecvMsgBytes,
			MaxConcurrentStreams: g.MaxConcurrentStreams,
			MaxHeaderListBytes:   g.MaxHeaderListBytes,
			ConnectionTimeout:    g.ConnectionTimeout.D(),
			KeepaliveTime:        g.KeepaliveTime.D(),
			KeepaliveTimeout:     g.KeepaliveTimeout.D(),
			KeepaliveMinTime:     g.KeepaliveMinTime.D(),
			MaxConnectionAge:     g.MaxConnectionAge.D(),
			MaxConnectionGrace:   g.MaxConnectionAgeGrace.D(),
			UnaryTimeout:         g.UnaryTimeout.D(),
		},
	}
}
