package main

// usageText is printed by "valise help" and -h. A test checks that it
// names every command and flag.
const usageText = `Usage: valise [global flags] COMMAND [flags] [args]

valise sends and receives end-to-end encrypted messages through a Valise
node. Messages are sealed on this device for every device of the
recipient (and your own other devices); the node only relays ciphertext.

Commands:
  login --server HOST:PORT --user USER [--ca FILE] [--server-name NAME]
        [--device-name NAME] [--password-stdin]
        Log in as a new device, generate its keys and publish them. The
        password is typed at a prompt, or read from the first line of stdin
        with --password-stdin.
  send USER [TEXT...] [--accept-changed-keys]
        Seal TEXT (or stdin) for every device of USER and your other
        devices, and send it. Refuses a device whose identity key changed
        unless --accept-changed-keys.
  recv [--follow] [--timeout DURATION] [--json]
        Receive, open and verify new messages, store them in the history,
        and print them. Without --follow, stop once the inbox is drained.
  history [USER] [--json]
        Print the stored messages (of the conversation with USER).
  devices [USER]
        List the devices of USER (default: yours) and the trust in each.
  fingerprint USER
        Print the safety number over USER's device identity keys; compare
        it with USER over a trusted channel.
  verify USER FINGERPRINT...
        Mark USER's current devices verified if FINGERPRINT (one quoted
        argument or its groups as separate arguments) matches.
  logout
        Revoke this device on the node and delete its local keys (the
        history and the pins stay).
  help
        Print this help.

USER is localpart@node, or a bare localpart on your own node. Passwords
are never accepted as arguments.

Global flags (before or after the command):
  --state DIR             state directory (default $VALISE_STATE, else ~/.valise)
  --passphrase-file FILE  file holding the passphrase that seals the private
                          keys at rest (required later if used at login)
  --verbose               log the client's activity to stderr

Command flags:
  --server HOST:PORT      the home node's client listener (login)
  --user USER             the user to log in as (login)
  --ca FILE               CA certificates that verify the node, PEM (login;
                          default: the system's roots); saved in the state
  --server-name NAME      name in the node's certificate (login; default:
                          the host of --server)
  --device-name NAME      display name of the new device (login)
  --password-stdin        read the password from the first line of stdin (login)
  --accept-changed-keys   send even to devices whose identity key changed,
                          pinning the new keys (send)
  --follow                keep receiving until interrupted (recv)
  --timeout DURATION      stop receiving after DURATION (recv)
  --json                  print one JSON object per message (recv, history)

Warnings about identity keys (a changed key, a new device of a verified
user, a message that does not verify) are printed to stderr starting with
"WARNING:".

Exit status: 0 on success, 1 when a command fails, 2 on a usage error.
`
