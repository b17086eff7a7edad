package main

// usage is the help text; docs/ops/valise-bench.md has the details.
const usage = `usage: valise-bench SCENARIO [flags]

Measures Valise end to end through the client SDK (real encryption, TLS
and databases). It starts its own valised nodes on loopback (or targets
running ones), counts every envelope, and exits 1 when any is lost or
duplicated.

Scenarios:
  local      --senders devices -> --receivers devices on one node
  federated  senders on node 1, receivers on node 2, across mTLS
  fanout     one sender -> a group of --group devices over --nodes nodes
  offline    --queued envelopes for an offline device, then it connects
  idle       --devices connected, streaming devices: node RSS per device
  all        each of the above in turn

Flags:
  --backend sqlite|postgres   storage of the started nodes (sqlite)
  --postgres DSN              PostgreSQL server for --backend postgres
  --valised PATH              valised binary (beside valise-bench, else PATH)
  --target SPEC               running node: client=HOST:PORT,ca=FILE,
                              admin=SOCKET,name=NODE[,pid=PID][,metrics=HOST:PORT]
                              (repeat; federated needs 2, fanout --nodes)
  --senders N (4)  --receivers N (4)  --group N (8)  --nodes N (3)
  --queued N (10000)  --devices N (1000)
  --concurrency N (16)        sends in flight (closed loop); workers with --rate
  --rate R (0)                open loop at R envelopes/s; 0 is closed loop
  --duration D (10s)          how long to send
  --count N (0)               stop after N envelopes (0: --duration only)
  --size B (1024)             message body bytes per envelope
  --drain D (1m)              wait for the last envelopes after sending
  --warmup (true)             one unmeasured envelope per pair first
  --json                      one JSON object per scenario on stdout
  --progress D (2s)           progress line interval on stderr (0: off)
  --workdir DIR  --keep       where node data and device state go; keep it
  --one-time-keys N (10)      one-time prekeys each device publishes
  --directory-ttl D (1m)      sender's key directory cache (0: none)
  --login-concurrency N (16)  devices created at once
  --cpuprofile FILE           CPU profile of valise-bench itself
`
