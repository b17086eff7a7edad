// Command valised is the Valise homeserver daemon.
//
//	valised init  --data DIR --name NODE [--client-addr HOST:PORT] [--federation-addr HOST:PORT]
//	              [--metrics-addr HOST:PORT] [--health-addr HOST:PORT] [--postgres DSN] [--json]
//	valised serve --data DIR
//	valised serve --dev [--data DIR]
//	valised check --data DIR
//	valised health [--data DIR | --addr HOST:PORT] [--service NAME] [--timeout 3s]
//	valised restore --data DIR --from FILE [--force]
//	valised migrate --data DIR [--check]
//
// init creates a node's data directory (config, CA, certificates, keys);
// serve runs the node until SIGTERM or SIGINT; serve --dev creates a
// loopback-only development node in ./valise-dev on first start and reuses
// it afterwards; check validates a node's configuration and the
// certificates and keys it names (each must parse, match, name the node,
// verify against the CA and be valid; a certificate ending within 14 days
// is a warning) and reports every problem with its config path. serve
// refuses to start on anything check reports as a problem.
//
// health asks a node's gRPC health service whether it serves, for
// container health checks and probes: it exits 0 when the answer is
// SERVING, 1 otherwise (with a one-line reason on stderr) and 2 on a usage
// error. With --addr it probes a plaintext health listener (listen.health);
// with --data it reads the node's config and probes listen.health if set,
// else the client listener over TLS 1.3 trusting the data directory's CA
// with the node name as server name. --service "" (the default) asks
// whether the node serves, --service valise.ready whether its database
// answers (served on listen.health only); --timeout bounds the probe
// (default 3s).
//
// restore puts a backup made by "valisectl backup" back as a stopped
// SQLite node's database (checked, written atomically, a replaced database
// kept as a .bak with --force); migrate applies the schema migrations the
// node's database lacks, or with --check lists them and exits 3 if there
// are any (serve applies them too, at start). See docs/ops/backups.md.
//
// Package main wires the daemon's parts (config, storage backend, server,
// listeners) and holds the end-to-end tests that run real nodes.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one gets the default action:
		// the process ends at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage:
  valised init  --data DIR --name NODE [--client-addr HOST:PORT] [--federation-addr HOST:PORT]
                [--metrics-addr HOST:PORT] [--health-addr HOST:PORT] [--postgres DSN] [--json]
  valised serve --data DIR
  valised serve --dev [--data DIR]       (default DIR: ./valise-dev)
  valised check --data DIR
  valised health [--data DIR | --addr HOST:PORT] [--service NAME] [--timeout 3s]
                                         (exit 0 SERVING, 1 not, 2 usage)
  valised restore --data DIR --from FILE [--force]
  valised migrate --data DIR [--check]   (--check exits 3 when migrations would run)
`

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "init":
		err = cmdInit(args[1:], stdout, stderr)
	case "serve":
		err = cmdServe(ctx, args[1:], stdout, stderr)
	case "check":
		err = cmdCheck(args[1:], stdout, stderr)
	case "health":
		err = cmdHealth(ctx, args[1:], stdout, stderr)
	case "restore":
		err = cmdRestore(ctx, args[1:], stdout, stderr)
	case "migrate":
		err = cmdMigrate(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "valised: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if err == errUsage {
			return 2
		}
		if err == errPending {
			return exitPending
		}
		fmt.Fprintf(stderr, "valised: %v\n", err)
		return 1
	}
	return 0
}
