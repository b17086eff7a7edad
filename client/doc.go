// Package client is the Go SDK a Valise client embeds: it logs a device in
// to its home node, keeps the device's keys (an Ed25519 identity key, a
// rotating signed prekey and a stock of one-time prekeys, all from
// client/e2ee), pins the identity keys of the devices it talks to (trust on
// first use, with explicit verification by safety number), and seals and
// opens envelopes end to end over the node's ClientService.
//
// A Client keeps its state in a directory (Config.StateDir, mode 0700):
//
//	state.json     public state: node, user, device, inbox cursor, pins (0600)
//	secrets.json   identity seed, access token, prekey private keys (0600), or
//	secrets.enc    the same, sealed with a key derived from Config.Passphrase
//	               by argon2id (XChaCha20-Poly1305); never written in the clear
//	history.jsonl  opened and sent messages, one JSON object a line (0600)
//	seen           ids of the messages received, with when they were seen,
//	               to drop replays; kept for the signed prekeys' lifetime
//	               plus grace (see docs/E2EE.md, "Replays") (0600)
//
// Every write is atomic (a temporary file, fsync, rename, fsync of the
// directory) or an fsynced append, and every read-modify-write holds an
// advisory lock on the directory, so several processes (a "recv --follow"
// and a "send") may share one state directory. Only one Receive runs at a
// time per directory.
//
// Receive handles the envelopes that arrive together (up to 64) as one
// batch: each is opened against one snapshot of the state, then all are
// stored in one update (one sync of the history, the seen ids and the
// state) before the handler sees them. A stored message is never passed
// to the handler again: when the handler returns an error, or the process
// crashes after a batch is stored and before the handler ran for all of
// it, the rest of that batch (up to 63 messages) is in the history but
// was not passed to the handler. An application that must process every
// message records, durably, the id (and envelope id) of the last message
// its handler finished with and, before calling Receive, processes the
// received messages (Message.Envelope set) that History stores after it.
// Send asks the node for the
// recipient's keys before every message unless Config.DirectoryTTL lets
// it reuse them for a short time (a load generator's setting, see
// docs/E2EE.md "Key lifecycle"). Idempotent calls (key lookups, device
// lists, sends with their idempotency key, acknowledgements) are repeated
// up to five times after transient errors (Unavailable, DeadlineExceeded,
// Aborted) with backoff, and after ResourceExhausted when the node asks
// to retry within 2 seconds (RetryInfo), after that delay; a longer delay
// is returned to the caller.
//
// Messages carry a small client payload inside the sealed body: a version
// byte, the conversation's recipient user (so that a user's other devices
// file the copy they receive under the right conversation) and the text.
//
// The package imports only the wire (proto), the domain package valise,
// client/e2ee, gRPC, golang.org/x/crypto and the standard library. Who may
// import it: any client, first of all cmd/valise.
package client
