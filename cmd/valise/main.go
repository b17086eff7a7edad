// Command valise is the reference end-user client of Valise: it logs a
// device in to its home node, sends and receives end-to-end encrypted
// messages, keeps a local history, and shows and verifies the identity
// keys of the devices it talks to. It is a thin command line over the
// client package.
//
// The device's state lives in a directory (--state, default $VALISE_STATE,
// else ~/.valise) with mode 0700; with --passphrase-file the private keys
// are sealed at rest with a key derived from the passphrase. Passwords are
// read from stdin (--password-stdin) or typed at a terminal prompt, never
// taken from arguments. Every command but login and help tops up the
// device's one-time prekeys and rotates its signed prekey when due.
// Run "valise help" for the commands and flags.
//
// Exit status is 0 on success, 1 when a command fails and 2 on a usage
// error.
//
// Package main is only the command line over the client SDK (package
// client).
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
