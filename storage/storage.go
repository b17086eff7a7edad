// Package storage defines the Store that the rest of a Valise node needs:
// small per-aggregate interfaces (Users, Devices, Keys, Inboxes, Audit,
// Peers, Federation) composed into Store, the optional Events of shared stores, the
// records they hold, and the sentinel errors every
// backend returns.
//
// Backends live in storage/sqlite and storage/postgres; their shared
// contract is the suite in storage/storagetest. Writes that must be atomic
// are single methods; no transaction handle leaves a backend. This package
// imports nothing of Valise but the domain vocabulary.
package storage

import (
	"context"
	"errors"
	"time"

	"github.com/valise-im/valise"
)

// Sentinel errors. Backends translate driver errors into these (a unique
// violation becomes ErrConflict) and wrap them with context.
var (
	// ErrNotFound: the named row does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrConflict: the row to create exists already, or a unique value is taken.
	ErrConflict = errors.New("storage: conflict")
	// ErrPrecondition: the row exists but is not in a state that allows the
	// write (e.g. the user is deactivated).
	ErrPrecondition = errors.New("storage: precondition failed")
)

// Store is everything a node keeps. Implementations are safe for concurrent
// use by many goroutines. Every method honours ctx cancellation. Byte slices
// passed in are not retained after the call returns; slices returned belong
// to the caller.
type Store interface {
	Users
	Devices
	Keys
	Inboxes
	Audit
	Peers
	Federation
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the store's resources. Calls after Close fail.
	Close() error
}

