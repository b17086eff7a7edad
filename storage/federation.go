package storage

import (
	"context"
	"time"

	"github.com/valise-im/valise"
)

// Federation stores what relaying envelopes between nodes needs: the
// outbox of envelopes for other nodes (filled by CommitBatch), the lease
// that lets one process at a time work a destination, dead letters, each
// destination's delivery state, the record of what other nodes delivered
// here (for deduplication and transaction replay), and the signing keys
// pinned per peer.
type Federation interface {
	// OutboxStats returns, for every destination with queued envelopes,
	// how many wait and the ServerTime of the first in Seq order, ordered
	// by destination. It reads the (destination, seq) index, not the
	// envelopes.
	OutboxStats(ctx context.Context) ([]OutboxStat, error)
	// AcquireOutboxLease gives owner the lease on dest's outbox until
	// until, if no other owner holds a lease that is unexpired at now;
	// an owner that holds it renews it. It reports whether owner holds the
	// lease when it returns.
	AcquireOutboxLease(ctx context.Context, dest valise.NodeName, owner string, now, until time.Time) (bool, error)
	// ReleaseOutboxLease gives up owner's lease on dest, if owner holds it.
	ReleaseOutboxLease(ctx context.Context, dest valise.NodeName, owner string) error
	// ReadOutbox returns dest's oldest queued envelopes in Seq order,
	// leaving out those whose Seq is in skip (a batch still in flight): at
	// most limit envelopes and, after the first, at most maxBytes of
	// ciphertext in all (the first is returned whatever its size). skip
	// holds at most a batch's worth of Seqs; ReadOutbox does not keep it.
	ReadOutbox(ctx context.Context, dest valise.NodeName, limit, maxBytes int, skip []int64) ([]OutboxEnvelope, error)
	// FinishOutbox applies outcomes to dest's queued envelopes in one
	// transaction, if owner still holds dest's lease at now (otherwise it
	// writes nothing and returns ErrPrecondition). A delivered envelope is
	// deleted. A dead-lettered one is deleted, recorded as a DeadLetter
	// (without its ciphertext), and a delivery-failure notice (an inbox
	// envelope with a fresh id, ServerTime now and Failure set) is appended
	// to its sending device's inbox if that device still exists. Any other
	// has its Attempt incremented. Outcomes naming envelopes no longer
	// queued are ignored. It returns the inbox rows written for notices.
	FinishOutbox(ctx context.Context, dest valise.NodeName, owner string, now time.Time, outcomes []OutboxOutcome) ([]Delivery, error)
	// ListDeadLetters returns up to limit dead letters of dest (every
	// destination if dest is "") with Seq > after, in Seq order.
	ListDeadLetters(ctx context.Context, dest valise.NodeName, after int64, limit int) ([]DeadLetter, error)

	// GetDeliveryState returns dest's delivery state; the zero state if
	// none was recorded.
	GetDeliveryState(ctx context.Context, dest valise.NodeName) (DeliveryState, error)
	// SetDeliveryState records dest's delivery state, replacing any.
	SetDeliveryState(ctx context.Context, dest valise.NodeName, st DeliveryState) error

	// ReceiveTransaction commits one transaction delivered by another node
	// (see InboundTransaction) in one database transaction and returns its
	// answer. If (Origin, ID) was committed before, it returns that first
	// answer with Replayed set and stores nothing. Otherwise every envelope
	// whose Status is InboundPending is judged in order: one whose (Origin,
	// ID) was accepted before, or earlier in this transaction, is
	// InboundDuplicate; an unknown recipient user or device is
	// InboundUnknownRecipient; a deactivated recipient user is
	// InboundRecipientDeactivated; any other is appended to its recipient
	// device's inbox (consecutive cursors, request order), (Origin, ID) is
	// recorded, and it is InboundAccepted. Envelopes given another Status
	// by the caller keep it and are not stored. The answer is recorded
	// under (Origin, ID) with time Received. Concurrent calls with the same
	// (Origin, ID) or envelope ids never store an envelope twice.
	ReceiveTransaction(ctx context.Context, tx *InboundTransaction) (*InboundResult, error)
	// PruneFederation deletes received-envelope records, transaction
	// answers and dead letters recorded before before and returns how many
	// rows it deleted.
	PruneFederation(ctx context.Context, before time.Time) (int64, error)

	// PinnedSigningKeys returns the signing keys pinned for node, ordered
	// by ValidFrom then KeyID.
	PinnedSigningKeys(ctx context.Context, node valise.NodeName) ([]SigningKey, error)
	// PinSigningKeys pins the keys of node not pinned yet. If a key id is
	// pinned already with another public key it writes nothing and returns
	// ErrConflict; pinning the same key again is not an error.
	PinSigningKeys(ctx context.Context, node valise.NodeName, keys []SigningKey) error
}

