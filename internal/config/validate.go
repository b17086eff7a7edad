package config

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/valise-im/valise"
	"github.com/valise-im/valise/server"
)

// Problems is every problem Validate found, each prefixed by its path.
type Problems []string

func (p Problems) Error() string { return strings.Join(p, "\n") }

// Validate checks c for a node in data directory dir and returns every
// problem at once (as Problems), or nil. With files set it also checks
// that the referenced files exist.
func (c Config) Validate(dir string, files bool) error {
	var p Problems
	add := func(path, format string, args ...any) {
		p = append(p, path+": "+fmt.Sprintf(format, args...))
	}
	if _, err := valise.ParseNodeName(c.Node.Name); err != nil {
		add("node.name", "%v", err)
	}
	checkAddr := func(path, v string, optional bool) {
		if v == "" {
			if !optional {
				add(path, "is required (HOST:PORT)")
			}
			return
		}
		if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
			add(path, "%q is not HOST:PORT", v)
		}
	}
	checkAddr("listen.client", c.Listen.Client, false)
	checkAddr("listen.federation", c.Listen.Federation, true)
	checkAddr("listen.metrics", c.Listen.Metrics, true)
	checkAddr("listen.admin_remote", c.Listen.AdminRemote, true)
	checkAddr("listen.health", c.Listen.Health, true)
	if c.Listen.AdminSocket == "" {
		add("listen.admin_socket", "is required")
	} else if s := Path(dir, c.Listen.AdminSocket); len(s) > 100 {
		add("listen.admin_socket", "path %q is longer than a unix socket allows (100 bytes)", s)
	}
	checkFile := func(path, v string) {
		if v == "" {
			add(path, "is required")
			return
		}
		if files {
			if _, err := os.Stat(Path(dir, v)); err != nil {
				add(path, "%v", err)
			}
		}
	}
	checkFile("node.signing_key_file", c.Node.SigningKeyFile)
	checkFile("tls.ca_file", c.TLS.CAFile)
	checkFile("tls.cert_file", c.TLS.CertFile)
	checkFile("tls.key_file", c.TLS.KeyFile)
	switch c.Storage.Driver {
	case "sqlite":
		if c.Storage.SQLite.Path == "" {
			add("storage.sqlite.path", "is required with driver sqlite")
		}
	case "postgres":
		if c.Storage.Postgres.DSNFile == "" && os.Getenv("VALISE_POSTGRES_DSN") == "" {
			add("storage.postgres.dsn_file", "is required with driver postgres (or set VALISE_POSTGRES_DSN)")
		} else if c.Storage.Postgres.DSNFile != "" && os.Getenv("VALISE_POSTGRES_DSN") == "" {
			checkFile("storage.postgres.dsn_file", c.Storage.Postgres.DSNFile)
		}
	default:
		add("storage.driver", "%q must be sqlite or postgres", c.Storage.Driver)
	}
	positive := func(path string, v int) {
		if v <= 0 {
			add(path, "must be positive, got %d", v)
		}
	}
	positive("limits.max_ciphertext_bytes", c.Limits.MaxCiphertextBytes)
	positive("limits.max_recipients", c.Limits.MaxRecipients)
	positive("limits.max_one_time_keys_per_upload", c.Limits.MaxOneTimeKeysPerUpload)
	positive("limits.max_one_time_keys_stored", c.Limits.MaxOneTimeKeysStored)
	positive("limits.max_streams_per_device", c.Limits.MaxStreamsPerDevice)
	if c.Limits.MaxOneTimeKeysPerUpload > c.Limits.MaxOneTimeKeysStored {
		add("limits.max_one_time_keys_per_upload", "must not exceed limits.max_one_time_keys_stored")
	}
	for name, r := range map[string]Rate{"limits.send": c.Limits.Send, "limits.login": c.Limits.Login,
		"limits.login_failure": c.Limits.LoginFailure, "limits.claim": c.Limits.Claim, "limits.remote_lookup": c.Limits.RemoteLookup,
		"federation.peer_rate": c.Federation.PeerRate, "federation.key_query_rate": c.Federation.KeyQueryRate,
		"federation.peer_claim_rate": c.Federation.PeerClaimRate} {
		if r.Burst < 1 {
			add(name+".burst", "must be at least 1, got %d", r.Burst)
		}
		if r.PerSecond <= 0 {
			add(name+".per_second", "must be positive, got %g", r.PerSecond)
		}
	}
	c.validateFederation(add, checkFile)
	if c.GRPC.MaxRecvMsgBytes < c.Limits.MaxCiphertextBytes+1024 {
		add("grpc.max_recv_msg_bytes", "must exceed limits.max_ciphertext_bytes by at least 1 KiB, got %d", c.GRPC.MaxRecvMsgBytes)
	}
	if c.GRPC.MaxConcurrentStreams == 0 {
		add("grpc.max_concurrent_streams", "must be positive")
	}
	if c.GRPC.MaxHeaderListBytes < 1024 {
		add("grpc.max_header_list_bytes", "must be at least 1024")
	}
	for name, d := range map[string]Duration{
		"grpc.connection_timeout": c.GRPC.ConnectionTimeout, "grpc.keepalive_time": c.GRPC.KeepaliveTime,
		"grpc.keepalive_timeout": c.GRPC.KeepaliveTimeout, "grpc.keepalive_min_time": c.GRPC.KeepaliveMinTime,
		"grpc.max_connection_age": c.GRPC.MaxConnectionAge, "grpc.max_connection_age_grace": c.GRPC.MaxConnectionAgeGrace,
		"grpc.unary_timeout": c.GRPC.UnaryTimeout, "shutdown_timeout": c.ShutdownTimeout,
		"limits.idempotency_retention": c.Limits.IdempotencyRetention,
		"federation.outbox_ttl":        c.Federation.OutboxTTL, "federation.retention": c.Federation.Retention,
		"federation.backoff_min": c.Federation.BackoffMin, "federation.backoff_max": c.Federation.BackoffMax,
	} {
		if d <= 0 {
			add(name, "must be a positive duration")
		}
	}
	if c.Password.Time < 1 || c.Password.Time > server.MaxPasswordTime {
		add("password.argon2_time", "must be 1 to %d, got %d", server.MaxPasswordTime, c.Password.Time)
	}
	if c.Password.Threads < 1 || c.Password.Threads > server.MaxPasswordThreads {
		add("password.argon2_threads", "must be 1 to %d, got %d", server.MaxPasswordThreads, c.Password.Threads)
	}
	if c.Password.MemoryKiB < 8*uint32(c.Password.Threads) || c.Password.MemoryKiB > server.MaxPasswordMemoryK {
		add("password.argon2_memory_kib", "must be 8 per thread to %d, got %d", server.MaxPasswordMemoryK, c.Password.MemoryKiB)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "%q must be debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		add("log.format", "%q must be json or text", c.Log.Format)
	}
	if len(p) == 0 {
		return nil
	}
	slices.Sort(p)
	return p
}

