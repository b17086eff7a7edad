package server

import (
	"context"
	"time"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/internal/ratelimit"
)

// Config is the server's section of the node configuration. Zero fields
// take the defaults of DefaultConfig.
type Config struct {
	// Node is this node's name; users are localpart@Node.
	Node valise.NodeName
	// MaxCiphertextBytes bounds one envelope's ciphertext.
	MaxCiphertextBytes int
	// MaxRecipients bounds the envelopes of one SendEnvelopes.
	MaxRecipients int
	// MaxOneTimeKeysPerUpload bounds one-time prekeys per publish.
	MaxOneTimeKeysPerUpload int
	// MaxOneTimeKeysStored bounds the unclaimed one-time prekeys per device.
	MaxOneTimeKeysStored int
	// MaxStreamsPerDevice bounds the open StreamInbox streams of one device
	// (each may hold a page of envelopes in memory).
	MaxStreamsPerDevice int
	// Password sets the argon2id cost of password hashes.
	Password PasswordParams
	// Limits are the rate limits.
	Limits Limits
	// GRPC are the gRPC server limits of the client listener.
	GRPC GRPCLimits
	// PeersChanged, if set, is called after an admin changed the peer list
	// (cmd/valised reloads the federation trust with it).
	PeersChanged func(context.Context) error
	// IdempotencyRetention is how long the idempotency record of a send is
	// kept: a retry within it is answered with the first send's ids, a
	// later one is a new send. Node.Run prunes older records every hour.
	// The default, 30 days, outlasts any client's retries by far.
	IdempotencyRetention time.Duration
	// DatabaseUp, if set, is called after every database ping (at start,
	// then every 10 s) with whether the database answered within 5 s, for
	// readiness probes. It must not block.
	DatabaseUp func(up bool)
	// Remote relays envelopes to, and looks up keys on, other nodes. Nil
	// turns federation off: users of other nodes are then NotFound.
	Remote Remote
	// OutboxTTL is how long an envelope for another node is retried
	// before it is given up and its sender told (default 30 days).
	OutboxTTL time.Duration
	// FederationRetention is how long the records of what peers delivered
	// (envelope ids, transaction answers) and dead letters are kept; a
	// peer's envelope older than it is refused as expired. Default 31
	// days; never less than OutboxTTL.
	FederationRetention time.Duration
}

// Limits are token-bucket rate limits: Burst requests at once, then
// PerSecond on average.
type Limits struct {
	// Sends per device (SendEnvelopes calls).
	Send Rate
	// Login attempts per client address and, separately, per account.
	Login Rate
	// Failed logins per account.
	LoginFailure Rate
	// Key lookups and claims on other nodes per caller device (each is a
	// call to that node, which limits this node as a whole).
	RemoteLookup Rate
	// One-time key claims per (caller device, target device).
	Claim Rate
}

// Rate is a token bucket.
type Rate = ratelimit.Rate

// GRPCLimits are the explicit limits of a gRPC server.
type GRPCLimits struct {
	MaxRecvMsgBytes      int
	MaxConcurrentStreams uint32
	MaxHeaderListBytes   uint32
	ConnectionTimeout    time.Duration
	KeepaliveTime        time.Duration
	KeepaliveTimeout     time.Duration
	KeepaliveMinTime     time.Duration
	MaxConnectionAge     time.Duration
	MaxConnectionGrace   time.Duration
	UnaryTimeout         time.Duration
}

// DefaultConfig returns the documented defaults (see README "Limits").
func DefaultConfig() Config {
	return Config{
		MaxCiphertextBytes:      valise.DefaultMaxCiphertext,
		MaxRecipients:           valise.DefaultMaxRecipients,
		MaxOneTimeKeysPerUpload: valise.DefaultMaxOneTimeKeysPerUpload,
		MaxOneTimeKeysStored:    valise.DefaultMaxOneTimeKeysStored,
		MaxStreamsPerDevice:     4,
		Password:                DefaultPasswordParams(),
		Limits: Limits{
			Send:         Rate{Burst: 60, PerSecond: 20},
			Login:        Rate{Burst: 5, PerSecond: 0.2},
			LoginFailure: Rate{Burst: 3, PerSecond: 1.0 / 60},
			Claim:        Rate{Burst: 6, PerSecond: 1.0 / 600},
			RemoteLookup: Rate{Burst: 30, PerSecond: 2},
		},
		GRPC:                 DefaultGRPCLimits(),
		IdempotencyRetention: 30 * 24 * time.Hour,
		OutboxTTL:            30 * 24 * time.Hour,
		FederationRetention:  31 * 24 * time.Hour,
	}
}

// DefaultGRPCLimits returns the client listener's default gRPC limits.
func DefaultGRPCLimits() GRPCLimits {
	return GRPCLimits{
		MaxRecvMsgBytes:      1 << 20,
		MaxConcurrentStreams: 100,
		MaxHeaderListBytes:   8 << 10,
		ConnectionTimeout:    10 * time.Second,
		KeepaliveTime:        60 * time.Second,
		KeepaliveTimeout:     20 * time.Second,
		KeepaliveMinTime:     30 * time.Second,
		MaxConnectionAge:     time.Hour,
		MaxConnectionGrace:   30 * time.Second,
		UnaryTimeout:         10 * time.Second,
	}
}
