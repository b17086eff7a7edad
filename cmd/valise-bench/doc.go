// Command valise-bench measures Valise the way users feel it: end to end
// through the client SDK (package client), with real encryption, real TLS
// and real databases. Usage:
//
//	valise-bench SCENARIO [flags]
//
// It starts its own nodes as valised processes on loopback (fresh data
// directories from `valised init`, its own users created through each
// node's admin socket, peers exchanged for federated and fanout), or
// targets running nodes with --target. It counts every envelope: each
// one sent carries its sequence number and a timestamp inside the sealed
// body, read back after the receiving device opened it. Anything lost,
// duplicated or delivered to the wrong device fails the run (exit 1).
//
// # Scenarios
//
//	local      --senders devices send to --receivers devices on one node.
//	federated  Senders on node 1, receivers on node 2, across mTLS.
//	fanout     One sender sends each message to a group of --group devices
//	           spread round robin over --nodes nodes (one envelope each).
//	offline    --senders devices queue --queued envelopes for one device
//	           that is not connected; then it connects and reads them all.
//	           Latencies count from the moment it connects; rate_per_sec is
//	           --queued over the time until the last one was opened.
//	idle       --devices devices log in and follow their inbox; the node's
//	           RSS (from /proc/PID/status), heap in use and goroutines (from
//	           its metrics) are read before they log in and once every stream
//	           is open, and divided by the devices. Then one envelope goes to
//	           each of the first 100 devices, to prove the streams are live.
//	all        Each of the above in turn, each on fresh nodes.
//
// Sender s sends its k-th message to receiver (s + k) mod receivers. With
// --warmup (the default) every sender-receiver pair first carries one
// unmeasured envelope, so that keys are looked up and pinned and streams
// are open before the clock starts.
//
// # Load
//
// Closed loop (the default): --concurrency sends in flight at once, worker
// w sending as sender w mod --senders, each starting its next send when
// the last returned, for --duration (or until --count envelopes). Open
// loop (--rate R): a dispatcher hands out R envelopes per second to a pool
// of --concurrency workers; each envelope is stamped with the time it was
// due, so a queue in front of the workers shows in the latencies.
//
// # Flags
//
//	--backend sqlite|postgres  storage of the nodes it starts (sqlite)
//	--postgres DSN             PostgreSQL server for --backend postgres; a
//	                           role that may create databases: each node
//	                           gets a database valise_bench_<random>, dropped
//	                           at the end
//	--valised PATH             the valised binary; default the one beside
//	                           valise-bench, else the one on PATH
//	--target SPEC              a running node instead of starting one:
//	                           client=HOST:PORT,ca=FILE,admin=SOCKET,name=NODE
//	                           [,pid=PID][,metrics=HOST:PORT]; repeat it for
//	                           federated (2) and fanout (--nodes); see below
//	--senders N                sending devices (4)
//	--receivers N              receiving devices, local and federated (4)
//	--group N                  fanout group size (8)
//	--nodes N                  fanout nodes (3)
//	--queued N                 offline envelopes queued (10000)
//	--devices N                idle devices (1000)
//	--concurrency N            sends in flight, or open-loop workers (16)
//	--rate R                   open loop at R envelopes/s; 0 closed loop (0)
//	--duration D               sending time (10s)
//	--count N                  stop after N envelopes; 0 none (0)
//	--size B                   body bytes sealed per envelope (1024; the
//	                           ciphertext adds the sealing overhead)
//	--drain D                  wait for the last envelopes (1m)
//	--warmup                   warm every pair up first (true)
//	--json                     one JSON object per scenario on stdout
//	--progress D               progress line on stderr every D; 0 off (2s)
//	--workdir DIR              parent of the work directory (node data, node
//	                           logs, device state); default a temporary one
//	--keep                     keep the work directory
//	--one-time-keys N          one-time prekeys each device keeps on its node
//	                           (client Config.OneTimeKeyTarget; 10)
//	--directory-ttl D          how long a sender reuses a user's key
//	                           directory (client Config.DirectoryTTL; 1m; 0
//	                           asks before every message)
//	--login-concurrency N      devices created at once (16)
//	--cpuprofile FILE          CPU profile of valise-bench itself
//
// The nodes it starts keep every default (durability, TLS, size bounds)
// except: cheap argon2 password hashing (password.argon2_time 1,
// argon2_memory_kib 256, argon2_threads 1) so that thousands of devices
// log in quickly; no effective rate limits on logins, sends, key lookups
// and federation transactions (limits.login, login_failure, send,
// remote_lookup, federation.key_query_rate, peer_rate), a peer's RPCs in
// flight up to 1024 (federation.peer_concurrency, default 16: a sender's
// first key lookups across nodes come all at once); federation backoff
// 100ms to 2s. One-time key claims keep their default limit, so senders
// fall back to signed prekeys as real ones do.
//
// Running nodes (--target): the tool creates its users (prefixed with a
// random vb<hex>) through the admin socket and leaves them there. For
// federated and fanout the nodes must already be peers of each other. RSS
// is read only when pid= is given, the heap and goroutines only with
// metrics=.
//
// It raises its open file limit (RLIMIT_NOFILE, soft and hard, as far as
// it may), which the nodes it starts inherit: each idle device holds
// three files in valise-bench (its TLS connection and two lock files) and
// one connection in the node.
//
// # Output
//
// A table at the end on stdout, or with --json one object per scenario:
//
//	scenario, backend        what ran
//	nodes                    nodes used
//	senders, receivers       devices sending and receiving
//	concurrency, rate_target the load (rate_target 0: closed loop)
//	size_bytes               body bytes per envelope
//	sent                     envelopes the node accepted (warm-up included)
//	delivered                of those, opened by the right device
//	lost                     accepted but never opened within --drain
//	duplicated               opened more than once (or dropped by the SDK
//	                         as a replay)
//	unexpected               opened but not sent to that device, or whose
//	                         send failed
//	errors                   failed sends, receive errors, rejected envelopes
//	measured                 delivered envelopes counted in rate and latency
//	                         (warm-up excluded)
//	duration_sec             sending time (offline: connect to last opened)
//	rate_per_sec             measured envelopes delivered per second, from the
//	                         start of sending to the last one opened
//	accepted_per_sec         measured envelopes accepted per second of sending
//	p50_ms, p90_ms, p99_ms, max_ms
//	                         send-to-open latency (offline: connect-to-open)
//	devices                  idle: devices connected
//	rss_before_kib, rss_after_kib
//	                         idle: node RSS before and with the devices
//	rss_per_device_kib       idle: RSS growth per device
//	heap_per_device_kib      idle: heap-in-use growth per device
//	goroutines_per_device    idle: goroutine growth per device
//	open_file_limit          the open file limit in force
//	ok                       every envelope delivered exactly once, no errors
//
// Exit status: 0 when ok, 1 when an envelope was lost, duplicated or
// misdelivered or anything failed, 2 on bad usage. docs/ops/valise-bench.md
// has examples.
//
// Package main is the load generator: it starts (or targets) valised
// processes and drives devices through the client SDK; it imports the
// SDK, the wire, the config package (to write the nodes' configuration)
// and pgtest (to create their PostgreSQL databases), never the server's
// internals.
package main
