// Package config is the configuration tree of valised: its documented
// defaults, loading from a YAML file with environment overrides, and
// Validate, which reports every problem at once with its path. Only cmd/*
// imports it; each component receives its own section, converted.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as a string ("30s", "1h").
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like \"30s\"", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the whole configuration of a node. Relative file paths are
// relative to the data directory, the directory holding the config file.
type Config struct {
	Node       Node       `yaml:"node"`
	Listen     Listen     `yaml:"listen"`
	TLS        TLS        `yaml:"tls"`
	Storage    Storage    `yaml:"storage"`
	Limits     Limits     `yaml:"limits"`
	Federation Federation `yaml:"federation"`
	GRPC       GRPC       `yaml:"grpc"`
	Password   Password   `yaml:"password"`
	Log        Log        `yaml:"log"`
	// ShutdownTimeout bounds the graceful stop on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// Node names the node.
type Node struct {
	// Name is the node's federation name (a DNS name); users are
	// localpart@Name.
	Name string `yaml:"name"`
	// SigningKeyFile holds the node's Ed25519 signing key (PKCS #8 PEM).
	SigningKeyFile string `yaml:"signing_key_file"`
}

// Listen holds the listener addresses.
type Listen struct {
	// Client is the ClientService address (TLS 1.3).
	Client string `yaml:"client"`
	// Federation is the federation listener (mutual TLS with peers; "" turns
	// it off).
	Federation string `yaml:"federation"`
	// Metrics serves Prometheus metrics over plain HTTP; "" turns it off.
	Metrics string `yaml:"metrics"`
	// AdminSocket is the unix socket of the AdminService (mode 0600).
	AdminSocket string `yaml:"admin_socket"`
	// AdminRemote, if set, serves the AdminService over mTLS to admin
	// certificates issued by the node's CA.
	AdminRemote string `yaml:"admin_remote"`
	// Health, if set, serves only grpc.health.v1.Health in plaintext, for
	// container and Kubernetes probes; "" turns it off.
	Health string `yaml:"health"`
}

// TLS names the certificate files.
type TLS struct {
	// CAFile is the organization's CA certificate, which clients and peers
	// trust; it also verifies admin client certificates.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the node's certificate (SAN = node name) and key.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Storage selects and configures the database.
type Storage struct {
	// Driver is "sqlite" (embedded, the default) or "postgres".
	Driver   string   `yaml:"driver"`
	SQLite   SQLite   `yaml:"sqlite"`
	Postgres Postgres `yaml:"postgres"`
}

// SQLite configures the embedded database.
type SQLite struct {
	// Path is the database file.
	Path string `yaml:"path"`
}

// Postgres configures PostgreSQL.
type Postgres struct {
	// DSNFile holds the connection string (it may contain a password).
	// The environment variable VALISE_POSTGRES_DSN overrides it.
	DSNFile string `yaml:"dsn_file"`
}

// Rate is a token bucket: Burst at once, then PerSecond on average.
type Rate struct {
	Burst     int     `yaml:"burst"`
	PerSecond float64 `yaml:"per_second"`
}

// Limits bound what clients may send.
type Limits struct {
	MaxCiphertextBytes      int  `yaml:"max_ciphertext_bytes"`
	MaxRecipients           int  `yaml:"max_recipients"`
	MaxOneTimeKeysPerUpload int  `yaml:"max_one_time_keys_per_upload"`
	MaxOneTimeKeysStored    int  `yaml:"max_one_time_keys_stored"`
	MaxStreamsPerDevice     int  `yaml:"max_streams_per_device"`
	Send                    Rate `yaml:"send"`
	Login                   Rate `yaml:"login"`
	LoginFailure            Rate `yaml:"login_failure"`
	Claim                   Rate `yaml:"claim"`
	// RemoteLookup bounds key lookups and claims on other nodes per
	// device.
	RemoteLookup Rate `yaml:"remote_lookup"`
	// IdempotencyRetention is how long a send's idempotency record is
	// kept; a retry after it is a new send.
	IdempotencyRetention Duration `yaml:"idempotency_retention"`
}

// Federation configures relaying to and from peers.
type Federation struct {
	// OutboxTTL is how long an envelope for another node is retried before
	// it is dead-lettered and its sender told.
	OutboxTTL Duration `yaml:"outbox_ttl"`
	// Retention is how long the ids of envelopes peers delivered (for
	// deduplication), their transactions' answers and dead letters are
	// kept; at least OutboxTTL.
	Retention Duration `yaml:"retention"`
	// BatchEnvelopes and BatchBytes bound one outgoing transaction and
	// every incoming one.
	BatchEnvelopes int `yaml:"batch_envelopes"`
	BatchBytes     int `yaml:"batch_bytes"`
	// BackoffMin and BackoffMax bound the retry delay after a failed
	// delivery (exponential, with jitter).
	BackoffMin Duration `yaml:"backoff_min"`
	BackoffMax Duration `yaml:"backoff_max"`
	// MaxRecvMsgBytes is the federation listener's largest request.
	MaxRecvMsgBytes int `yaml:"max_recv_msg_bytes"`
	// PeerRate bounds all calls of one peer; PeerConcurrency its calls in
	// flight; KeyQueryRate its key lookups; PeerClaimRate its one-time key
	// claims (each requester device is also held to limits.claim).
	PeerRate        Rate `yaml:"peer_rate"`
	PeerConcurrency int  `yaml:"peer_concurrency"`
	KeyQueryRate    Rate `yaml:"key_query_rate"`
	PeerClaimRate   Rate `yaml:"peer_claim_rate"`
	// Peers are declared here as well as with valisectl: at start the
	// node adds each one missing from its peer list and updates the
	// address and CA bundle of each one listed differently (a block set
	// with valisectl stays).
	Peers []Peer `yaml:"peers"`
}

// Peer declares a federation peer.
type Peer struct {
	// Name is the peer's node name.
	Name string `yaml:"name"`
	// Address is its federation endpoint, HOST:PORT.
	Address string `yaml:"address"`
	// CABundleFile holds the PEM CA certificates trusted for Name.
	CABundleFile string `yaml:"ca_bundle_file"`
}

// GRPC holds the explicit gRPC server limits.
type GRPC struct {
	MaxRecvMsgBytes       int      `yaml:"max_recv_msg_bytes"`
	MaxConcurrentStreams  uint32   `yaml:"max_concurrent_streams"`
	MaxHeaderListBytes    uint32   `yaml:"max_header_list_bytes"`
	ConnectionTimeout     Duration `yaml:"connection_timeout"`
	KeepaliveTime         Duration `yaml:"keepalive_time"`
	KeepaliveTimeout      Duration `yaml:"keepalive_timeout"`
	KeepaliveMinTime      Duration `yaml:"keepalive_min_time"`
	MaxConnectionAge      Duration `yaml:"max_connection_age"`
	MaxConnectionAgeGrace Duration `yaml:"max_connection_age_grace"`
	UnaryTimeout          Duration `yaml:"unary_timeout"`
}

// Password sets the argon2id cost.
type Password struct {
	Time      uint32 `yaml:"argon2_time"`
	MemoryKiB uint32 `yaml:"argon2_memory_kib"`
	Threads   uint8  `yaml:"argon2_threads"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text.
	Format string `yaml:"format"`
}

// FileName is the config file's name inside the data directory.
const FileName = "valised.yaml"

// Load reads dir/valised.yaml over the defaults (unknown keys are errors)
// and applies environment overrides. It does not validate.
func Load(dir string) (Config, error) {
	c := Default()
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if err := Decode(b, &c); err != nil {
		return c, fmt.Errorf("config: %s: %w", path, err)
	}
	c.applyEnv(os.Getenv)
	return c, nil
}

// Decode decodes YAML into c strictly: unknown keys are errors.
func Decode(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Marshal renders c as YAML.
func (c Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }

// applyEnv applies the documented environment overrides.
func (c *Config) applyEnv(getenv func(string) string) {
	if v := getenv("VALISE_LOG_LEVEL"); v != "" {
		c.Log.Level = v
	}
	if v := getenv("VALISE_LOG_FORMAT"); v != "" {
		c.Log.Format = v
	}
	if v := getenv("VALISE_CLIENT_ADDR"); v != "" {
		c.Listen.Client = v
	}
	if v := getenv("VALISE_METRICS_ADDR"); v != "" {
		c.Listen.Metrics = v
	}
	if v := getenv("VALISE_HEALTH_ADDR"); v != "" {
		c.Listen.Health = v
	}
}

// Path resolves a config path against the data directory.
func Path(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
