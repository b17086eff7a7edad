package main

// usageText is printed by "valisectl help" and -h. A test checks that it
// names every command and flag.
const usageText = `Usage: valisectl [global flags] COMMAND [SUBCOMMAND] [flags] [args]

valisectl administers a Valise node through its AdminService, over the
node's admin unix socket or, with --addr, over mutual TLS 1.3.

Commands:
  user create NAME --password-stdin
        Create an active user. The password is the first line of stdin.
  user list [--page-size N] [--page-token T] [--all]
        List the node's users, ordered by localpart.
  user show NAME
        Describe a user, with their device count.
  user deactivate NAME
        Revoke every device and token of a user and block their login.
  user reactivate NAME
        Let a deactivated user log in again (with new devices).
  user reset-password NAME --password-stdin
        Set a new password, read from the first line of stdin.
  device list NAME [--page-size N] [--page-token T] [--all]
        List a user's devices, ordered by id.
  device revoke NAME DEVICE
        Revoke one device of a user: its token, keys and inbox.
  audit list [--page-size N] [--page-token T] [--all]
        List the audit log, oldest first; warn if its hash chain fails.
  peer add PEER --address HOST:PORT --ca-bundle FILE
        List another node as a federation peer, reached at HOST:PORT and
        certified by the CA certificates (PEM) in FILE.
  peer list [--page-size N] [--page-token T] [--all]
        List the federation peers, ordered by name, with the state of the
        deliveries to each (idle, delivering, retrying, blocked), envelopes
        queued, the oldest one's age, the last success, the next retry,
        the last error, and the SHA-256 of each trusted CA certificate.
  peer update PEER [--address HOST:PORT] [--ca-bundle FILE]
        Change a peer's address and/or the CA certificates trusted for it
        (the bundle is replaced whole: list old and new CA while the peer
        rotates its CA); deliveries to it are retried at once.
  peer block PEER
        Block a peer: it can neither deliver to this node nor receive.
  peer unblock PEER
        Lift a peer's block.
  peer remove PEER
        Remove a peer from the list; envelopes queued for it are given up
        and their senders told.
  peer retry PEER
        Retry deliveries to a peer now instead of waiting out the backoff.
  backup --out FILE [--force]
        Copy the node's SQLite database while it serves into FILE (mode
        0600), verified against the node's length and SHA-256, written
        atomically; print its size and SHA-256. Refuses to replace FILE
        unless --force. No deadline (--timeout does not apply). A
        PostgreSQL node refuses: use pg_dump. See docs/ops/backups.md.
  help
        Print this help.

NAME is a localpart or localpart@node; PEER is a node name such as
b.example; the node validates both. Federation is closed: only listed,
unblocked peers exchange messages with this node. Passwords are never
accepted as arguments: pipe them in with --password-stdin.

Global flags (before or after the command):
  --data DIR            node data directory; the socket is DIR/admin.sock
                        (default $VALISE_DATA, else ./valise-dev)
  --socket PATH         admin socket path, instead of DIR/admin.sock
  --addr HOST:PORT      remote admin listener, over mutual TLS 1.3
  --cert FILE           admin client certificate, PEM (with --addr)
  --key FILE            admin client private key, PEM (with --addr)
  --ca FILE             CA certificates that verify the node, PEM (with --addr)
  --server-name NAME    name in the node's certificate (default: host of --addr)
  --json                print one JSON object per command instead of a table
  --timeout DURATION    deadline of each call (default 10s)

Command flags:
  --password-stdin      read the password from the first line of stdin
                        (user create, user reset-password; required)
  --page-size N         items per page; 0 means the node's default (100)
  --page-token T        start at this page token (from a previous page)
  --all                 follow next_page_token to the last page
                        (--page-* and --all: user list, device list, audit
                        list, peer list)
  --address HOST:PORT   the peer's federation endpoint (peer add: required;
                        peer update)
  --ca-bundle FILE      PEM CA certificates trusted for the peer's name
                        (peer add: required; peer update; - reads standard
                        input; --ca is the global flag for the admin
                        connection)
  --out FILE            where backup writes the database copy (required)
  --force               let backup replace an existing --out FILE

Exit status: 0 on success, 1 when a call fails, 2 on a usage error.
`
