package storage

import (
	"context"
	"time"

	"github.com/valise-im/valise"
)

// Peer is another node this node federates with. Federation is closed: a
// node that is not a peer, or is a blocked peer, neither delivers to this
// node nor receives from it.
type Peer struct {
	Name valise.NodeName
	// Address is the peer's federation endpoint, HOST:PORT.
	Address string
	// CABundle holds the PEM certificates of the CAs trusted to certify
	// the peer's name.
	CABundle  []byte
	Blocked   bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Peers stores the federation peer list.
type Peers interface {
	// AddPeer adds p and appends audit, if not nil, in the same
	// transaction. A zero CreatedAt becomes now, a zero UpdatedAt
	// CreatedAt. ErrConflict if a peer of that name exists.
	AddPeer(ctx context.Context, p Peer, audit *AuditRecord) error
	// GetPeer returns the peer. ErrNotFound if there is none.
	GetPeer(ctx context.Context, name valise.NodeName) (Peer, error)
	// ListPeers returns up to limit peers ordered by name (bytewise),
	// starting after the name after ("" for the first page).
	ListPeers(ctx context.Context, after valise.NodeName, limit int) ([]Peer, error)
	// SetPeerBlocked blocks or unblocks a peer, setting UpdatedAt, and
	// appends audit, if not nil, in the same transaction. ErrNotFound if
	// the peer does not exist; setting the state the peer already has
	// succeeds and still records audit.
	SetPeerBlocked(ctx context.Context, name valise.NodeName, blocked bool, audit *AuditRecord) error
	// UpdatePeer replaces the Address and CABundle of the peer p.Name,
	// setting UpdatedAt (now if zero), and appends audit, if not nil, in
	// the same transaction; Blocked and CreatedAt stay. ErrNotFound if the
	// peer does not exist.
	UpdatePeer(ctx context.Context, p Peer, audit *AuditRecord) error
	// RemovePeer deletes a peer and appends audit, if not nil, in the same
	// transaction. ErrNotFound if the peer does not exist.
	RemovePeer(ctx context.Context, name valise.NodeName, audit *AuditRecord) error
}
