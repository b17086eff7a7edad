package server

import (
	"context"

	"github.com/valise-im/valise"
)

// Remote is the federation as the client service sees it: the outbound
// queue's senders and the key lookups on other nodes. The federation
// package implements it; cmd/valised wires it in through Config.Remote.
// Without one, users of other nodes are NotFound.
type Remote interface {
	// CheckDestination returns nil if envelopes may be queued for node (a
	// listed, unblocked peer), or a *valise.Error saying why not.
	CheckDestination(node valise.NodeName) error
	// Queued tells the senders that a commit queued envelopes for dests.
	// It must not block.
	Queued(dests []valise.NodeName)
	// Retry makes the sender for node try again now, ignoring its backoff
	// (the admin's `peer retry`). It must not block.
	Retry(node valise.NodeName)
	// DeviceKeys returns the published keys of every device of a user of
	// another node, as that node signed them.
	DeviceKeys(ctx context.Context, user valise.UserID) ([]valise.DeviceKeys, error)
	// ClaimOneTimeKey claims one one-time prekey of a device of another
	// node for the requesting device of this node (the signed prekey with
	// fallback true when none is left).
	ClaimOneTimeKey(ctx context.Context, requester valise.UserID, requesterDevice valise.DeviceID,
		user valise.UserID, device valise.DeviceID) (valise.PreKey, bool, error)
}
