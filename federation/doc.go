// Package federation connects this node to its peers, as specified by
// valise.federation.v1.FederationService (proto/valise/federation/v1).
//
// It owns:
//
//   - peer trust (Trust): which nodes are peers, which CAs certify each
//     peer's name, their addresses, and the TLS configurations that
//     enforce all of it on both ends of a connection;
//   - the inbound Service: DeliverTransaction (checks that the
//     certificate proves the origin and that every sender is the
//     origin's, bounds the batch, judges each envelope, and commits
//     accepted envelopes, deduplication records and the answer in one
//     store transaction), the signed QueryDeviceKeys and ClaimOneTimeKey
//     answers, and GetSigningKeys, behind per-peer rate and concurrency
//     limits (UnaryInterceptor);
//   - the Signer of those answers (one Ed25519 key; rotation is not
//     implemented yet);
//   - the Outbound side: one sender per destination draining the durable
//     outbox in order, one transaction at a time, under a lease so that
//     replicas sharing a store never send the same batch, with backoff
//     that survives restarts and dead letters (with a notice to the
//     sending device) for what can never be delivered; and the lookups of
//     remote users' keys, accepted only when signed by the peer's pinned
//     signing key. Outbound implements the client-facing server's Remote
//     interface without importing server.
//
// It imports storage, the proto packages, the domain package and
// internal/ratelimit, never server; cmd/valised wires the two together.
package federation