// validateFederation checks the federation section.
func (c Config) validateFederation(add func(path, format string, args ...any), checkFile func(path, v string)) {
	f := c.Federation
	if f.BatchEnvelopes < 1 || f.BatchEnvelopes > 1000 {
		add("federation.batch_envelopes", "must be 1 to 1000, got %d", f.BatchEnvelopes)
	}
	if f.BatchBytes < c.Limits.MaxCiphertextBytes {
		add("federation.batch_bytes", "must be at least limits.max_ciphertext_bytes (%d), got %d", c.Limits.MaxCiphertextBytes, f.BatchBytes)
	}
	// A batch carries, beside its ciphertext, about 400 bytes of ids and
	// names per envelope.
	if need := f.BatchBytes + f.BatchEnvelopes*512 + 4096; f.MaxRecvMsgBytes < need {
		add("federation.max_recv_msg_bytes", "must hold a full batch (batch_bytes + 512 per envelope + 4 KiB = %d), got %d", need, f.MaxRecvMsgBytes)
	}
	if f.Retention < f.OutboxTTL {
		add("federation.retention", "must be at least federation.outbox_ttl")
	}
	if f.BackoffMax < f.BackoffMin {
		add("federation.backoff_max", "must be at least federation.backoff_min")
	}
	if f.PeerConcurrency < 1 {
		add("federation.peer_concurrency", "must be at least 1, got %d", f.PeerConcurrency)
	}
	seen := map[string]bool{}
	for i, p := range f.Peers {
		path := fmt.Sprintf("federation.peers[%d]", i)
		name, err := valise.ParseNodeName(p.Name)
		switch {
		case err != nil:
			add(path+".name", "%v", err)
		case string(name) == c.Node.Name:
			add(path+".name", "%s is this node's own name", name)
		case seen[string(name)]:
			add(path+".name", "%s is declared twice", name)
		}
		seen[string(name)] = true
		if host, port, err := net.SplitHostPort(p.Address); err != nil || host == "" || port == "" {
			add(path+".address", "%q is not HOST:PORT", p.Address)
		}
		checkFile(path+".ca_bundle_file", p.CABundleFile)
	}
}