// OutboxStat describes one destination's queue.
type OutboxStat struct {
	Destination valise.NodeName
	Depth       int64
	Oldest      time.Time // ServerTime of the first queued envelope, in Seq order
}

// OutboxEnvelope is one queued envelope for another node.
type OutboxEnvelope struct {
	// Seq orders the outbox: it increases in commit order (and request
	// order within a send), across all destinations.
	Seq             int64
	ID              valise.EnvelopeID
	Destination     valise.NodeName
	Sender          string // localpart of the sending user
	SenderDevice    valise.DeviceID
	Recipient       string // localpart at Destination
	RecipientDevice valise.DeviceID
	ServerTime      time.Time
	ExpireTime      time.Time
	Ciphertext      []byte
	// Attempt counts the retryable answers the destination gave this
	// envelope; it starts at 0.
	Attempt int
}

// OutboxOutcome is what became of one queued envelope (by Seq). At most
// one of Delivered and DeadLetter is set; neither means "retry later". A
// FinishOutbox call names each Seq at most once.
type OutboxOutcome struct {
	Seq       int64
	Delivered bool
	// DeadLetter, when not empty, gives the envelope up for this reason.
	DeadLetter valise.FailureReason
}

// DeadLetter is an envelope given up for good, kept without its
// ciphertext for the admin.
type DeadLetter struct {
	Seq             int64 // numbered from 1 in the order they were given up
	ID              valise.EnvelopeID
	Destination     valise.NodeName
	Sender          string
	SenderDevice    valise.DeviceID
	Recipient       string
	RecipientDevice valise.DeviceID
	ServerTime      time.Time // when the envelope was sent
	Reason          valise.FailureReason
	Time            time.Time // when it was given up
}

// DeliveryState is what a node remembers of its deliveries to one
// destination, so that backoff survives restarts and admins can see it.
type DeliveryState struct {
	LastSuccess time.Time // zero if none
	LastError   string    // "" if the last attempt succeeded; never secret
	LastErrorAt time.Time
	// Failures counts consecutive failed attempts; 0 after a success.
	Failures int
	// NextAttempt is when the sender tries again; zero means at once.
	NextAttempt time.Time
}

// InboundStatus is the verdict on one envelope delivered by another node.
// The values match valise.federation.v1.EnvelopeStatus.
type InboundStatus int

// Verdicts on an inbound envelope.
const (
	InboundPending              InboundStatus = 0 // to be judged by ReceiveTransaction
	InboundAccepted             InboundStatus = 1
	InboundDuplicate            InboundStatus = 2
	InboundUnknownRecipient     InboundStatus = 3
	InboundRecipientDeactivated InboundStatus = 4
	InboundTooLarge             InboundStatus = 5
	InboundInvalid              InboundStatus = 6
	InboundExpired              InboundStatus = 7
)

// InboundTransaction is one DeliverTransaction from another node.
type InboundTransaction struct {
	Origin valise.NodeName
	// ID names the transaction among the origin's: at most 256 bytes
	// (the federation service stores the origin's id bound to a digest of
	// the envelope ids).
	ID       string
	Received time.Time
	// Envelopes, in request order.
	Envelopes []InboundEnvelope
}

// InboundEnvelope is one envelope of an InboundTransaction.
type InboundEnvelope struct {
	ID valise.EnvelopeID
	// Sender is a user of the transaction's origin.
	Sender       valise.UserID
	SenderDevice valise.DeviceID
	// Recipient is the localpart of a user of this node.
	Recipient       string
	RecipientDevice valise.DeviceID
	// OriginTime is when the origin accepted the envelope; it becomes the
	// inbox envelope's ServerTime.
	OriginTime time.Time
	Ciphertext []byte
	// Status is InboundPending, or a verdict the caller already reached
	// (the envelope is then not stored).
	Status InboundStatus
}

// InboundResult is the answer to an InboundTransaction.
type InboundResult struct {
	// Statuses has one verdict per envelope, in request order, never
	// InboundPending.
	Statuses []InboundStatus
	// Replayed is true when the transaction had been committed before:
	// Statuses is that first answer and nothing was stored.
	Replayed bool
	// Deliveries lists the inbox rows written.
	Deliveries []Delivery
}

// SigningKey is one Ed25519 signing key of a node.
type SigningKey struct {
	KeyID      string
	PublicKey  []byte // 32 bytes
	ValidFrom  time.Time
	ValidUntil time.Time
}
