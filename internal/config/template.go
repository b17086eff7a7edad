package config

import (
	"bytes"
	"encoding/json"
	"regexp"
	"text/template"
)

// FileParams are the values `valised init` writes into a new config file;
// every other key gets its default.
type FileParams struct {
	Name           string
	Client         string
	Federation     string
	Metrics        string
	Health         string
	Driver         string
	PostgresDSNRef string
}

// Render returns a commented config file for p. Every key is present with
// its documentation, so the file is its own reference.
func Render(p FileParams) ([]byte, error) {
	var b bytes.Buffer
	if err := fileTemplate.Execute(&b, p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// plainScalar matches the values written without quotes: host names,
// IPv4 addresses and ports.
var plainScalar = regexp.MustCompile(`^[A-Za-z0-9._-]+(:[0-9]+)?$`)

// scalar renders s as a YAML scalar that decodes back to s: plain when it
// is safe, double-quoted otherwise ("" for the empty string, which a bare
// value would turn into null and so into the default; an IPv6 address such
// as [::1]:7443, which YAML would read as a list).
func scalar(s string) string {
	if plainScalar.MatchString(s) {
		return s
	}
	b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted scalar
	return string(b)
}

var fileTemplate = template.Must(template.New("valised.yaml").Funcs(template.FuncMap{"scalar": scalar}).Parse(`# valised configuration. Relative paths are relative to the data directory
# (the directory holding this file). Durations are strings such as "30s".
# Precedence: defaults < this file < environment (VALISE_*).

node:
  # The node's federation name (a DNS name). Users are localpart@name. The
  # node certificate's SAN must equal it.
  name: {{.Name}}
  # The node's Ed25519 signing key (PKCS #8 PEM, mode 0600).
  signing_key_file: signing.key

listen:
  # ClientService over TLS 1.3 (gRPC health and reflection are served here
  # too). Env: VALISE_CLIENT_ADDR.
  client: {{scalar .Client}}
  # Federation listener (mutual TLS 1.3; only listed, unblocked peers
  # proven by their own CA): FederationService and gRPC health.
  federation: {{scalar .Federation}}
  # Prometheus metrics over plain HTTP at /metrics; "" turns it off.
  # Env: VALISE_METRICS_ADDR.
  metrics: {{scalar .Metrics}}
  # AdminService unix socket for valisectl (mode 0600; only this user and
  # root may connect).
  admin_socket: admin.sock
  # If set (HOST:PORT), the AdminService is also served over mutual TLS to
  # admin certificates issued by this node's CA (see admin.crt).
  admin_remote: ""
  # Plaintext gRPC health listener for container and Kubernetes probes
  # (HOST:PORT; "" turns it off). It serves only grpc.health.v1.Health:
  # service "" is SERVING while the node serves, "valise.ready" only while
  # the database answers. Env: VALISE_HEALTH_ADDR.
  health: {{scalar .Health}}

tls:
  # The organization's CA certificate: clients and peers trust it, and it
  # verifies admin client certificates.
  ca_file: ca.crt
  # The node's certificate (SAN = node.name) and private key (mode 0600).
  cert_file: node.crt
  key_file: node.key

storage:
  # sqlite (embedded, one node) or postgres (production, several replicas).
  driver: {{.Driver}}
  sqlite:
    # The database file; WAL mode with full fsync on commit.
    path: valise.db
  postgres:
    # A file holding the connection string (mode 0600). Env
    # VALISE_POSTGRES_DSN overrides it.
    dsn_file: "{{.PostgresDSNRef}}"

limits:
  # Largest envelope ciphertext, in bytes.
  max_ciphertext_bytes: 262144
  # Most envelopes in one SendEnvelopes call.
  max_recipients: 1000
  # Most one-time prekeys in one PublishDeviceKeys call.
  max_one_time_keys_per_upload: 100
  # Most unclaimed one-time prekeys stored per device.
  max_one_time_keys_stored: 500
  # Most open StreamInbox streams per device.
  max_streams_per_device: 4
  # Token buckets: burst requests at once, then per_second on average.
  # SendEnvelopes calls per device.
  send:
    burst: 60
    per_second: 20
  # Login attempts per client address and, separately, per account.
  login:
    burst: 5
    per_second: 0.2
  # Failed logins per account (one per minute after the burst).
  login_failure:
    burst: 3
    per_second: 0.016666666666666666
  # One-time key claims per (caller device, target device): one per 10 min.
  claim:
    burst: 6
    per_second: 0.0016666666666666668
  # Key lookups and one-time key claims on other nodes per device.
  remote_lookup:
    burst: 30
    per_second: 2
  # How long a send's idempotency record is kept: a retry with the same key
  # within it gets the first answer and stores nothing; after it, the retry
  # is a new send. Older records are pruned every hour.
  idempotency_retention: 720h0m0s

federation:
  # How long an envelope for another node is retried before it is
  # dead-lettered and the sending device gets a delivery-failure notice.
  outbox_ttl: 720h0m0s
  # How long the ids of envelopes peers delivered (deduplication), their
  # transactions' answers and dead letters are kept; at least outbox_ttl.
  # A peer's envelope older than this is refused as expired.
  retention: 744h0m0s
  # Most envelopes and ciphertext bytes in one transaction, sent or received.
  batch_envelopes: 100
  batch_bytes: 4194304
  # Retry delay after a failed delivery: doubling from backoff_min to
  # backoff_max, ±20 % jitter; reset when the peer contacts this node.
  backoff_min: 1s
  backoff_max: 5m0s
  # Largest request on the federation listener, in bytes.
  max_recv_msg_bytes: 5242880
  # Per peer: all calls (token bucket), calls in flight, key lookups and
  # one-time key claims.
  peer_rate:
    burst: 200
    per_second: 100
  peer_concurrency: 16
  key_query_rate:
    burst: 100
    per_second: 20
  peer_claim_rate:
    burst: 100
    per_second: 10
  # Peers declared here are added to the peer list at start (or their
  # address and CA bundle updated); valisectl peer add/block/remove manage
  # the same list at run time. Federation is closed: only listed, unblocked
  # peers deliver to or receive from this node. Example:
  #   peers:
  #     - name: b.example
  #       address: b.example:7444
  #       ca_bundle_file: peers/b.example-ca.pem
  peers: []

grpc:
  # Largest request message, in bytes (a whole SendEnvelopes call).
  max_recv_msg_bytes: 1048576
  # Concurrent streams per HTTP/2 connection.
  max_concurrent_streams: 100
  # Largest request header list, in bytes.
  max_header_list_bytes: 8192
  # Time allowed for a new connection's TLS handshake.
  connection_timeout: 10s
  # The server pings an idle connection after keepalive_time and closes it
  # if no answer comes within keepalive_timeout.
  keepalive_time: 1m0s
  keepalive_timeout: 20s
  # Clients may ping at most this often (also with no active stream).
  keepalive_min_time: 30s
  # Connections are closed after this age (streams get the grace period),
  # so rotated certificates take effect.
  max_connection_age: 1h0m0s
  max_connection_age_grace: 30s
  # Deadline of every unary call.
  unary_timeout: 10s

password:
  # argon2id cost: passes, memory in KiB, lanes.
  argon2_time: 3
  argon2_memory_kib: 65536
  argon2_threads: 2

log:
  # debug, info, warn or error. Env: VALISE_LOG_LEVEL.
  level: info
  # json or text. Env: VALISE_LOG_FORMAT.
  format: json

# How long a graceful stop (SIGTERM) may take before connections are cut.
shutdown_timeout: 20s
`))
