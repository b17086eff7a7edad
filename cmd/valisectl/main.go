// Command valisectl administers a Valise node: it creates, lists,
// deactivates and reactivates users, resets passwords, lists and revokes
// devices, reads the audit log, manages federation peers and backs up a
// SQLite node's database, all through the node's AdminService.
//
// It speaks to the node over the admin unix socket in the node's data
// directory (DIR/admin.sock, guarded by file mode and peer credentials) or,
// with --addr, over mutual TLS 1.3 with an admin client certificate.
// Passwords are read from stdin (--password-stdin), never from arguments.
// Run "valisectl help" for the commands and flags.
//
// Exit status is 0 on success, 1 when a call fails and 2 on a usage error.
//
// Package main is only the command line: every action is one AdminService
// call.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
