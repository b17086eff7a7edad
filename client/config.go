package client

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// Defaults of Config.
const (
	DefaultSignedPreKeyRotation = 7 * 24 * time.Hour
	DefaultSignedPreKeyGrace    = 14 * 24 * time.Hour
	DefaultOneTimeKeyTarget     = 100
	DefaultCallTimeout          = 15 * time.Second
	DefaultIdle                 = time.Second

	// maxOneTimeKeysPerUpload and maxOneTimeKeysStored are the node's
	// default bounds (valise.DefaultMaxOneTimeKeysPerUpload and
	// valise.DefaultMaxOneTimeKeysStored).
	maxOneTimeKeysPerUpload = 100
	maxOneTimeKeysStored    = 500
)

// Config says where the node is and where the device keeps its state. Zero
// fields take the documented defaults. Login stores Server, ServerName and
// RootCAsPEM in the state, so Open needs only StateDir (and Passphrase when
// the secrets are sealed).
type Config struct {
	// Server is the HOST:PORT of the home node's client listener. Open
	// defaults it to the one saved at Login.
	Server string
	// ServerName is the name expected in the node's certificate; default
	// the host of Server (or the one saved at Login).
	ServerName string
	// RootCAs are the CAs trusted for the node. When nil, RootCAsPEM is
	// used, then the PEM saved at Login, then the system's roots.
	RootCAs *x509.CertPool
	// RootCAsPEM are PEM certificates trusted for the node; Login saves
	// them in the state so that later Opens trust the same CAs.
	RootCAsPEM []byte
	// StateDir is the device's state directory, created with mode 0700.
	StateDir string
	// Passphrase, when set, seals the secrets at rest (secrets.enc). A
	// state created with a passphrase cannot be opened without it, and one
	// created without cannot be opened with one.
	Passphrase []byte
	// KDF is the argon2id cost of the passphrase; zero fields take the
	// defaults (t=3, 64 MiB, p=2). Tests lower it.
	KDF KDFParams
	// Now is the clock; default time.Now.
	Now func() time.Time
	// SignedPreKeyRotation is how old the signed prekey may grow before
	// Maintain replaces it (default 7 days).
	SignedPreKeyRotation time.Duration
	// SignedPreKeyGrace is how long a replaced signed prekey still opens
	// envelopes (default 14 days).
	SignedPreKeyGrace time.Duration
	// OneTimeKeyTarget is the stock of one-time prekeys Maintain keeps on
	// the node; it tops up to the target when the stock falls below half
	// (default 100, at most 500, the node's limit).
	OneTimeKeyTarget int
	// CallTimeout bounds each unary call to the node (default 15s).
	CallTimeout time.Duration
	// DirectoryTTL, when set, lets Send reuse the node's answer about a
	// user's devices (their identity keys and signed prekeys) for this
	// long instead of asking before every message, and not ask again for
	// a one-time prekey the node refused as rate limited until the retry
	// delay it answered passes (the signed prekey is used meanwhile, as
	// it would be). Pins are still checked and every prekey signature
	// verified on each Send; a new device or a changed key shows up in
	// Send at most DirectoryTTL late; any failed send forgets the cached
	// answers, and so does Verify. A cached answer that disagrees with
	// the pins is asked again before a key change is reported or
	// accepted. Default 0: every Send asks the node. At most
	// MaxDirectoryTTL. For busy senders such as the valise-bench load
	// generator.
	DirectoryTTL time.Duration
	// SkipMaintain makes Open skip Maintain, for local-only use such as
	// reading the history while the node is unreachable.
	SkipMaintain bool
	// Logger receives debug and info records; default: discarded.
	Logger *slog.Logger
	// DialOptions are extra gRPC dial options (tests, custom dialers). The
	// transport credentials are always TLS 1.3 and cannot be overridden.
	DialOptions []grpc.DialOption
}

// LogValue implements slog.LogValuer; it never shows the passphrase.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("server", c.Server),
		slog.String("server_name", c.ServerName),
		slog.String("state_dir", c.StateDir),
		slog.Bool("passphrase", len(c.Passphrase) > 0),
	)
}

// String describes c without its passphrase.
func (c Config) String() string {
	return fmt.Sprintf("client.Config{Server:%q StateDir:%q Passphrase:%v}", c.Server, c.StateDir, len(c.Passphrase) > 0)
}

// withDefaults returns c with its zero fields set and checks it.
func (c Config) withDefaults() (Config, error) {
	if c.StateDir == "" {
		return c, errors.New("client: Config.StateDir is required")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SignedPreKeyRotation <= 0 {
		c.SignedPreKeyRotation = DefaultSignedPreKeyRotation
	}
	if c.SignedPreKeyGrace <= 0 {
		c.SignedPreKeyGrace = DefaultSignedPreKeyGrace
	}
	if c.OneTimeKeyTarget <= 0 {
		c.OneTimeKeyTarget = DefaultOneTimeKeyTarget
	}
	if c.OneTimeKeyTarget > maxOneTimeKeysStored {
		return c, fmt.Errorf("client: Config.OneTimeKeyTarget %d is above the node's limit of %d", c.OneTimeKeyTarget, maxOneTimeKeysStored)
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.DirectoryTTL < 0 || c.DirectoryTTL > MaxDirectoryTTL {
		return c, fmt.Errorf("client: Config.DirectoryTTL %v is out of range (0 to %v)", c.DirectoryTTL, MaxDirectoryTTL)
	}
	c.KDF = c.KDF.withDefaults()
	if k := c.KDF; k.Time > maxKDFTime || k.MemoryKiB > maxKDFMemoryKiB || k.Threads > maxKDFThreads || k.MemoryKiB < 8*uint32(k.Threads) {
		// Secrets sealed with such parameters would never open again.
		return c, fmt.Errorf("client: Config.KDF out of range (time at most %d, memory %d KiB to %d KiB, threads at most %d)",
			maxKDFTime, 8*uint32(k.Threads), maxKDFMemoryKiB, maxKDFThreads)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}

// serverName returns the TLS name to verify: ServerName, else the host of
// Server.
func serverName(server, name string) (string, error) {
	if name != "" {
		return name, nil
	}
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		return "", fmt.Errorf("client: server %q must be HOST:PORT: %w", server, err)
	}
	return strings.Trim(host, "[]"), nil
}