// User is a local account. Users are named by their localpart; the node's
// name completes the UserID.
type User struct {
	Localpart    string
	PasswordHash string // an encoded argon2id hash; never logged
	Active       bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Users stores accounts.
type Users interface {
	// CreateUser creates u (Active as given) and appends audit, if not nil, in
	// the same transaction. ErrConflict if the localpart is taken.
	CreateUser(ctx context.Context, u User, audit *AuditRecord) error
	// GetUser returns the user. ErrNotFound if there is none.
	GetUser(ctx context.Context, localpart string) (User, error)
	// ListUsers returns up to limit users ordered by localpart, starting
	// after the localpart after ("" for the first page).
	ListUsers(ctx context.Context, after string, limit int) ([]User, error)
	// SetUserActive activates or deactivates a user. Deactivation deletes
	// every device of the user with its token, keys and inbox, in the same
	// transaction as audit. ErrNotFound if the user does not exist; setting
	// the state the user already has succeeds and still records audit.
	SetUserActive(ctx context.Context, localpart string, active bool, audit *AuditRecord) error
	// SetPasswordHash replaces the user's password hash. ErrNotFound if the
	// user does not exist.
	SetPasswordHash(ctx context.Context, localpart, hash string, audit *AuditRecord) error
}

// Device is one login of a user. A device has exactly one access token,
// stored only as its SHA-256 hash.
type Device struct {
	User        string // localpart
	ID          valise.DeviceID
	DisplayName string
	CreatedAt   time.Time
	// HasKeys reports whether the device has published its identity key.
	HasKeys bool
}

// Devices stores devices and their access tokens.
type Devices interface {
	// CreateDevice creates d with the token whose SHA-256 is tokenHash.
	// ErrNotFound if the user does not exist, ErrPrecondition if the user is
	// deactivated, ErrConflict if the device id or token hash is taken.
	CreateDevice(ctx context.Context, d Device, tokenHash []byte) error
	// GetDevice returns one device. ErrNotFound if there is none.
	GetDevice(ctx context.Context, user string, id valise.DeviceID) (Device, error)
	// ListDevices returns up to limit devices of user ordered by id,
	// starting after id after ("" for the first page). An unknown user has
	// no devices.
	ListDevices(ctx context.Context, user string, after valise.DeviceID, limit int) ([]Device, error)
	// DeleteDevice deletes a device with its token, keys and inbox, and
	// appends audit if not nil, in one transaction. ErrNotFound if the
	// device does not exist.
	DeleteDevice(ctx context.Context, user string, id valise.DeviceID, audit *AuditRecord) error
	// Authenticate returns the device whose token hashes to tokenHash.
	// ErrNotFound for an unknown token; ErrPrecondition if the user is
	// deactivated.
	Authenticate(ctx context.Context, tokenHash []byte) (Device, error)
}

// PublishKeys is one upload of device keys.
type PublishKeys struct {
	// IdentityKey is set once per device; a later publish must repeat the
	// same bytes or leave it empty.
	IdentityKey []byte
	// SignedPreKey, when its PublicKey is not empty, replaces the current one.
	SignedPreKey valise.PreKey
	// OneTimeKeys are added to the device's stock. A key id already in the
	// stock (or already claimed) is a conflict.
	OneTimeKeys []valise.PreKey
}

// Keys stores device public keys. Keys are opaque bytes.
type Keys interface {
	// PublishKeys stores keys for a device and returns how many unclaimed
	// one-time keys it now holds. ErrNotFound if the device does not exist;
	// ErrConflict if the identity key differs from the one stored or a
	// one-time key id was used before; ErrPrecondition if the stock would
	// pass maxStored, or if the device has no identity key and none is given.
	// Nothing is written when an error is returned.
	PublishKeys(ctx context.Context, user string, device valise.DeviceID, k PublishKeys, maxStored int) (int, error)
	// CountOneTimeKeys returns the device's unclaimed one-time keys.
	// ErrNotFound if the device does not exist.
	CountOneTimeKeys(ctx context.Context, user string, device valise.DeviceID) (int, error)
	// GetDeviceKeys returns the keys of every device of user that has
	// published an identity key, ordered by device id. An unknown user has
	// none.
	GetDeviceKeys(ctx context.Context, user string) ([]valise.DeviceKeys, error)
	// ClaimOneTimeKey removes and returns one unclaimed one-time key of the
	// device, the lowest key id first; each key is returned at most once,
	// even under concurrent claims. When none is left it returns the signed
	// prekey with fallback true. ErrNotFound if the device does not exist or
	// has published no keys.
	ClaimOneTimeKey(ctx context.Context, user string, device valise.DeviceID) (key valise.PreKey, fallback bool, err error)
}

// NewEnvelope is one envelope of a send, with its id already chosen.
type NewEnvelope struct {
	ID valise.EnvelopeID
	// RecipientNode is empty for a user of this node. Otherwise the
	// envelope is for a user of that node: it is queued in the outbox for
	// that destination (see Federation) and no local inbox is touched.
	RecipientNode   valise.NodeName
	Recipient       string // the recipient's localpart
	RecipientDevice valise.DeviceID
	Ciphertext      []byte
}

// SendOp is one client send: all of its envelopes commit, or none.
type SendOp struct {
	Sender         valise.UserID
	SenderDevice   valise.DeviceID
	IdempotencyKey string
	ServerTime     time.Time
	// ExpireTime is when the send's envelopes for other nodes are given up
	// if not delivered (the outbox time to live). Required when any
	// envelope has a RecipientNode: without it the send alone is refused
	// (KindInvalid).
	ExpireTime time.Time
	Envelopes  []NewEnvelope
}

// Delivery says that an envelope landed in a device's inbox at cursor.
type Delivery struct {
	User   string
	Device valise.DeviceID
	Cursor uint64
}

// SendResult is the outcome of one SendOp inside a batch.
type SendResult struct {
	// IDs are the envelope ids, in request order. For a replayed
	// idempotency key they are the ids of the first send.
	IDs []valise.EnvelopeID
	// Replayed is true when the idempotency key had been used: nothing new
	// was stored.
	Replayed bool
	// Deliveries lists the inbox rows written (none for a replay): one per
	// envelope of this node's users (empty RecipientNode), in the op's
	// order.
	Deliveries []Delivery
	// Outbound lists, once each, the destinations whose outbox this send
	// wrote to (none for a replay).
	Outbound []valise.NodeName
	// Err is why this send alone was refused, a *valise.Error: an unknown
	// local recipient user or device (KindNotFound) or a deactivated local
	// recipient (KindPermission). Recipients on other nodes are not
	// checked here. Nothing of the send was stored.
	Err error
}

// AckOp acknowledges a device's inbox up to and including Cursor.
type AckOp struct {
	User   string
	Device valise.DeviceID
	Cursor uint64
}

// Batch is the work of one group commit.
type Batch struct {
	Sends []SendOp
	Acks  []AckOp
}

// BatchResult has one result per op of the Batch, in order.
type BatchResult struct {
	Sends []SendResult
	// Acks holds, per ack, how many envelopes it deleted.
	Acks []int
}

// Inboxes stores the per-device inboxes of sealed envelopes.
type Inboxes interface {
	// CommitBatch applies every op of b in one database transaction and
	// commits durably before it returns. A send that cannot be delivered
	// fails alone (its SendResult.Err) and writes nothing; the other ops
	// still commit. Each device's inbox gets consecutive cursors in commit
	// order. A send whose (sender device, idempotency key) was seen before
	// is answered with the first send's ids and stores nothing. An ack
	// deletes the device's envelopes with cursor <= Cursor that earlier
	// commits stored (acks apply before the batch's sends, so an ack never
	// deletes an envelope of its own batch); acking an unknown device or
	// past the inbox end is not an error. Envelopes with a RecipientNode
	// are appended to that destination's outbox (see Federation) in the
	// same transaction, in request order after everything committed
	// before. If CommitBatch returns an error, nothing was committed.
	CommitBatch(ctx context.Context, b *Batch) (*BatchResult, error)
	// ReadInbox returns up to limit envelopes of the device with cursor >
	// after, in cursor order. Delivery-failure notices come back with
	// Failure set (see Federation.FinishOutbox).
	ReadInbox(ctx context.Context, user string, device valise.DeviceID, after uint64, limit int) ([]valise.Envelope, error)
	// InboxDepth returns how many envelopes wait in all inboxes.
	InboxDepth(ctx context.Context) (int64, error)
	// PruneIdempotency deletes idempotency records created before before and
	// returns how many it deleted; a send repeating a pruned key is then a
	// new send. A record is created at its send's ServerTime (the store's
	// clock if that is zero). Pruning never touches inboxes.
	PruneIdempotency(ctx context.Context, before time.Time) (int64, error)
}

// AuditRecord is one admin action, as the caller describes it.
type AuditRecord struct {
	Time   time.Time
	Actor  string
	Action string
	Target string
	Detail string
}

// AuditEvent is an AuditRecord as stored: numbered from 1 and hash-chained.
type AuditEvent struct {
	AuditRecord
	Seq      int64
	PrevHash []byte
	Hash     []byte
}

// Audit is the append-only, hash-chained log of admin actions.
type Audit interface {
	// AppendAudit appends r on its own and returns the stored event.
	AppendAudit(ctx context.Context, r AuditRecord) (AuditEvent, error)
	// ListAudit returns up to limit events with Seq > after, in order.
	ListAudit(ctx context.Context, after int64, limit int) ([]AuditEvent, error)
}
